"""Tiny synthetic two-domain preprocessed folders, for tests, benchmarks and a smoke check of the translator.

Each case is an ellipsoidal "body" holding up to three ellipsoidal "structures" (labels 1-3) at random positions.
The domains share the anatomy generator but differ in appearance, like MR and CT:

* source: structure intensities (body 1.0, structures 2.0 / 0.3 / 1.6), smooth multiplicative bias field, little noise;
* target: different ordering (body 1.0, structures 0.2 / 2.2 / 1.4), no bias field, more noise, slight blur.

Volumes are written exactly as nnU-Net's preprocessing writes them: float32 ``(C, X, Y, Z)`` z-scored inside the
body with 0 outside (``use_mask_for_norm``), segmentation ``(1, X, Y, Z)`` with -1 outside the body, Blosc2 files via
``nnUNetDatasetBlosc2.save_case``. Target cases are written without labels (0 inside the body), as target
preprocessing does. Extra channels are the first channel under a fixed monotone intensity remapping.
"""
from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter

if TYPE_CHECKING:
    from nnunet_glua.style.config import TranslatorConfig

__all__ = ["synthetic_case", "write_synthetic_folder", "write_synthetic_domain_pair", "tiny_config",
           "DOMAIN_INTENSITIES"]

DOMAIN_INTENSITIES = {"source": (1.0, 2.0, 0.3, 1.6), "target": (1.0, 0.2, 2.2, 1.4)}


def _ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def synthetic_case(shape: tuple[int, int, int], domain: str, rng: np.random.Generator, channels: int = 1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One case: (data (C, X, Y, Z) float32 z-scored in the body, 0 outside; labels (1, X, Y, Z) int8, -1 outside).

    The labels are the true structures of both domains; :func:`write_synthetic_folder` drops them for target cases.
    """
    if domain not in DOMAIN_INTENSITIES:
        raise ValueError(f"domain must be one of {sorted(DOMAIN_INTENSITIES)}, got {domain!r}")
    shape = tuple(int(s) for s in shape)
    size = np.asarray(shape, np.float32)
    body = _ellipsoid(shape, size / 2 - 0.5, size * rng.uniform(0.38, 0.46, 3))
    labels = np.where(body, 0, -1).astype(np.int8)
    for lab in (1, 2, 3):
        radii = np.maximum(size * rng.uniform(0.1, 0.18, 3), 1.5)
        centre = size / 2 + (rng.uniform(-0.18, 0.18, 3) * size)
        labels[_ellipsoid(shape, centre, radii) & body] = lab
    levels = DOMAIN_INTENSITIES[domain]
    img = np.zeros(shape, np.float32)
    for lab, level in enumerate(levels):
        img[labels == lab] = level
    if domain == "source":
        grids = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
        bias = 1.0 + 0.15 * sum(rng.uniform(-1, 1) * g for g in grids)
        img = img * bias + rng.normal(0, 0.05, shape).astype(np.float32)
    else:
        img = gaussian_filter(img, 0.6) + rng.normal(0, 0.15, shape).astype(np.float32)
    img[~body] = 0
    chans = [img]
    for c in range(1, channels):
        chans.append(np.where(body, np.sqrt(np.maximum(img, 0)) * (1 + 0.5 * c), 0).astype(np.float32))
    data = np.stack(chans).astype(np.float32)
    for c in range(channels):  # nnU-Net ZScoreNormalization with use_mask_for_norm
        vals = data[c][body]
        data[c][body] = (vals - vals.mean()) / max(float(vals.std()), 1e-8)
    return data, labels[None]


def write_synthetic_folder(folder: str | os.PathLike, domain: str, n_cases: int, shape: tuple[int, int, int],
                           channels: int = 1, seed: int = 0, prefix: str | None = None,
                           with_labels: bool | None = None) -> Path:
    """Write ``n_cases`` cases named ``{prefix}_{i:03d}`` into ``folder`` (created); returns the folder.

    ``with_labels`` (default: source yes, target no) keeps the structure labels; target labels are only for
    evaluation-style checks (:mod:`nnunet_glua.style.report`), never for training.
    """
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prefix = prefix or domain
    with_labels = (domain == "source") if with_labels is None else with_labels
    for i in range(n_cases):
        case_rng = np.random.default_rng(rng.integers(2 ** 32))
        data, seg = synthetic_case(shape, domain, case_rng, channels)
        if not with_labels:  # what unlabelled preprocessing writes: 0 in the body, -1 outside
            seg = np.where(seg >= 0, 0, -1).astype(np.int8)
        blocks, chunks = comp_blosc2_params(data.shape, shape, data.itemsize)
        props = {"spacing": [1.0, 1.0, 1.0], "shape_before_cropping": shape,
                 "shape_after_cropping_and_before_resampling": shape,
                 "bbox_used_for_cropping": [[0, s] for s in shape], "class_locations": {}}
        nnUNetDatasetBlosc2.save_case(data, seg.astype(np.int8), props, str(folder / f"{prefix}_{i:03d}"),
                                      chunks=chunks, blocks=blocks)
    return folder


def write_synthetic_domain_pair(root: str | os.PathLike, n_cases: int = 3, shape: tuple[int, int, int] = (8, 32, 40),
                                channels: int = 1, seed: int = 0) -> tuple[Path, Path]:
    """``root/source`` (labelled) and ``root/target`` (unlabelled) folders; returns (source, target)."""
    root = Path(root)
    src = write_synthetic_folder(root / "source", "source", n_cases, shape, channels, seed)
    tgt = write_synthetic_folder(root / "target", "target", n_cases, shape, channels, seed + 1)
    return src, tgt


def tiny_config(**overrides) -> TranslatorConfig:
    """A translator configuration small enough for CPU smoke runs and tests (seconds, not hours).

    8-channel networks with one residual block, 4-d styles, 32x40 slices, 4 iterations of batch 2; any
    :class:`~nnunet_glua.style.config.TranslatorConfig` field can be overridden (``network`` as a dict is merged).
    """
    from nnunet_glua.style.config import TranslatorConfig

    base = {"network": {"base_channels": 8, "n_residual_blocks": 1, "style_dim": 4, "style_channels": 8,
                        "style_downsampling": 2, "mlp_dim": 16, "mlp_layers": 2, "disc_channels": 8,
                        "disc_layers": 2, "disc_scales": 2, "content_disc_channels": 16, "content_disc_layers": 2},
            "slice_size": [32, 40], "batch_size": 2, "iterations": 4, "checkpoint_every": 100,
            "preview_every": 100, "log_every": 2, "preview_rows": 2, "style_bank_clusters": 3,
            "style_bank_slices": 40}
    return TranslatorConfig().with_overrides(base).with_overrides(overrides)
