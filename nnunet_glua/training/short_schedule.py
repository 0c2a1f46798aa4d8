"""Short schedules for CPU demos, tests and quick checks.

nnU-Net's convention: a variant is a subclass that changes class attributes. The constructor signature must
stay exactly nnU-Net's because nnU-Net records ``locals()`` of it in its checkpoints.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


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


class SourceOnlyTrainer_Short(ShortSchedule, nnUNetTrainer):
    """Plain nnU-Net on the source domain (the lower bound of an adaptation experiment), short schedule."""
