"""The translator's objective: one forward pass over a source and a target batch, and the losses computed from it.

Notation (``x_s``, ``x_t``: source and target slices ``(N, C, H, W)``, z-scored):

* encode: ``c_s, s_s = E_c(x_s), E_s^S(x_s)``; ``c_t, s_t = E_c(x_t), E_s^T(x_t)``
* self-reconstruction: ``G_S(c_s, s_s) ~ x_s`` and ``G_T(c_t, s_t) ~ x_t`` (L1)
* cross translation with the *other* batch's encoded style (DRIT's attribute swap; the style bank used at
  inference is built from encoded target codes, so training on encoded codes matches what translation sees):
  ``u = G_T(c_s, s_t)`` (source content, target look - what the segmentation network trains on) and
  ``v = G_S(c_t, s_s)``
* latent reconstruction: ``E_c(u) ~ c_s``, ``E_s^T(u) ~ s_t``, ``E_c(v) ~ c_t``, ``E_s^S(v) ~ s_s`` (L1). The targets
  are detached: otherwise the encoders can shrink both sides of the match towards each other instead of making the
  decoders keep the code, which lets content information leak away.
* cross-cycle reconstruction: ``G_S(E_c(u), E_s^S(v)) ~ x_s`` and ``G_T(E_c(v), E_s^T(u)) ~ x_t`` (L1, DRIT)
* image adversarial (LSGAN, both domains): ``D_T`` real ``x_t`` vs fake ``u``; ``D_S`` real ``x_s`` vs fake ``v``.
  Least squares rather than the log loss: better-behaved gradients when the discriminator wins early, which it
  does on medical slices whose domains differ grossly in intensity.
* content adversarial (LSGAN): ``D_c`` says source (1) for ``c_s`` and target (0) for ``c_t``; the content encoder
  is pushed towards 0.5 for both, i.e. towards content codes that carry no domain.
* style regularisation: mean squared style code (the KL term of a unit-variance Gaussian posterior, up to
  constants), keeping codes on one scale for the style bank.

Every loss is a mean over its elements, so weights do not depend on the slice size or batch size.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from nnunet_glua.style.config import LossWeights
from nnunet_glua.style.networks import TranslatorDiscriminators, TranslatorGenerators

__all__ = ["TranslationPass", "translation_pass", "generator_loss", "discriminator_loss",
           "lsgan_real", "lsgan_fake", "lsgan_towards"]


def lsgan_towards(outputs: list[torch.Tensor] | torch.Tensor, value: float) -> torch.Tensor:
    """Mean squared distance of discriminator outputs to ``value``, averaged over scales."""
    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    return torch.stack([((o.float() - value) ** 2).mean() for o in outputs]).mean()


def lsgan_real(outputs: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    return lsgan_towards(outputs, 1.0)


def lsgan_fake(outputs: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    return lsgan_towards(outputs, 0.0)


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a.float(), b.float())


@dataclass
class TranslationPass:
    """All tensors of one forward pass (names as in the module docstring)."""

    c_s: torch.Tensor
    s_s: torch.Tensor
    c_t: torch.Tensor
    s_t: torch.Tensor
    rec_s: torch.Tensor
    rec_t: torch.Tensor
    fake_t: torch.Tensor  # u = G_T(c_s, s_t)
    fake_s: torch.Tensor  # v = G_S(c_t, s_s)
    c_u: torch.Tensor
    s_u: torch.Tensor
    c_v: torch.Tensor
    s_v: torch.Tensor
    cyc_s: torch.Tensor
    cyc_t: torch.Tensor

    def detached(self) -> TranslationPass:
        return TranslationPass(**{f.name: getattr(self, f.name).detach() for f in fields(self)})


def translation_pass(gens: TranslatorGenerators, x_s: torch.Tensor, x_t: torch.Tensor) -> TranslationPass:
    """Run every generator computation the objective needs. ``x_s``, ``x_t``: (N, C, H, W), H, W multiples of
    ``2**n_downsampling``; the two batches may differ in N."""
    c_s, s_s = gens.encode(x_s, "source")
    c_t, s_t = gens.encode(x_t, "target")
    n = min(x_s.shape[0], x_t.shape[0])
    # cross translation pairs sample i of one batch with sample i of the other
    rec_s = gens.decode(c_s, s_s, "source")
    rec_t = gens.decode(c_t, s_t, "target")
    fake_t = gens.decode(c_s[:n], s_t[:n], "target")
    fake_s = gens.decode(c_t[:n], s_s[:n], "source")
    c_u, s_u = gens.encode(fake_t, "target")
    c_v, s_v = gens.encode(fake_s, "source")
    cyc_s = gens.decode(c_u, s_v, "source")
    cyc_t = gens.decode(c_v, s_u, "target")
    return TranslationPass(c_s, s_s, c_t, s_t, rec_s, rec_t, fake_t, fake_s, c_u, s_u, c_v, s_v, cyc_s, cyc_t)


def generator_loss(p: TranslationPass, discs: TranslatorDiscriminators, x_s: torch.Tensor, x_t: torch.Tensor,
                   w: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted generator objective and its unweighted parts (detached 0-d tensors, for logging; they stay on the
    device so that logging does not force a GPU synchronisation every iteration).

    The discriminators' parameters should have ``requires_grad=False`` while this is back-propagated (they are
    updated by :func:`discriminator_loss` only).
    """
    n = p.fake_t.shape[0]
    parts = {
        "self_rec": _l1(p.rec_s, x_s) + _l1(p.rec_t, x_t),
        "cross_cycle": _l1(p.cyc_s, x_s[:n]) + _l1(p.cyc_t, x_t[:n]),
        "content_rec": _l1(p.c_u, p.c_s[:n].detach()) + _l1(p.c_v, p.c_t[:n].detach()),
        "style_rec": _l1(p.s_u, p.s_t[:n].detach()) + _l1(p.s_v, p.s_s[:n].detach()),
        "style_reg": (p.s_s.float() ** 2).mean() + (p.s_t.float() ** 2).mean(),
        "g_adv_image": lsgan_real(discs.image["target"](p.fake_t)) + lsgan_real(discs.image["source"](p.fake_s)),
        "g_adv_content": lsgan_towards(discs.content(p.c_s), 0.5) + lsgan_towards(discs.content(p.c_t), 0.5),
    }
    total = (w.self_reconstruction * parts["self_rec"] + w.cross_cycle * parts["cross_cycle"]
             + w.content_reconstruction * parts["content_rec"] + w.style_reconstruction * parts["style_rec"]
             + w.style_regularization * parts["style_reg"] + w.image_adversarial * parts["g_adv_image"]
             + w.content_adversarial * parts["g_adv_content"])
    return total, {k: v.detach() for k, v in parts.items()}


def discriminator_loss(p: TranslationPass, discs: TranslatorDiscriminators, x_s: torch.Tensor, x_t: torch.Tensor,
                       w: LossWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LSGAN discriminator objective on a *detached* pass; returns (weighted total, unweighted detached parts)."""
    d_image = (lsgan_real(discs.image["target"](x_t)) + lsgan_fake(discs.image["target"](p.fake_t))
               + lsgan_real(discs.image["source"](x_s)) + lsgan_fake(discs.image["source"](p.fake_s)))
    d_content = lsgan_real(discs.content(p.c_s)) + lsgan_fake(discs.content(p.c_t))
    total = w.image_adversarial * d_image + w.content_adversarial * d_content
    parts = {"d_image": d_image.detach(), "d_content": d_content.detach()}
    if w.image_real_negatives > 0:
        d_negatives = lsgan_fake(discs.image["target"](x_s)) + lsgan_fake(discs.image["source"](x_t))
        total = total + w.image_real_negatives * d_negatives
        parts["d_negatives"] = d_negatives.detach()
    return total, parts
