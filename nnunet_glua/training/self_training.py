"""Self-training on the target domain: the labelled source batch plus pseudo-labelled real target patches.

The stage after GLUA (or after source-only): ``glua_pseudo_label`` writes filtered pseudo-labels of the unlabelled
target training images from a trained model's fold ensemble; a trainer with ``pseudo_label_fraction > 0`` (e.g.
``GLUATrainer_SelfTrain``, ``SourceOnlyTrainer_SelfTrain``) then trains, usually from that model
(``-pretrained_weights``), on

* the labelled source cases exactly as its base trainer does (GLUA: translated copies, structure shift, feature
  alignment), drawn with probability ``1 - pseudo_label_fraction``, and
* the pseudo-labelled target cases (:mod:`nnunet_glua.data.pseudo_labelled_target`), preprocessed with the same
  plans, drawn with probability ``pseudo_label_fraction`` by nnU-Net's own loader, so patch sampling, foreground
  oversampling and the whole augmentation apply to them as to labelled cases. They are real target images: never
  translated, and never the discriminator's source side.

Voxels the pseudo-label set does not trust carry the ignore label (the highest label + 1) and give no loss: the loss
is nnU-Net's with that ignore label, which no source voxel carries, so the source loss is unchanged. The network,
its outputs, ``dataset.json`` and prediction stay nnU-Net's. The set comes from ``pseudo_label_set``, else
``$GLUA_PSEUDO_LABELS``, else the dataset's only set; its name and hash go into the log and every checkpoint, and
``--c`` refuses another set.

``steered_shift`` (an option, ``*_SelfTrainSteered``): the pseudo-labels make the target's per-structure intensities
estimable, so instead of a purely random structure-wise offset each labelled structure of a training sample is moved
towards its estimated target intensity (the median over the pseudo-labelled cases of the structure's mean), with
uniform noise of ``steered_shift_noise``; it takes the random shift's place in nnU-Net's augmentation, before the
intensity transforms.
"""
from __future__ import annotations

from pathlib import Path

import torch

from nnunet_glua.data.pseudo_labelled_target import (PSEUDO_LABELS_ENV, PseudoLabelSet, WithPseudoLabelledTarget,
                                                     find_pseudo_label_set, preprocess_pseudo_labelled_cases,
                                                     pseudo_labelled_folder, structure_means)
from nnunet_glua.data.pseudo_labels import pseudo_label_ignore_label
from nnunet_glua.training.glua_components import adaptation_info, build_lock
from nnunet_glua.training.rank_zero import run_on_rank_zero_first

__all__ = ["SelfTraining", "SELF_TRAINING_CHECKPOINT_KEY"]

SELF_TRAINING_CHECKPOINT_KEY = "glua_self_training"


class _LabelsWithIgnore:
    """A view of nnU-Net's ``LabelManager`` that reports ``ignore_label`` (used while nnU-Net builds the loss)."""

    def __init__(self, labels, ignore_label: int):
        self._labels, self._ignore = labels, ignore_label

    def __getattr__(self, name):
        return getattr(self._labels, name)

    @property
    def ignore_label(self) -> int:
        return self._ignore

    @property
    def has_ignore_label(self) -> bool:
        return True


