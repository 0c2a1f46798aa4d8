"""Structure-wise intensity shifts of the labelled source batch: an addition to GLUA's global alignment.

Why: one anatomical structure changes its intensity *relative to its neighbours* between modalities (cardiac CT:
myocardium grey between bright blood and dark fat; bSSFP MR: myocardium dark between bright blood and bright fat).
The style translator matches texture and global contrast, but on the cardiac phantom it keeps each structure at its
source intensity (docs/style_tuning.md), so a network trained on its output still ties "myocardium" to the source's
grey. Shifting each labelled structure's intensity by its own random offset - using the *source* labels of the
batch, never target labels - teaches the network to recognise a structure by its shape and position whatever its
intensity relative to its neighbours. Measured on the phantom: docs/benchmarks.md.

Shapes: ``data`` ``(B, C, *spatial)`` in nnU-Net's normalised units (z-scores for CT and MR), ``seg``
``(B, 1, *spatial)`` integer labels of the same spatial size (nnU-Net's full-resolution target). Label 0
(background), negative values (nnU-Net's "outside the image" marker) and an ignore label are never shifted.
Region-based label sets (overlapping regions instead of labels) are not supported.
"""
from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

__all__ = ["shift_structure_intensities", "require_one_label_per_voxel", "StructureShift", "StructureShiftTransform",
           "DEFAULT_MAX_SHIFT", "DEFAULT_PROBABILITY"]

#: Defaults of ``GLUATrainer.structure_shift`` / ``structure_shift_probability``. One z-unit is the order of the
#: contrast between soft tissue and bright blood or fat in z-scored CT and MR, i.e. how far a structure moves
#: relative to its neighbours between modalities (the phantom's tissue table, phantom/tissues.py, gives the same
#: order). Shifting half the samples keeps the other half at the translated intensities, which the network needs at
#: a short schedule: shifting 80 % kept it from learning the left atrium even on the *source* validation set in
#: 750 steps (docs/benchmarks.md).
DEFAULT_MAX_SHIFT = 1.0
DEFAULT_PROBABILITY = 0.5


def shift_structure_intensities(data: torch.Tensor, seg: torch.Tensor, max_shift: float, probability: float,
                                generator: torch.Generator | None, ignore_label: int | None = None,
                                num_labels: int | None = None, max_label: int | None = None) -> torch.Tensor:
    """Add one offset drawn uniformly from ``[-max_shift, max_shift]`` to every labelled structure (label > 0) of
    each channel of each sample, for a random ``probability`` fraction of the samples; the rest stay unchanged.
    Voxels of ``ignore_label`` (nnU-Net's "not annotated" label, if the dataset has one) are not a structure and
    stay unchanged.

    ``generator`` is a CPU :class:`torch.Generator` (the draws do not depend on the device, so a run is
    reproducible on CPU and GPU alike); ``None`` draws from torch's global generator. ``num_labels``: the number of
    label values including background (default: read from ``seg``, which waits for the device); ``max_label``: the
    highest label that is a structure (labels above it, e.g. the ignore label of pseudo-labels, or above
    ``num_labels - 1``, stay unchanged; default: every label). Returns a new tensor with the shape, dtype and device
    of ``data``.
    """
    if data.ndim < 3 or seg.ndim != data.ndim or seg.shape[0] != data.shape[0] or seg.shape[1] != 1 \
            or seg.shape[2:] != data.shape[2:]:
        raise ValueError(f"expected data (B, C, *spatial) and seg (B, 1, *spatial) of the same spatial size, got "
                         f"{tuple(data.shape)} and {tuple(seg.shape)}")
    if max_shift < 0 or not 0.0 <= probability <= 1.0:
        raise ValueError(f"max_shift must be >= 0 and probability in [0, 1], got {max_shift} and {probability}")
    b, c = data.shape[:2]
    labels = seg[:, 0].long()
    n_labels = num_labels if num_labels is not None else (int(labels.max()) + 1 if labels.numel() else 1)
    chosen = torch.rand(b, generator=generator) < probability
    offsets = (torch.rand(b, c, max(n_labels, 1), generator=generator) * 2 - 1) * max_shift
    offsets[:, :, 0] = 0.0
    if ignore_label is not None and 0 < ignore_label < n_labels:
        offsets[:, :, ignore_label] = 0.0
    offsets[~chosen] = 0.0
    if max_shift == 0 or not chosen.any():
        return data.clone()
    cap = max(n_labels, 1) if max_label is None else min(max(n_labels, 1), max_label + 1)
    labels = torch.where(labels < cap, labels.clamp(min=0), torch.zeros_like(labels))  # above cap: background
    index = labels.flatten(1).unsqueeze(1).expand(b, c, -1)  # (B, C, N) label of each voxel
    shift = torch.gather(offsets.to(data.device, data.dtype), 2, index).view_as(data)
    return data + shift


