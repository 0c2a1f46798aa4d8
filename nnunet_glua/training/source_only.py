"""Source-only nnU-Net: the lower bound of an adaptation experiment (and, trained on the target-supervised dataset,
the upper bound), optionally with the structure-wise intensity shift alone (``SourceOnlyTrainer_StructureShift``,
generated in :mod:`nnunet_glua.training.variants`)."""
from __future__ import annotations

import torch

from nnunet_glua.training.seeded_trainer import SeededTrainer
from nnunet_glua.training.self_training import SelfTraining
from nnunet_glua.training.structure_shift import StructureShift


class SourceOnlyTrainer(SelfTraining, StructureShift, SeededTrainer):
    """Plain nnU-Net on the labelled source domain, seeded; ``structure_shift > 0`` shifts the structures of the
    training batch (:mod:`~nnunet_glua.training.structure_shift`) before nnU-Net's step, from the source labels."""

    structure_shift: float = 0.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.check_structure_shift()
        self.check_self_training()

    def train_step(self, batch: dict) -> dict:
        if self.structure_shift > 0:
            batch = dict(batch, data=self.shift_structures(batch["data"], batch["target"],
                                                           self.random_streams.generator("structure_shift")))
        return super().train_step(batch)
