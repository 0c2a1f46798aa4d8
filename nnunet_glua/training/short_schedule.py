"""Source-only trainers, seeding and short schedules (for CPU demos, tests and benchmarks).

nnU-Net's convention: a variant is a subclass that changes class attributes. The constructor signature must
stay exactly nnU-Net's because nnU-Net records ``locals()`` of it in its checkpoints.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_glua.training.structure_intensity import StructureShift

SEED_ENV = "GLUA_SEED"


def seed_from_environment() -> int | None:
    """Seed torch, numpy and random from ``$GLUA_SEED`` when it is set; returns the seed (None when unset).

    nnU-Net itself is unseeded and its augmentation workers stay non-deterministic, so a seed makes repetitions
    of an experiment distinct and labelled (the benchmark reports medians over seeds), not bit-identical.
    """
    value = os.environ.get(SEED_ENV)
    if value is None or value == "":
        return None
    try:
        seed = int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be an integer, got {value!r}") from None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


class SeededTrainer(nnUNetTrainer):
    """nnU-Net's trainer, seeded from ``$GLUA_SEED`` (see :func:`seed_from_environment`)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.seed = seed_from_environment()
        if self.seed is not None:
            self.print_to_log_file(f"{SEED_ENV}={self.seed}")


class ShortSchedule:
    """Mixin (put it first in the bases) that shortens any nnU-Net trainer's schedule:
    ``num_epochs_short`` epochs of ``num_iterations_short`` training and ``num_val_iterations_short`` validation
    steps; everything else stays the trainer's own."""

    num_epochs_short: int = 2
    num_iterations_short: int = 10
    num_val_iterations_short: int = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.num_epochs_short
        self.num_iterations_per_epoch = self.num_iterations_short
        self.num_val_iterations_per_epoch = self.num_val_iterations_short


class SourceOnlyTrainer(SeededTrainer):
    """Plain nnU-Net on the source domain: the lower bound of an adaptation experiment (and, trained on the
    target-supervised dataset, the upper bound)."""


class SourceOnlyTrainer_StructureShift(StructureShift, SourceOnlyTrainer):
    """Source-only nnU-Net with GLUATrainer's structure-wise intensity shift (same defaults), no adaptation: the
    ablation row that separates what the shift gains from what the alignment gains."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.check_structure_shift()

    def train_step(self, batch: dict) -> dict:
        if getattr(self, "_shift_rng", None) is None:
            self._shift_rng = torch.Generator().manual_seed(12345 + 1000 * self.fold + (self.seed or 0))
        batch = dict(batch, data=self.shift_structures(batch["data"], batch["target"], self._shift_rng))
        return super().train_step(batch)


class SourceOnlyTrainer_Short(ShortSchedule, SourceOnlyTrainer):
    """:class:`SourceOnlyTrainer` with the short schedule."""


class DemoSchedule(ShortSchedule):
    """The schedule of the main demo's (``glua_demo``) first stage: the source-only model, 30 epochs of 25 steps
    from scratch, that every second-stage row (:class:`DemoFineTuneSchedule`) starts from; sized so that the demo's
    trainings together fit its CPU budget on the phantom; see docs/benchmarks.md for the measured step times."""

    num_epochs_short = 30
    num_iterations_short = 25
    num_val_iterations_short = 2


class DemoFineTuneSchedule(DemoSchedule):
    """The main demo's second stage: every row after source-only starts from the source-only ``*_Demo`` model
    (nnU-Net's ``-pretrained_weights``) and trains this half-length schedule, so that source-only continued for the
    same steps (the fair lower bound) fits the demo's CPU budget beside GLUA; docs/benchmarks.md."""

    num_epochs_short = DemoSchedule.num_epochs_short // 2


class SourceOnlyTrainer_Demo(DemoSchedule, SourceOnlyTrainer):
    """:class:`SourceOnlyTrainer` with the demo schedule: the model every other demo row starts from."""


class SourceOnlyTrainer_DemoFineTune(DemoFineTuneSchedule, SourceOnlyTrainer):
    """:class:`SourceOnlyTrainer` with the demo's second-stage schedule: source-only continued for as many steps as
    GLUA (the demo's lower bound)."""


class SourceOnlyTrainer_StructureShift_Short(ShortSchedule, SourceOnlyTrainer_StructureShift):
    """:class:`SourceOnlyTrainer_StructureShift` with the short schedule."""


class SourceOnlyTrainer_StructureShift_Demo(DemoSchedule, SourceOnlyTrainer_StructureShift):
    """:class:`SourceOnlyTrainer_StructureShift` with the demo schedule."""


class SourceOnlyTrainer_StructureShift_DemoFineTune(DemoFineTuneSchedule, SourceOnlyTrainer_StructureShift):
    """:class:`SourceOnlyTrainer_StructureShift` with the demo's second-stage schedule."""
