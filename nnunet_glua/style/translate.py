"""Translation API: turn source volumes into target-looking volumes with a trained translator.

Used by the segmentation trainer in every training step (:meth:`Translator.translate_batch`) and by
``glua_translate`` for whole volumes (:meth:`Translator.translate_volume`).

Intensity space
    Input and output are in nnU-Net's z-scored space - the values nnU-Net's data loader hands to the network. The
    translator was trained on exactly these z-scored slices (both domains z-scored by nnU-Net, each image on its own
    statistics), and its decoders output z-scored target-like values directly (linear output layer), so there is
    no range mapping in either direction. A translated slice therefore has roughly zero mean and unit variance inside
    the body, as a real preprocessed target slice has.
Slices and styles
    A 3D batch ``(B, C, X, Y, Z)`` is translated slice by slice along dim 2 (nnU-Net's first spatial axis, the
    lowest-resolution one, which the translator was trained on), all slices of the batch at once, in chunks of at
    most ``max_pixels_per_chunk`` pixels. Each *volume* gets one style code drawn from the style bank and all its
    slices use it, so intensities are consistent through the volume. 2D batches ``(B, C, X, Y)`` are single slices
    with one style each. Styles can also be passed explicitly (``styles=``).
Any in-plane size
    Slices are replicate-padded to the generator's multiple of ``2**n_downsampling`` and cropped back, so a 37x53
    patch works; output shape, dtype and device always equal the input's.
Outside the valid region
    Without ``valid_mask`` every voxel is translated, including nnU-Net's zero padding of patches at image borders:
    the translator saw the same zero padding in training (its slice sampler pads with zeros too) and maps it to
    target background. With ``valid_mask`` (True = real image voxels, e.g. nnU-Net's ``seg >= 0`` body mask or the
    un-padded region) the voxels outside keep their input values exactly, so padding and outside-the-body voxels stay
    what nnU-Net made them (0 with ``use_mask_for_norm``) and no translated intensity leaks there.
Speed
    On CUDA the generator pass is wrapped in ``torch.compile`` (like nnU-Net, unless ``nnUNet_compile`` is false, or
    ``compile=False``): measured on an H200 for a (2, 1, 80, 112, 112) batch with the default network (160 slices),
    18.7 ms eager and 6.7-9.3 ms compiled (float16 autocast, two runs), i.e. about 8.5k vs 17-24k slices/s; the first
    call compiles for about 15 s, each new batch size about 11 s more (outputs agree with eager mode to 0.008 in
    z-units, float16 rounding). Whole-volume export (one shape per case) runs eagerly.
Inside nnU-Net training
    Translate after spatial augmentation and before intensity augmentation: the translator was trained on
    un-augmented intensities (only a small scale/shift jitter), and intensity augmentation applied afterwards then
    acts on target-like images as it would on real target data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnunet_glua.style.checkpoint import checkpoint_identity, load_checkpoint
from nnunet_glua.style.config import TranslatorConfig
from nnunet_glua.style.identity import TranslatorIdentity
from nnunet_glua.style.networks import TranslatorGenerators, build_generators
from nnunet_glua.style.style_bank import StyleBank

__all__ = ["Translator", "DEFAULT_MAX_PIXELS_CUDA", "DEFAULT_MAX_PIXELS_CPU"]


def _want_compile(device: torch.device) -> bool:
    """nnU-Net's rule: compile on CUDA unless the environment variable ``nnUNet_compile`` says false."""
    return device.type == "cuda" and os.environ.get("nnUNet_compile", "true").lower() not in ("0", "f", "false", "no")

#: pixels per chunk: 2**23 slice pixels at the default width is ~0.5 GiB per full-resolution float16 activation
DEFAULT_MAX_PIXELS_CUDA = 2 ** 23
DEFAULT_MAX_PIXELS_CPU = 2 ** 20


