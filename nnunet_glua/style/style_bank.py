"""Target style bank: where translation draws its target styles from.

After training, up to ``style_bank_slices`` target slices (spread evenly over all target cases) are encoded by the
EMA target style encoder and clustered with k-means (:mod:`nnunet_glua.style.kmeans`). The bank stores the cluster
centres, each cluster's per-dimension standard deviation and share of the codes, and the real codes themselves.

Sampling (``sampling``):

* ``"mixture"`` (default): pick a cluster with probability equal to its share, then ``centre + noise * std * N(0, 1)``
  - a diagonal Gaussian mixture fitted to the real codes. Why: real target data contains several distinct
  appearances (scanners, protocols, slice positions with different tissue mixes); clusters keep each of them, the
  within-cluster noise produces styles *between* the seen slices (augmentation the segmentation network benefits
  from), and ``noise < 1`` keeps draws inside the cloud of real codes. Sampling the MUNIT prior N(0, I) instead can
  produce styles no target scan has, because the encoder's codes need not fill the prior.
* ``"real"``: a uniformly drawn real code - only seen styles, no interpolation.

Codes are per slice; a translation draws one code per *volume* (see :mod:`nnunet_glua.style.translate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nnunet_glua.style.kmeans import kmeans

__all__ = ["StyleBank", "build_style_bank", "encode_styles"]


@dataclass
class StyleBank:
    """``centres`` (k, d), ``spreads`` (k, d) within-cluster std, ``weights`` (k,) cluster shares (sum 1),
    ``codes`` (m, d) real codes, ``code_labels`` (m,) their clusters. All float32/int64 CPU tensors."""

    centres: torch.Tensor
    spreads: torch.Tensor
    weights: torch.Tensor
    codes: torch.Tensor
    code_labels: torch.Tensor
    sampling: str = "mixture"
    noise: float = 0.5

    @property
    def style_dim(self) -> int:
        return int(self.centres.shape[1])

    @property
    def k(self) -> int:
        return int(self.centres.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` style codes (n, d) float32 on ``device`` (default: the generator's device, else CPU).

        Randomness comes only from ``generator`` (or torch's global RNG of the generator's device if None), so the
        same generator state gives the same styles.
        """
        gen_device = generator.device if generator is not None else torch.device("cpu")
        out_device = torch.device(device) if device is not None else gen_device
        if self.sampling == "real":
            idx = torch.randint(self.codes.shape[0], (n,), generator=generator, device=gen_device)
            return self.codes.to(gen_device)[idx].to(out_device)
        weights = self.weights.to(gen_device)
        cluster = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn((n, self.style_dim), generator=generator, device=gen_device)
        codes = self.centres.to(gen_device)[cluster] + self.noise * self.spreads.to(gen_device)[cluster] * eps
        return codes.to(out_device)

    def to_state(self) -> dict[str, Any]:
        """Checkpoint form (tensors, strings, floats only: loadable with ``torch.load(weights_only=True)``)."""
        return {"centres": self.centres, "spreads": self.spreads, "weights": self.weights, "codes": self.codes,
                "code_labels": self.code_labels, "sampling": self.sampling, "noise": float(self.noise)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StyleBank:
        return cls(state["centres"].float(), state["spreads"].float(), state["weights"].float(),
                   state["codes"].float(), state["code_labels"].long(), str(state["sampling"]), float(state["noise"]))

    def summary(self) -> dict[str, Any]:
        """Human-readable JSON form (centres, spreads, shares; not the individual codes)."""
        return {"k": self.k, "style_dim": self.style_dim, "n_codes": int(self.codes.shape[0]),
                "sampling": self.sampling, "noise": self.noise,
                "clusters": [{"share": round(float(w), 6), "centre": [round(float(v), 6) for v in c],
                              "std": [round(float(v), 6) for v in s]}
                             for w, c, s in zip(self.weights, self.centres, self.spreads)]}


def build_style_bank(codes: torch.Tensor, k: int, seed: int = 0, sampling: str = "mixture",
                     noise: float = 0.5) -> StyleBank:
    """Cluster real style codes (n, d) into a :class:`StyleBank` with ``min(k, distinct codes)`` clusters."""
    if sampling not in ("mixture", "real"):
        raise ValueError(f"sampling must be 'mixture' or 'real', got {sampling!r}")
    codes = codes.detach().to("cpu", torch.float32)
    result = kmeans(codes, k, seed=seed)
    kk = result.centres.shape[0]
    spreads = torch.zeros(kk, codes.shape[1])
    counts = torch.bincount(result.labels, minlength=kk).float()
    for j in range(kk):
        members = codes[result.labels == j].double()
        if len(members) > 1:
            spreads[j] = members.std(0, unbiased=False).float()
    return StyleBank(result.centres.float(), spreads, counts / counts.sum(), codes, result.labels, sampling,
                     float(noise))


@torch.no_grad()
def encode_styles(style_encoder: torch.nn.Module, images: Any, device: torch.device, batch_size: int = 64,
                  progress: bool = True, desc: str = "Encoding target styles") -> torch.Tensor:
    """Style codes (n, d) float32 CPU of an iterable of image batches ((N, C, H, W) numpy arrays or tensors)."""
    was_training = style_encoder.training
    style_encoder.eval()
    out = []
    for batch in tqdm(images, desc=desc, disable=not progress, leave=False):
        x = torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch)
        for start in range(0, x.shape[0], batch_size):
            out.append(style_encoder(x[start:start + batch_size].to(device, torch.float32)).float().cpu())
    style_encoder.train(was_training)
    if not out:
        raise ValueError("no images to encode styles from")
    return torch.cat(out)
