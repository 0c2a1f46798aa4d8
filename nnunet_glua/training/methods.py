"""The methods table: each trainer method is a base trainer plus the class attributes it changes.

A method combined with a schedule (:mod:`nnunet_glua.training.schedules`) is a ``-tr`` trainer class, generated
in :mod:`nnunet_glua.training.variants`. Adding a method is adding a row here; ``glua_trainers --list`` shows the
classes. The attributes are documented on the base classes (:class:`~nnunet_glua.training.glua_trainer.GLUATrainer`,
:class:`~nnunet_glua.training.source_only.SourceOnlyTrainer`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnunet_glua.training.glua_trainer import GLUATrainer
from nnunet_glua.training.seeded_trainer import SeededTrainer
from nnunet_glua.training.source_only import SourceOnlyTrainer
from nnunet_glua.training.structure_shift import DEFAULT_MAX_SHIFT

__all__ = ["Method", "METHODS", "SELF_TRAINING_FRACTION"]

#: share of the training samples the self-training trainers draw from pseudo-labelled target cases
SELF_TRAINING_FRACTION = 0.5


@dataclass(frozen=True)
class Method:
    """``name``: the trainer name without schedule suffix (also the class's name under nnU-Net's default schedule);
    ``base``: the hand-written trainer it derives from; ``settings``: class attributes it changes (empty for the
    base itself); ``summary``: one line for ``glua_trainers --list``."""

    name: str
    base: type[SeededTrainer]
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def is_base(self) -> bool:
        return self.name == self.base.__name__


METHODS: tuple[Method, ...] = (
    Method("GLUATrainer", GLUATrainer,
           "translation + structure-wise shift + feature alignment on the top 25 % gap locations"),
    Method("GLUATrainer_NoLocalMask", GLUATrainer, "ablation: feature alignment at every valid location",
           {"mask_ratio": 1.0}),
    Method("GLUATrainer_StyleOnly", GLUATrainer, "ablation: translation (+ shift), no feature alignment",
           {"use_feature_alignment": False}),
    Method("GLUATrainer_FeatureOnly", GLUATrainer, "ablation: feature alignment (+ shift), no translation",
           {"use_translation": False}),
    Method("GLUATrainer_SoftMask", GLUATrainer, "every valid location weighted by its gap instead of a hard mask",
           {"soft_mask": True}),
    Method("GLUATrainer_Mask10", GLUATrainer, "local mask of the top 10 % gap locations", {"mask_ratio": 0.1}),
    Method("GLUATrainer_Mask50", GLUATrainer, "local mask of the top 50 % gap locations", {"mask_ratio": 0.5}),
    Method("GLUATrainer_StyleOnly_NoStructureShift", GLUATrainer,
           "translation only: plain nnU-Net on translated source copies, no shift, no feature alignment (a baseline)",
           {"use_feature_alignment": False, "structure_shift": 0.0}),
    Method("GLUATrainer_NoStructureShift", GLUATrainer,
           "the published method alone: translation + local feature alignment, no structure-wise shift",
           {"structure_shift": 0.0}),
    Method("GLUATrainer_LateTranslation", GLUATrainer,
           "ablation: translation and shift on the augmented batch, in the training step, after nnU-Net's augmentation",
           {"translate_before_augmentation": False, "shift_before_augmentation": False}),
    Method("GLUATrainer_SelfTrain", GLUATrainer,
           "self-training: GLUA's batch plus pseudo-labelled target cases (half of the samples; glua_pseudo_label)",
           {"pseudo_label_fraction": SELF_TRAINING_FRACTION}),
    Method("GLUATrainer_SelfTrainSteered", GLUATrainer,
           "GLUATrainer_SelfTrain with the structure shift steered towards the pseudo-labels' target intensities",
           {"pseudo_label_fraction": SELF_TRAINING_FRACTION, "steered_shift": True}),
    Method("SourceOnlyTrainer", SourceOnlyTrainer, "plain nnU-Net on the labelled source domain (lower bound)"),
    Method("SourceOnlyTrainer_StructureShift", SourceOnlyTrainer,
           "source-only with the structure-wise intensity shift alone", {"structure_shift": DEFAULT_MAX_SHIFT}),
    Method("SourceOnlyTrainer_DA5", SourceOnlyTrainer,
           "source-only with nnU-Net's heavy augmentation (nnUNetTrainerDA5's pipeline), no adaptation (a baseline)",
           {"augmentation": "DA5"}),
    Method("SourceOnlyTrainer_ClassAug", SourceOnlyTrainer,
           "source-only with class-level intensity augmentation: a random curve, scale and shift per class region "
           "(half of the samples), no adaptation (a baseline)", {"class_intensity_augmentation": 0.5}),
    Method("SourceOnlyTrainer_SelfTrain", SourceOnlyTrainer,
           "self-training baseline: source batch + pseudo-labelled target cases (half of the samples), no adaptation",
           {"pseudo_label_fraction": SELF_TRAINING_FRACTION}),
)