class Translator:
    """A trained source->target translator (the EMA generators) plus its target style bank.

    Build it with :meth:`from_checkpoint`. Not a ``torch.nn.Module`` on purpose: it is never trained further and
    must not end up in the segmentation network's parameters or state dict.
    """

    def __init__(self, generators: TranslatorGenerators, style_bank: StyleBank, *,
                 identity: TranslatorIdentity | None = None, config: TranslatorConfig | None = None,
                 device: str | torch.device = "cpu", amp: bool | None = None,
                 max_pixels_per_chunk: int | None = None, source: str = "<in memory>",
                 slice_size: tuple[int, int] | None = None, target_identifiers: tuple[str, ...] = (),
                 run_id: str | None = None, iteration: int | None = None, compile: bool | None = None):
        self.device = torch.device(device)
        self.generators = generators.to(self.device).eval()
        for p in self.generators.parameters():
            p.requires_grad_(False)
        self.style_bank = style_bank
        self.identity = identity or TranslatorIdentity()
        self.config = config or TranslatorConfig()
        self.source = source
        #: in-plane size the translator was trained on (None if unknown); translation accepts any size
        self.slice_size = None if slice_size is None else (int(slice_size[0]), int(slice_size[1]))
        #: target cases the translator was trained on (for leak checks against test cases)
        self.target_identifiers = tuple(target_identifiers)
        self.run_id = run_id
        self.iteration = iteration
        if style_bank.style_dim != generators.cfg.style_dim:
            raise ValueError(f"{source}: style bank has {style_bank.style_dim}-d codes, the networks expect "
                             f"{generators.cfg.style_dim}-d")
        use_amp = self.config.amp if amp is None else amp
        self.amp = bool(use_amp and self.device.type == "cuda")
        default = DEFAULT_MAX_PIXELS_CUDA if self.device.type == "cuda" else DEFAULT_MAX_PIXELS_CPU
        self.max_pixels_per_chunk = int(max_pixels_per_chunk or default)
        self.compiled = _want_compile(self.device) if compile is None else bool(compile and self.device.type == "cuda")
        # compiled lazily on first use; keeps the module (and its state dict) untouched
        self._translate_fn = torch.compile(self.generators.translate) if self.compiled else self.generators.translate

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                        expected_identity: TranslatorIdentity | None = None, amp: bool | None = None,
                        max_pixels_per_chunk: int | None = None, compile: bool | None = None) -> Translator:
        """Load the EMA generators and style bank of a finished run (``checkpoint_final.pth``).

        ``expected_identity`` (dataset, plans, configuration, fingerprint of the data about to be translated) is
        compared with the checkpoint's; a mismatch raises
        :class:`~nnunet_glua.style.identity.TranslatorMismatchError` naming both and the command to retrain.
        """
        path = Path(path)
        ckpt = load_checkpoint(path)
        identity = checkpoint_identity(ckpt)
        if expected_identity is not None:
            identity.check_matches(expected_identity, str(path))
        if ckpt.get("style_bank") is None:
            raise ValueError(f"{path}: has no style bank - it is an intermediate checkpoint of an unfinished run. "
                             f"Use checkpoint_final.pth, or finish training with glua_train_style --continue.")
        config = TranslatorConfig.from_dict(ckpt["config"])
        gens = build_generators(int(ckpt["in_channels"]), config.network)
        gens.load_state_dict(ckpt["ema_generators"]["model"])
        return cls(gens, StyleBank.from_state(ckpt["style_bank"]), identity=identity, config=config, device=device,
                   amp=amp, max_pixels_per_chunk=max_pixels_per_chunk, source=str(path),
                   slice_size=tuple(ckpt["slice_size"]), target_identifiers=tuple(ckpt["target_identifiers"]),
                   run_id=ckpt.get("run_id"), iteration=int(ckpt["iteration"]), compile=compile)

    # ------------------------------------------------------------------ properties
    @property
    def in_channels(self) -> int:
        return self.generators.in_channels

    @property
    def style_dim(self) -> int:
        return self.generators.cfg.style_dim

    def to(self, device: str | torch.device) -> Translator:
        self.device = torch.device(device)
        self.generators.to(self.device)
        if self.device.type != "cuda":
            self.amp = False
            self.compiled = False
            self._translate_fn = self.generators.translate
        return self

    # ------------------------------------------------------------------ styles
    def sample_styles(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` target style codes (n, style_dim) float32 on the translator's device, from the style bank."""
        return self.style_bank.sample(n, generator=generator, device=self.device)

    # ------------------------------------------------------------------ translation
    @torch.no_grad()
    def translate_slices(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """Slices ``(N, C, H, W)`` (any H, W) with per-slice styles ``(N, style_dim)`` -> float32 ``(N, C, H, W)``
        on the translator's device, chunked by ``max_pixels_per_chunk``."""
        n = x.shape[0]
        if n == 0:
            return torch.empty_like(x, dtype=torch.float32, device=self.device)
        per_chunk = max(1, self.max_pixels_per_chunk // max(1, x.shape[-1] * x.shape[-2]))
        out = torch.empty(x.shape, dtype=torch.float32, device=self.device)
        for start in range(0, n, per_chunk):
            xs = x[start:start + per_chunk].to(self.device, torch.float32, non_blocking=True)
            st = styles[start:start + per_chunk].to(self.device, torch.float32)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                y = self._translate_fn(xs, st, "target")
            out[start:start + per_chunk] = y.float()
        return out

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"translate_batch expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim not in (4, 5):
            raise ValueError(f"translate_batch expects (B, C, X, Y, Z) or (B, C, X, Y), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self.source}: translator was trained on {self.in_channels}-channel images, got "
                             f"{x.shape[1]} channels (shape {tuple(x.shape)})")
        if not x.is_floating_point():
            raise TypeError(f"translate_batch expects floating-point (z-scored) images, got {x.dtype}")
        if min(x.shape[-2:]) < 2:
            raise ValueError(f"translate_batch needs in-plane sizes >= 2, got {tuple(x.shape[-2:])}")

    @torch.no_grad()
    def translate_batch(self, x: torch.Tensor, generator: torch.Generator | None = None,
                        valid_mask: torch.Tensor | None = None, styles: torch.Tensor | None = None) -> torch.Tensor:
        """Translate a batch of source volumes ``(B, C, X, Y, Z)`` (or 2D ``(B, C, X, Y)``) to the target domain.

        Returns a tensor of the same shape, dtype and device. One style per volume (``styles`` (B, style_dim), or
        drawn from the style bank with ``generator``). ``valid_mask``: bool, broadcastable to ``x`` (typically
        (B, 1, X, Y, Z)); voxels where it is False keep their input values. See the module docstring.
        """
        self._check_input(x)
        b = x.shape[0]
        if styles is None:
            styles = self.sample_styles(b, generator)
        elif styles.shape != (b, self.style_dim):
            raise ValueError(f"styles must have shape ({b}, {self.style_dim}), got {tuple(styles.shape)}")
        if x.ndim == 5:
            _, c, depth, h, w = x.shape
            slices = x.permute(0, 2, 1, 3, 4).reshape(b * depth, c, h, w)
            out = self.translate_slices(slices, styles.repeat_interleave(depth, dim=0))
            out = out.reshape(b, depth, c, h, w).permute(0, 2, 1, 3, 4)
        else:
            out = self.translate_slices(x, styles)
        out = out.to(device=x.device, dtype=x.dtype)
        if valid_mask is not None:
            out = torch.where(valid_mask.to(device=x.device, dtype=torch.bool), out, x)
        return out.contiguous()

    def translate_volume(self, volume: np.ndarray, generator: torch.Generator | None = None,
                         valid_mask: np.ndarray | None = None, style: torch.Tensor | None = None) -> np.ndarray:
        """One preprocessed case ``(C, X, Y, Z)`` float (z-scored) -> translated float32 ``(C, X, Y, Z)``."""
        x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
        mask = None if valid_mask is None else torch.from_numpy(np.asarray(valid_mask, bool))[None]
        if mask is not None:
            while mask.ndim < x.ndim:
                mask = mask.unsqueeze(1)
        styles = None if style is None else style.reshape(1, -1)
        return self.translate_batch(x, generator, mask, styles)[0].numpy()

    def identity_dict(self) -> dict[str, Any]:
        """What distinguishes this translator from any other: data identity, training run id and iteration.

        Store it with a segmentation checkpoint and compare on resume: a retrained translator has another run id.
        """
        return {**self.identity.to_dict(), "run_id": self.run_id, "iteration": self.iteration}

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": self.source, "identity": self.identity.to_dict(), "in_channels": self.in_channels,
                "style_dim": self.style_dim, "style_bank_clusters": self.style_bank.k, "device": str(self.device),
                "amp": self.amp, "compiled": self.compiled, "run_id": self.run_id, "iteration": self.iteration}