class SelfTraining:
    """Mixin of the project's trainers (``GLUATrainer``, ``SourceOnlyTrainer``): pseudo-labelled target cases join
    the training set when ``pseudo_label_fraction > 0``."""

    pseudo_label_fraction: float = 0.0  # share of the training samples drawn from pseudo-labelled target cases
    pseudo_label_set: str | None = None  # set name or folder; None: $GLUA_PSEUDO_LABELS, else the dataset's only set
    steered_shift: bool = False  # structure shift towards the pseudo-labels' target intensities instead of random
    steered_shift_noise: float = 0.5  # normalised units, uniform in [-noise, noise] around the estimate

    _pseudo_set: PseudoLabelSet | None = None
    _pseudo_folder: Path | None = None
    _pending_self_training: dict | None = None
    _steer_targets: torch.Tensor | None = None

    @property
    def self_training(self) -> bool:
        return self.pseudo_label_fraction > 0

    def pseudo_ignore_label(self) -> int:
        """The ignore label of the dataset's pseudo-labels (as ``glua_pseudo_label`` writes them)."""
        return pseudo_label_ignore_label(self.label_manager.all_labels)

    def check_self_training(self) -> None:
        """Call at the end of ``__init__``."""
        if not self.self_training:
            return
        if not 0.0 < self.pseudo_label_fraction < 1.0:
            raise ValueError(f"{self.__class__.__name__}: pseudo_label_fraction must lie strictly between 0 and 1 "
                             f"when self-training, got {self.pseudo_label_fraction}")
        if self.label_manager.has_regions or self.label_manager.has_ignore_label:
            raise RuntimeError(f"{self.__class__.__name__}: self-training needs one label per voxel and a dataset "
                               f"without an ignore label of its own (the pseudo-labels bring theirs)")
        if self.steered_shift and not self.shift_before_augmentation:
            raise ValueError(f"{self.__class__.__name__}: the steered shift is a transform of nnU-Net's augmentation; "
                             "keep shift_before_augmentation")
        if getattr(self, "use_translation", False) and not getattr(self, "translate_before_augmentation", True):
            raise ValueError(f"{self.__class__.__name__}: self-training needs translation before augmentation; "
                             "translating the batch in the step would translate the real target samples too")

    def _build_loss(self):
        """nnU-Net's loss; with self-training, with the pseudo-labels' ignore label (no loss on untrusted voxels)."""
        if not self.self_training:
            return super()._build_loss()
        labels = self.label_manager
        self.label_manager = _LabelsWithIgnore(labels, self.pseudo_ignore_label())
        try:
            return super()._build_loss()
        finally:
            self.label_manager = labels

    def on_train_start(self):
        if self.self_training:  # before nnU-Net builds its loaders, which sample the pseudo-labelled cases
            self.prepare_pseudo_labelled_target()
        super().on_train_start()

    def prepare_pseudo_labelled_target(self) -> None:
        """Find the set, preprocess its cases on rank 0 (behind the build lock; the other ranks wait outside any
        collective) and log what this run trains on."""
        info = adaptation_info(self)
        self._pseudo_set = find_pseudo_label_set(info, self.pseudo_label_set, self.pseudo_ignore_label())
        pseudo_set, plans = self._pseudo_set, self.plans_manager.plans_name
        run_on_rank_zero_first(lambda: preprocess_pseudo_labelled_cases(info, plans, self.configuration_name,
                                                                         pseudo_set, log=self.print_to_log_file),
                               build_lock(self), "preprocessing the pseudo-labelled target cases",
                               distributed=self.is_ddp)
        self._pseudo_folder = pseudo_labelled_folder(info, plans, self.configuration_name, pseudo_set)
        if self.steered_shift:
            means = structure_means(self._pseudo_folder, pseudo_set.cases, max(self.label_manager.all_labels) + 1)
            self._steer_targets = torch.from_numpy(means).float()
            self.print_to_log_file("steered structure shift: estimated target intensity per label "
                                   + ", ".join(f"{k}: {v:.2f}" for k, v in enumerate(means) if k > 0),
                                   also_print_to_console=True)
        stored = self._pending_self_training
        if stored is not None and stored.get("set_sha256") != pseudo_set.digest:
            raise RuntimeError(f"this training was started with pseudo-label set {stored.get('set')!r} "
                               f"({stored.get('set_sha256', '')[:12]}), not {pseudo_set.name!r} "
                               f"({pseudo_set.digest[:12]}); resume with that set ({PSEUDO_LABELS_ENV}) or "
                               "start a new training without --c")
        made_by = pseudo_set.model.get("model", {}).get("folder", "an unknown model")
        self.print_to_log_file(
            f"self-training: pseudo-label set {pseudo_set.name} ({pseudo_set.folder}, sha256 {pseudo_set.digest[:12]}, "
            f"made by {made_by}), {len(pseudo_set.cases)} target cases, {self.pseudo_label_fraction:.0%} of the "
            f"training samples; ignore label {pseudo_set.ignore_label}", also_print_to_console=True)

    def get_dataloaders(self):
        """nnU-Net's loaders; with ``steered_shift``, their augmentation has the steered shift in place of the random
        one. nnU-Net builds the pipeline by calling ``self.get_training_transforms``; an instance attribute of that
        name, set only while the loaders are built, puts the run's estimates into it."""
        if self._steer_targets is None:
            return super().get_dataloaders()
        from nnunet_glua.training.augmentation import add_transforms
        from nnunet_glua.training.structure_shift import SteeredStructureShiftTransform, StructureShiftTransform

        build, targets = type(self).get_training_transforms, self._steer_targets
        steered = SteeredStructureShiftTransform(targets, self.steered_shift_noise, self.structure_shift_probability)

        def with_steering(*args, **kwargs):
            pipeline = build(*args, **kwargs)
            pipeline.transforms = [t for t in pipeline.transforms if not isinstance(t, StructureShiftTransform)]
            return add_transforms(pipeline, before_intensity=steered, owner=type(self).__name__)

        self.get_training_transforms = with_steering
        try:
            return super().get_dataloaders()
        finally:
            del self.get_training_transforms

    def get_tr_and_val_datasets(self):
        """nnU-Net's split, the labelled training cases as :meth:`labelled_training_dataset` makes them, plus, with
        self-training, the pseudo-labelled target cases (validation stays on source cases)."""
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        dataset_tr = self.labelled_training_dataset(dataset_tr)
        if self.self_training:
            if self._pseudo_folder is None:
                raise RuntimeError("prepare_pseudo_labelled_target must run before the loaders are built")
            dataset_tr = WithPseudoLabelledTarget(dataset_tr, self._pseudo_folder, self._pseudo_set.cases,
                                                  self.pseudo_label_fraction)
        return dataset_tr, dataset_val

    def labelled_training_dataset(self, dataset_tr):
        """Hook: the labelled training cases as the loader samples them (GLUA adds translated copies)."""
        return dataset_tr

    def checkpoint_extras(self) -> dict:
        extras = super().checkpoint_extras()
        if self._pseudo_set is not None:
            extras[SELF_TRAINING_CHECKPOINT_KEY] = {
                "set": self._pseudo_set.name, "set_folder": str(self._pseudo_set.folder),
                "set_sha256": self._pseudo_set.digest, "cases": list(self._pseudo_set.cases),
                "pseudo_label_fraction": self.pseudo_label_fraction}
        return extras

    def restore_checkpoint_extras(self, checkpoint: dict, filename: str) -> None:
        super().restore_checkpoint_extras(checkpoint, filename)
        self._pending_self_training = checkpoint.get(SELF_TRAINING_CHECKPOINT_KEY)
