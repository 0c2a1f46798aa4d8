"""Hyper-parameters of the style-transfer translator (global alignment), with the reasons for each default.

Everything here is plain data: a :class:`TranslatorConfig` round-trips through ``to_dict``/``from_dict`` (JSON-safe), so
checkpoints store it without pickling classes and a user can override any field from a JSON file
(``glua_train_style --config-json my.json``; only the keys given are changed).

Defaults and why
----------------
Network (:class:`NetworkConfig`)
    ``base_channels=32``, ``n_downsampling=2``, ``n_residual_blocks=4``: the MUNIT layout at half its width. The
    translator runs on *every slice of every patch* in each segmentation training step, so its cost adds to every
    step; half the width costs a quarter of the FLOPs. Phantom and CT/MR slices in nnU-Net's z-scored space have far
    less texture variety than natural photographs, for which the 64-channel width was chosen.
    ``domain_content_layers=3``: the content encoder's 7x7 stem and both downsampling convs exist once per domain,
    the residual blocks are shared (see :mod:`nnunet_glua.style.networks`).
    ``style_dim=8``: MUNIT's and DRIT's choice; a style here is a global intensity/contrast/noise appearance, a
    handful of numbers.
    ``disc_scales=3``, ``disc_layers=4``: multi-scale PatchGAN as in pix2pixHD/MUNIT; both are reduced automatically
    for small slices (see :mod:`nnunet_glua.style.networks`), so 40x56 slices work.
Losses (:class:`LossWeights`)
    ``image_adversarial=1``, ``self_reconstruction=10``, ``cross_cycle=10``, ``content_reconstruction=1``,
    ``style_reconstruction=1``, ``content_adversarial=1``: MUNIT's image/latent weights (1/10/1/1) and DRIT's
    cross-cycle (10) and content-adversarial (1) weights. The reconstruction terms dominate on purpose: source labels
    must stay valid on translated images, so content preservation outranks realism. ``style_regularization=0.01``
    (DRIT's KL weight) keeps style codes near the origin so that the style bank's clusters and noise are on one scale.
    ``image_real_negatives=1``: each domain's image discriminator also sees the *other* domain's real images as
    fakes. Without it a discriminator only learns "real vs. generator artefacts" and the generator can pass with the
    source contrast; with it, keeping the source's contrast is penalised directly (measured on the phantom:
    ``docs/style_tuning.md``).
Optimisation
    Adam, ``lr=1e-4``, ``betas=(0.5, 0.999)``, ``weight_decay=1e-4`` (MUNIT/DRIT). The learning rate is constant for
    the first ``lr_decay_start`` fraction of the iterations and then decays linearly to ``lr_final_fraction * lr``
    (CycleGAN's schedule; a GAN's late iterations benefit from small steps). ``ema_decay=0.999``: the generators'
    exponential moving average, used for previews, the style bank and all translation, is far less noisy than the
    raw adversarially-trained weights.
    ``iterations=20000`` at ``batch_size=16``. A training step of these small 2D networks is bound by kernel-launch
    overhead, not arithmetic: on an H200 an iteration took 65-107 ms at batch 8, 16 and 32 alike, of which the GPU
    was busy only about 30 ms (profile at batch 8; docs/benchmarks.md), so 16 slices per domain cost nothing over 8
    and halve the gradient noise. About 20-40 minutes on such a GPU; a phantom converges much earlier, real CT/MR pairs
    may want more (``--iterations``).
Data
    ``slice_size=None``: derived from the nnU-Net configuration's in-plane patch size by the command line, or from the
    median in-plane shape of the source cases when :func:`~nnunet_glua.style.trainer.train_translator` is called
    with plain folders. Training crops are this size rounded up to the network's multiple.
    ``min_body_fraction=0.05``: slices whose body (nnU-Net's nonzero region, ``seg >= 0``) covers less than 5 % of
    the slice are skipped; such slices are mostly background and teach the discriminator nothing about style.
    Augmentation: flips in-plane (p=0.5 per axis), intensity scale +-10 % and shift +-0.1 z-units inside the body.
    Deliberately light: strong intensity augmentation would blur the very appearance difference that must be learnt.
Style bank
    ``style_bank_clusters=8`` k-means clusters of ``style_bank_slices=2000`` encoded target slices;
    ``style_bank_sampling="mixture"`` with ``style_bank_noise=0.5`` (see :mod:`nnunet_glua.style.style_bank`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NetworkConfig", "LossWeights", "AugmentationConfig", "TranslatorConfig", "PRESETS", "load_config_overrides"]


@dataclass
class NetworkConfig:
    """Sizes of the translator's networks. Spatial sizes are *not* here: they derive from the data."""

    base_channels: int = 32
    n_downsampling: int = 2
    n_residual_blocks: int = 4
    style_dim: int = 8
    style_channels: int = 32
    style_downsampling: int = 4
    mlp_dim: int = 128
    mlp_layers: int = 3
    disc_channels: int = 32
    disc_layers: int = 4
    disc_scales: int = 3
    content_disc_channels: int = 128
    content_disc_layers: int = 3
    domain_content_layers: int = 3

    @property
    def spatial_multiple(self) -> int:
        """In-plane sizes the generator needs (it downsamples ``n_downsampling`` times by 2)."""
        return 2 ** self.n_downsampling

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < (0 if f.name in ("n_downsampling", "domain_content_layers")
                                                      else 1):
                raise ValueError(f"NetworkConfig.{f.name} must be a positive integer, got {value!r}")
        if self.n_downsampling > 5:
            raise ValueError(f"NetworkConfig.n_downsampling={self.n_downsampling} is too deep for 2D slices (max 5)")


