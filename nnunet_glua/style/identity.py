"""What a translator was trained for: dataset, plans, configuration, and a fingerprint of the preprocessing.

A translator learns the look of nnU-Net's *preprocessed* slices: their spacing, axis order, normalisation and
resampling. It is only valid for data preprocessed the same way, so every checkpoint records a
:class:`TranslatorIdentity` and loading it for another one raises :class:`TranslatorMismatchError`, which says
what the checkpoint was trained for and how to train one for the current plans.

The fingerprint hashes only what changes the preprocessed voxels (listed in :data:`FINGERPRINT_CONFIGURATION_KEYS`
and :data:`FINGERPRINT_PLANS_KEYS`): editing the batch size, patch size or network in the plans - which nnU-Net users
do routinely - does not invalidate a translator, while re-planning with another spacing or normalisation does.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TranslatorIdentity", "TranslatorMismatchError", "plans_fingerprint", "identity_from_plans",
           "FINGERPRINT_CONFIGURATION_KEYS", "FINGERPRINT_PLANS_KEYS"]

FINGERPRINT_CONFIGURATION_KEYS = ("data_identifier", "preprocessor_name", "spacing", "normalization_schemes",
                                  "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs")
FINGERPRINT_PLANS_KEYS = ("dataset_name", "transpose_forward", "foreground_intensity_properties_per_channel",
                          "image_reader_writer")


class TranslatorMismatchError(RuntimeError):
    """A translator checkpoint is used for data it was not trained for."""


def _resolved_configuration(plans: dict, configuration: str) -> dict:
    configs = plans.get("configurations", {})
    if configuration not in configs:
        raise ValueError(f"configuration {configuration!r} not in the plans; available: {sorted(configs)}")
    resolved: dict = {}
    chain = []
    name: str | None = configuration
    while name is not None:
        if name in chain:
            raise ValueError(f"circular 'inherits_from' in plans configurations: {chain + [name]}")
        chain.append(name)
        name = configs[name].get("inherits_from")
    for name in reversed(chain):
        resolved.update(configs[name])
    return resolved


def plans_fingerprint(plans: dict, configuration: str) -> str:
    """SHA-256 (hex, first 16 chars) of the preprocessing-relevant parts of ``plans`` for ``configuration``."""
    conf = _resolved_configuration(plans, configuration)
    payload = {"configuration": {k: conf.get(k) for k in FINGERPRINT_CONFIGURATION_KEYS},
               "plans": {k: plans.get(k) for k in FINGERPRINT_PLANS_KEYS}}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class TranslatorIdentity:
    """Dataset name, plans identifier, configuration name and plans fingerprint; ``None`` fields mean unknown
    (a translator trained with :func:`~nnunet_glua.style.trainer.train_translator` on plain folders)."""

    dataset_name: str | None = None
    plans_identifier: str | None = None
    configuration: str | None = None
    plans_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TranslatorIdentity:
        d = d or {}
        return cls(**{k: d.get(k) for k in ("dataset_name", "plans_identifier", "configuration", "plans_fingerprint")})

    def describe(self) -> str:
        if self.dataset_name is None and self.plans_identifier is None and self.configuration is None:
            return "plain preprocessed folders (no nnU-Net plans recorded)"
        return (f"dataset {self.dataset_name}, plans {self.plans_identifier}, configuration {self.configuration} "
                f"(plans fingerprint {self.plans_fingerprint})")

    def retrain_command(self) -> str:
        ds = self.dataset_name or "DATASET"
        return (f"glua_train_style -d {ds} -c {self.configuration or 'CONFIGURATION'} "
                f"-p {self.plans_identifier or 'nnUNetPlans'} --overwrite")

    def check_matches(self, expected: TranslatorIdentity, checkpoint: str) -> None:
        """Raise :class:`TranslatorMismatchError` unless this (the checkpoint's) identity equals ``expected``."""
        problems = []
        for field, label in (("dataset_name", "dataset"), ("plans_identifier", "plans"),
                             ("configuration", "configuration")):
            have, want = getattr(self, field), getattr(expected, field)
            if have != want:
                problems.append(f"{label} {have!r} != {want!r}")
        if not problems and self.plans_fingerprint != expected.plans_fingerprint:
            problems.append("the plans' preprocessing (spacing, normalisation, resampling or axis order) changed "
                            "since the translator was trained, e.g. by re-planning")
        if problems:
            raise TranslatorMismatchError(
                f"{checkpoint}: this style translator was trained for {self.describe()}, but it is used for "
                f"{expected.describe()} ({'; '.join(problems)}). A translator only works on data preprocessed "
                f"exactly like its training data. Train one for the current plans with: "
                f"{expected.retrain_command()}")


def identity_from_plans(plans: dict, configuration: str, plans_identifier: str | None = None) -> TranslatorIdentity:
    """Identity for an nnU-Net plans dict (as loaded from ``nnUNetPlans.json``) and a configuration name."""
    return TranslatorIdentity(dataset_name=plans.get("dataset_name"),
                              plans_identifier=plans_identifier or plans.get("plans_name"),
                              configuration=configuration,
                              plans_fingerprint=plans_fingerprint(plans, configuration))