class StructureShiftTransform(BasicTransform):
    """Each labelled structure (label > 0) of a sample gets its own intensity offset drawn uniformly from
    ``[-max_shift, max_shift]`` (normalised units), for a ``probability`` fraction of the samples; background,
    the outside marker (-1) and ``ignore_label`` stay. Image ``(C, *spatial)`` float, segmentation ``(>=1,
    *spatial)`` with the labels in channel 0. Draws from torch's global generator of the process it runs in (nnU-Net's
    augmentation workers are seeded by the trainer)."""

    labelled_source_only = True

    def __init__(self, max_shift: float, probability: float, ignore_label: int | None = None,
                 max_label: int | None = None):
        super().__init__()
        self.max_shift, self.probability, self.ignore_label = float(max_shift), float(probability), ignore_label
        self.max_label = max_label

    def apply(self, data_dict: dict, **params) -> dict:
        image, seg = data_dict["image"], data_dict["segmentation"]
        shifted = shift_structure_intensities(image[None], seg[None, :1], self.max_shift, self.probability, None,
                                              self.ignore_label, max_label=self.max_label)
        data_dict["image"] = shifted[0]
        return data_dict


def require_one_label_per_voxel(label_manager, trainer_name: str) -> None:
    """Raise for a region-based label set (nnU-Net's ``LabelManager.has_regions``): its training targets are
    overlapping region masks, not one label per voxel, so there are no structures to shift."""
    if label_manager.has_regions:
        raise RuntimeError(f"{trainer_name}: the structure-wise intensity shift needs one label per voxel, but this "
                           f"dataset trains regions. Use a trainer with structure_shift = 0 (for GLUA: "
                           f"GLUATrainer_NoStructureShift).")


class StructureShift:
    """Mixin for nnU-Net trainers that shift the structures of their labelled training batch: the two settings as
    class attributes (subclasses change them; ``structure_shift = 0`` turns the shift off), the label-layout check
    and the shift of one batch. Used by ``GLUATrainer`` and ``SourceOnlyTrainer_StructureShift``."""

    structure_shift: float = DEFAULT_MAX_SHIFT  # largest offset, in normalised units; 0 = off
    structure_shift_probability: float = DEFAULT_PROBABILITY  # fraction of the samples that are shifted
    # True: a transform of nnU-Net's augmentation, before its intensity transforms (class attributes decide, as
    # nnU-Net builds the pipeline from the class); False: applied to the augmented batch in the training step
    shift_before_augmentation: bool = True

    @classmethod
    def get_training_transforms(cls, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False, foreground_labels=None,
                                regions=None, ignore_label=None):
        """nnU-Net's training augmentation with :class:`StructureShiftTransform` before its intensity transforms
        (when the shift is on and ``shift_before_augmentation``)."""
        from nnunet_glua.training.augmentation import add_transforms

        pipeline = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        if cls.structure_shift > 0 and cls.shift_before_augmentation:
            # the dataset's labels (nnU-Net passes them): a pseudo-label's ignore label above them is no structure
            max_label = max(foreground_labels) if foreground_labels else None
            shift = StructureShiftTransform(cls.structure_shift, cls.structure_shift_probability, ignore_label,
                                            max_label)
            pipeline = add_transforms(pipeline, before_intensity=shift, owner=cls.__name__)
        return pipeline

    def check_structure_shift(self) -> None:
        """Call at the end of ``__init__`` (needs nnU-Net's ``label_manager``)."""
        if self.structure_shift > 0:
            require_one_label_per_voxel(self.label_manager, self.__class__.__name__)

    def shift_structures(self, data: torch.Tensor, target: torch.Tensor | list[torch.Tensor],
                         generator: torch.Generator) -> torch.Tensor:
        """``data`` with its structures shifted in the training step (see :func:`shift_structure_intensities`);
        ``target`` is nnU-Net's training target, a tensor or the deep-supervision list whose first entry is full
        resolution (labels in channel 0). With ``structure_shift == 0``, or when the shift is part of the
        augmentation (``shift_before_augmentation``), the batch is returned as it is and ``generator`` is not drawn
        from."""
        if self.structure_shift == 0 or self.shift_before_augmentation:
            return data
        seg = (target[0] if isinstance(target, list) else target)[:, :1]
        return shift_structure_intensities(data, seg, self.structure_shift, self.structure_shift_probability,
                                           generator, self.label_manager.ignore_label,
                                           num_labels=max(self.label_manager.all_labels) + 1)


class SteeredStructureShiftTransform(BasicTransform):
    """Each labelled structure of a sample is moved so that its mean intensity (first channel, inside the patch)
    lands on ``targets[label]`` plus a uniform offset in ``[-noise, noise]`` (normalised units), for a ``probability``
    fraction of the samples; every channel gets the same offset. ``targets``: ``(L,)`` float, NaN where a label has no
    estimate (that structure stays). Used by self-training, whose pseudo-labels make the target's structure
    intensities estimable (:func:`~nnunet_glua.data.pseudo_labelled_target.structure_means`)."""

    labelled_source_only = True

    def __init__(self, targets: torch.Tensor, noise: float, probability: float):
        super().__init__()
        if noise < 0 or not 0.0 <= probability <= 1.0:
            raise ValueError(f"noise must be >= 0 and probability in [0, 1], got {noise} and {probability}")
        self.targets, self.noise, self.probability = targets.float(), float(noise), float(probability)

    def apply(self, data_dict: dict, **params) -> dict:
        if torch.rand(()) >= self.probability:
            return data_dict
        image, labels = data_dict["image"], data_dict["segmentation"][0].long()
        shifted = image.clone()
        for label in range(1, len(self.targets)):
            target = self.targets[label]
            inside = labels == label
            if torch.isnan(target) or not inside.any():
                continue
            offset = target - image[0][inside].mean() + (torch.rand(()) * 2 - 1) * self.noise
            shifted[:, inside] += offset.to(image.dtype)
        data_dict["image"] = shifted
        return data_dict