@dataclass
class LossWeights:
    """Weights of the translator's objective (see :mod:`nnunet_glua.style.losses` for each term)."""

    image_adversarial: float = 1.0
    content_adversarial: float = 1.0
    self_reconstruction: float = 10.0
    cross_cycle: float = 10.0
    content_reconstruction: float = 1.0
    style_reconstruction: float = 1.0
    style_regularization: float = 0.01
    image_real_negatives: float = 1.0

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"LossWeights.{f.name} must be a non-negative number, got {value!r}")


@dataclass
class AugmentationConfig:
    """Light augmentation of training slices; intensities are in nnU-Net's z-scored units."""

    flip_probability: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1

    def validate(self) -> None:
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {self.flip_probability}")
        if self.intensity_scale < 0 or self.intensity_shift < 0:
            raise ValueError("intensity_scale and intensity_shift must be >= 0")


@dataclass
class TranslatorConfig:
    """Everything that defines a translator training run (see the module docstring for the defaults' reasons)."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    slice_size: tuple[int, int] | None = None
    batch_size: int = 16
    iterations: int = 20000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-4
    lr_decay_start: float = 0.5
    lr_final_fraction: float = 0.0
    ema_decay: float = 0.999
    amp: bool = True
    checkpoint_every: int = 1000
    preview_every: int = 1000
    log_every: int = 50
    preview_rows: int = 4
    min_body_fraction: float = 0.05
    case_cache_gib: float = 4.0
    style_bank_clusters: int = 8
    style_bank_slices: int = 2000
    style_bank_sampling: str = "mixture"
    style_bank_noise: float = 0.5

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        self.network.validate()
        self.losses.validate()
        self.augmentation.validate()
        if self.slice_size is not None:
            if len(self.slice_size) != 2 or any(int(s) < 2 * self.network.spatial_multiple for s in self.slice_size):
                raise ValueError(f"slice_size must be two in-plane sizes >= {2 * self.network.spatial_multiple}, "
                                 f"got {self.slice_size}")
        for name in ("batch_size", "iterations", "checkpoint_every", "preview_every", "log_every",
                     "style_bank_clusters", "style_bank_slices", "preview_rows"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TranslatorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.lr_decay_start <= 1.0 or not 0.0 <= self.lr_final_fraction <= 1.0:
            raise ValueError("lr_decay_start and lr_final_fraction must be in [0, 1]")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.min_body_fraction < 1.0:
            raise ValueError(f"min_body_fraction must be in [0, 1), got {self.min_body_fraction}")
        if self.style_bank_sampling not in ("mixture", "real"):
            raise ValueError(f"style_bank_sampling must be 'mixture' or 'real', got {self.style_bank_sampling!r}")
        if self.style_bank_noise < 0:
            raise ValueError(f"style_bank_noise must be >= 0, got {self.style_bank_noise}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranslatorConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise ``ValueError`` (a typo must not be ignored silently)."""
        d = dict(d)
        sub = {"network": NetworkConfig, "losses": LossWeights, "augmentation": AugmentationConfig}
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown translator config keys {sorted(unknown)}; known keys: {sorted(known)}")
        for key, value in d.items():
            if key in sub:
                sub_known = {f.name for f in dataclasses.fields(sub[key])}
                bad = set(value) - sub_known
                if bad:
                    raise ValueError(f"unknown keys {sorted(bad)} in translator config '{key}'; "
                                     f"known keys: {sorted(sub_known)}")
                kwargs[key] = sub[key](**value)
            elif key in ("slice_size", "betas"):
                kwargs[key] = None if value is None else tuple(value)
            else:
                kwargs[key] = value
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def preset(cls, name: str) -> TranslatorConfig:
        """A named configuration (see :data:`PRESETS`): ``"default"`` (GPU, real data) or ``"cpu_demo"`` (a
        phantom on a 2-core CPU in 3 to 5 minutes). Unknown names raise ``ValueError`` listing the known ones."""
        if name not in PRESETS:
            raise ValueError(f"unknown translator preset {name!r}; known presets: {sorted(PRESETS)}")
        return cls().with_overrides(PRESETS[name])

    def with_overrides(self, overrides: dict[str, Any]) -> TranslatorConfig:
        """A copy with ``overrides`` (same nesting as :meth:`to_dict`, partial sub-dicts allowed) applied."""
        merged = self.to_dict()
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return TranslatorConfig.from_dict(merged)


#: Named configurations, as overrides of the defaults (same nesting as :meth:`TranslatorConfig.to_dict`).
#: ``cpu_demo``: half the default width, one downsampling step (sharper anatomy after a short run), two residual
#: blocks, a 4x higher learning rate and batch 4, so that a phantom trains on a 2-core CPU in 3 to 5 minutes; the
#: measurements behind it are in ``docs/style_tuning.md``.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "cpu_demo": {"network": {"base_channels": 16, "n_downsampling": 1, "n_residual_blocks": 2, "style_channels": 16,
                             "disc_channels": 16, "content_disc_channels": 64},
                 "lr": 4e-4, "batch_size": 4, "iterations": 600, "checkpoint_every": 200, "preview_every": 200},
}


def load_config_overrides(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file of config overrides; errors name the file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read translator config overrides ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: translator config overrides must be a JSON object, got {type(data).__name__}")
    return data
