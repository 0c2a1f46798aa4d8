"""Source-only nnU-Net: the lower bound of an adaptation experiment (and, trained on the target-supervised dataset,
the upper bound), optionally with the structure-wise intensity shift alone (``SourceOnlyTrainer_StructureShift``,
generated in :mod:`nnunet_glua.training.variants`) or with nnU-Net's heavy augmentation trainer's pipeline
(``SourceOnlyTrainer_DA5``: ``nnUNetTrainerDA5``'s rotations, mirroring and transforms, seeded and on our schedules:
the first baseline an nnU-Net user tries against a domain gap) or with class-level intensity augmentation
(``SourceOnlyTrainer_ClassAug``, :mod:`~nnunet_glua.training.class_augmentation`)."""
from __future__ import annotations

import torch

from nnunet_glua.training.seeded_trainer import SeededTrainer
from nnunet_glua.training.self_training import SelfTraining
from nnunet_glua.training.structure_shift import StructureShift


class SourceOnlyTrainer(SelfTraining, StructureShift, SeededTrainer):
    """Plain nnU-Net on the labelled source domain, seeded; ``structure_shift > 0`` shifts the structures of the
    training batch (:mod:`~nnunet_glua.training.structure_shift`) before nnU-Net's step, from the source labels."""

    structure_shift: float = 0.0
    # "default": nnU-Net's augmentation; "DA5": nnUNetTrainerDA5's (more rotation, mirroring on every axis, stronger
    # intensity and local transforms)
    augmentation: str = "default"
    # fraction of the samples whose class regions get random intensity curves (class_augmentation; 0 = off)
    class_intensity_augmentation: float = 0.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.check_structure_shift()
        self.check_self_training()
        if self.augmentation not in ("default", "DA5"):
            raise ValueError(f"{self.__class__.__name__}: augmentation must be 'default' or 'DA5', got "
                             f"{self.augmentation!r}")
        if self.augmentation == "DA5" and self.structure_shift > 0:
            raise ValueError(f"{self.__class__.__name__}: the structure shift is not combined with the DA5 pipeline")

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        if self.augmentation == "DA5":
            from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5

            return nnUNetTrainerDA5.configure_rotation_dummyDA_mirroring_and_inital_patch_size(self)
        return super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()

    @classmethod
    def get_training_transforms(cls, *args, **kwargs):
        if cls.augmentation == "DA5":
            from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5

            return nnUNetTrainerDA5.get_training_transforms(*args, **kwargs)
        pipeline = super().get_training_transforms(*args, **kwargs)
        if cls.class_intensity_augmentation > 0:
            from nnunet_glua.training.augmentation import add_transforms
            from nnunet_glua.training.class_augmentation import ClassLevelIntensityAugmentation

            pipeline = add_transforms(pipeline, before_intensity=ClassLevelIntensityAugmentation(
                cls.class_intensity_augmentation), owner=cls.__name__)
        return pipeline

    def train_step(self, batch: dict) -> dict:
        if self.structure_shift > 0:
            batch = dict(batch, data=self.shift_structures(batch["data"], batch["target"],
                                                           self.random_streams.generator("structure_shift")))
        return super().train_step(batch)
