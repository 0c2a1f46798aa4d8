"""What the project adds to nnU-Net's training augmentation pipeline (batchgeneratorsv2 transforms, per sample).

nnU-Net's pipeline runs spatial transforms, then intensity transforms (noise, blur, brightness, contrast,
low-resolution simulation, gamma), then mirroring, masking, ``RemoveLabelTransform(-1 -> 0)`` and the
deep-supervision downsampling. Two additions go into it:

- :class:`~nnunet_glua.training.structure_shift.StructureShiftTransform` right after the spatial transforms, before
  every intensity transform, so the label-shaped intensity steps it adds are blurred, noised and contrast-changed
  like real edges (applied after the augmentation they would stay perfectly sharp: a cue real target images never
  have).
- :class:`AppendValidityChannel` right before ``RemoveLabelTransform``: nnU-Net marks padding and the outside of the
  image as -1 and then erases the marker; the extra segmentation channel keeps it (1 inside the image, 0 outside)
  for the feature alignment, which must treat source padding exactly as target padding. The trainer splits it off
  before the segmentation loss (:func:`split_validity`).

Transforms added here carry ``labelled_source_only = True``: the unlabelled target loader
(:mod:`nnunet_glua.data.patch_loader`) drops them from the same pipeline.
"""
from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, SegOnlyTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform

__all__ = ["AppendValidityChannel", "add_transforms", "split_validity"]


class AppendValidityChannel(SegOnlyTransform):
    """Appends ``seg[0] >= 0`` (1 inside the image, 0 where nnU-Net padded or outside the body) as the last
    segmentation channel."""

    labelled_source_only = True

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        return torch.cat((segmentation, (segmentation[:1] >= 0).to(segmentation.dtype)), 0)


def add_transforms(pipeline: BasicTransform, before_intensity: BasicTransform | None = None,
                   before_label_removal: BasicTransform | None = None, owner: str = "this trainer") -> BasicTransform:
    """nnU-Net's ``pipeline`` (a ``ComposeTransforms``) with ``before_intensity`` inserted right after the spatial
    transform (after its 2D-to-3D conversion, if any) and ``before_label_removal`` right before
    ``RemoveLabelTransform``. Raises ``TypeError`` naming ``owner`` when the pipeline lacks either anchor (a trainer
    with its own augmentation must keep nnU-Net's structure)."""
    if before_intensity is None and before_label_removal is None:
        return pipeline
    steps = list(pipeline.transforms) if isinstance(pipeline, ComposeTransforms) else None
    spatial = [i for i, t in enumerate(steps or []) if isinstance(t, SpatialTransform)]
    removal = [i for i, t in enumerate(steps or []) if isinstance(t, RemoveLabelTransform)]
    if steps is None or not spatial or not removal:
        raise TypeError(f"{owner}: the training augmentation is not nnU-Net's (a ComposeTransforms with a "
                        "SpatialTransform and a RemoveLabelTransform), so the structure shift and the validity "
                        "channel have no place in it")
    if before_label_removal is not None:
        steps.insert(removal[0], before_label_removal)
    if before_intensity is not None:
        at = spatial[0] + 1
        if at < len(steps) and isinstance(steps[at], Convert2DTo3DTransform):
            at += 1
        steps.insert(at, before_intensity)
    pipeline.transforms = steps
    return pipeline


def split_validity(target: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor | list[torch.Tensor],
                                                                         torch.Tensor]:
    """nnU-Net's training target with the validity channel of :class:`AppendValidityChannel` removed (the labels
    the loss expects, same type: tensor or deep-supervision list) and the full-resolution validity ``(B, 1,
    *spatial)`` bool."""
    full = target[0] if isinstance(target, list) else target
    valid = full[:, -1:] > 0
    labels = [t[:, :-1] for t in target] if isinstance(target, list) else target[:, :-1]
    return labels, valid
