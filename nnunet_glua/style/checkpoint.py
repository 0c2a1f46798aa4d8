"""Versioned, atomically written translator checkpoints.

A checkpoint is a ``torch.save`` dict loadable with ``weights_only=True`` (tensors, numbers, strings, lists, dicts
only - no pickled classes, so loading a file cannot run code). Keys:

``kind``               ``"nnunet_glua.style_translator"``
``format_version``     :data:`FORMAT_VERSION`; bumped on incompatible layout changes, older files are refused with a
                       message saying so
``package_version``    nnunet_glua version that wrote it
``identity``           :class:`~nnunet_glua.style.identity.TranslatorIdentity` as a dict (dataset, plans,
                       configuration, plans fingerprint)
``config``             :class:`~nnunet_glua.style.config.TranslatorConfig` as a dict
``in_channels``        image channels; ``slice_size`` (H, W) requested; ``crop_size`` (H, W) actually trained on
``iteration``          completed iterations; ``finished`` whether training reached ``config.iterations``
``run_id``             random id of the training run (kept on resume): tells a retrained translator apart
``seed``               the run's seed
``generators``         state dict of the raw generators; ``ema_generators`` of their EMA (used for translation)
``discriminators``, ``opt_g``, ``opt_d``, ``sched_g``, ``sched_d``, ``scaler_g``, ``scaler_d``   training state
``rng``                torch CPU/CUDA RNG states and the slice samplers' numpy RNG states
``source_identifiers``, ``target_identifiers``   the cases trained on
``style_bank``         :meth:`StyleBank.to_state` or ``None`` (present in ``checkpoint_final.pth``)

Writes go through :func:`nnunet_glua.io_utils.atomic_path`: an interruption leaves the previous file intact.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import nnunet_glua
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.style.identity import TranslatorIdentity

__all__ = ["FORMAT_VERSION", "CHECKPOINT_KIND", "save_checkpoint", "load_checkpoint", "checkpoint_identity",
           "CheckpointError"]

FORMAT_VERSION = 1
CHECKPOINT_KIND = "nnunet_glua.style_translator"


class CheckpointError(RuntimeError):
    """A file is not a usable translator checkpoint (missing, corrupt, other kind or format version)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` plus the format header to ``path`` atomically; returns the path."""
    path = Path(path)
    payload = {"kind": CHECKPOINT_KIND, "format_version": FORMAT_VERSION,
               "package_version": nnunet_glua.__version__, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a translator checkpoint (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: translator checkpoint not found. Train the translator first "
                              f"(glua_train_style -d DATASET -c CONFIGURATION).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated file, foreign pickle, ...
        raise CheckpointError(f"{path}: cannot read translator checkpoint ({e}). The file may be truncated or not "
                              f"a translator checkpoint; retrain with glua_train_style --overwrite.") from e
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a style-translator checkpoint (kind "
                              f"{ckpt.get('kind') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: translator checkpoint format version {version}, this nnunet_glua "
                              f"({nnunet_glua.__version__}) reads version {FORMAT_VERSION}. Retrain the translator "
                              f"(glua_train_style --overwrite) or use the package version that wrote it "
                              f"({ckpt.get('package_version')}).")
    return ckpt


def checkpoint_identity(ckpt: dict[str, Any]) -> TranslatorIdentity:
    return TranslatorIdentity.from_dict(ckpt.get("identity"))
