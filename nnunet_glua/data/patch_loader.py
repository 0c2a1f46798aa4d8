"""Augmented patches without labels, for the domain discriminator (target domain) and its source counterpart.

Built from nnU-Net's own pieces so that both domains are sampled and augmented the way nnU-Net treats source
patches: ``nnUNetDatasetBlosc2`` (via ``infer_dataset_class``) reads the cases, ``nnUNetDataLoader.get_bbox``
picks uniformly random patch locations with nnU-Net's padding logic (``oversample_foreground_percent = 0``:
foreground oversampling would make the source patches differ in content from the target ones, and the
discriminator would learn content instead of style), and the augmentation is nnU-Net's training pipeline
(``nnUNetTrainer.get_training_transforms`` with the configuration's rotation / dummy-2D / mirroring settings).

Each batch is a dict::

    data  : float32 tensor (B, C, *patch_size)   augmented, normalized intensities (nnU-Net's z-scores etc.)
    valid : bool tensor    (B, 1, *patch_size)   True at voxels inside the image's nonzero region; False outside
                                                 it and where patch sampling or augmentation padded the patch
    keys  : list of the B case identifiers

nnU-Net encodes "outside / padded" as segmentation value -1 and its pipeline ends with a transform that sets
-1 to 0 (``RemoveLabelTransform``); that transform (and deep-supervision downsampling) is dropped here, and
``valid`` is computed from the segmentation right after the remaining transforms.

Structural guard: a loader made with ``forbid_foreground=True`` (the default; use it for unlabelled target data)
refuses cases whose properties list foreground locations and raises :class:`ForegroundInUnlabelledDataError`
as soon as a patch holds a voxel with segmentation > 0, so target labels cannot reach training through it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from threadpoolctl import threadpool_limits

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class, nnUNetBaseDataset
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.label_handling.label_handling import LabelManager

# transforms of nnU-Net's training pipeline that would destroy (RemoveLabel: -1 -> 0) or reshape (deep
# supervision) the segmentation from which the valid mask is computed
_DROPPED_TRANSFORMS = (RemoveLabelTransform, DownsampleSegForDSTransform)


class ForegroundInUnlabelledDataError(RuntimeError):
    """A loader for unlabelled data met a labelled voxel: target labels would leak into training."""


@dataclass(frozen=True)
class AugmentationSettings:
    """nnU-Net's per-configuration augmentation settings.

    ``rotation_for_DA``: rotation range in radians; ``do_dummy_2d_data_aug``: rotate/scale in-plane only (very
    anisotropic 3D patches); ``initial_patch_size``: the larger patch cut before the spatial transform crops it
    back to the configuration's patch size (so rotations do not pull in padding); ``mirror_axes``: axes
    mirrored at random.
    """

    rotation_for_DA: Any
    do_dummy_2d_data_aug: bool
    initial_patch_size: tuple[int, ...]
    mirror_axes: tuple[int, ...]


def augmentation_settings(configuration_manager) -> AugmentationSettings:
    """The settings nnU-Net's default trainer derives from ``configuration_manager`` (its own code is called)."""
    # configure_rotation_dummyDA_mirroring_and_inital_patch_size only reads the configuration and logs, so a
    # stand-in object is enough to reuse nnU-Net's logic instead of copying it
    stand_in = SimpleNamespace(configuration_manager=configuration_manager,
                               print_to_log_file=lambda *args, **kwargs: None)
    rotation, dummy_2d, initial, mirror = \
        nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(stand_in)
    return AugmentationSettings(rotation, bool(dummy_2d), tuple(int(i) for i in initial), tuple(mirror))


def augmentation_settings_from_trainer(trainer: nnUNetTrainer) -> AugmentationSettings:
    """The settings of a (possibly customised) nnU-Net trainer instance, so both domains get its augmentation."""
    rotation, dummy_2d, initial, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    return AugmentationSettings(rotation, bool(dummy_2d), tuple(int(i) for i in initial),
                                tuple(mirror) if mirror is not None else ())


def _strip(transform: BasicTransform) -> BasicTransform:
    if isinstance(transform, ComposeTransforms):
        # and what a trainer adds for its labelled source batch only (structure shift, validity channel)
        transform.transforms = [_strip(t) for t in transform.transforms if not isinstance(t, _DROPPED_TRANSFORMS)
                                and not getattr(t, "labelled_source_only", False)]
    return transform


def build_patch_transforms(patch_size: Sequence[int], settings: AugmentationSettings,
                           use_mask_for_norm: Sequence[bool] | None,
                           trainer: "type[nnUNetTrainer] | nnUNetTrainer" = nnUNetTrainer) -> BasicTransform:
    """nnU-Net's training augmentation for ``patch_size``, minus the transforms that erase padding information.

    ``trainer`` (class or instance) supplies ``get_training_transforms``, so a trainer subclass with its own
    augmentation gives the unlabelled patches that augmentation too. No deep supervision, no cascade, no regions.
    """
    transforms = trainer.get_training_transforms(
        np.array(patch_size), settings.rotation_for_DA, None, settings.mirror_axes, settings.do_dummy_2d_data_aug,
        use_mask_for_norm=list(use_mask_for_norm) if use_mask_for_norm is not None else None,
        is_cascaded=False, foreground_labels=None, regions=None, ignore_label=None)
    if not isinstance(transforms, ComposeTransforms):
        raise TypeError(f"{getattr(trainer, '__name__', type(trainer).__name__)}.get_training_transforms returned "
                        f"{type(transforms).__name__}, expected ComposeTransforms: cannot remove the transforms "
                        f"that erase the padding marker (-1) from the segmentation")
    return _strip(transforms)


class UnlabelledPatchLoader(nnUNetDataLoader):
    """Random patches of a preprocessed nnU-Net folder with a validity mask instead of a segmentation.

    ``patch_size`` is the patch cut from the case (nnU-Net's ``initial_patch_size`` when augmenting),
    ``final_patch_size`` the configuration's patch size that comes out. 2D configurations (a 2-entry patch size)
    read one random slice of the first axis, as nnU-Net does. Batches: see the module docstring.
    """

    def __init__(self, data: nnUNetBaseDataset, batch_size: int, patch_size: Sequence[int],
                 final_patch_size: Sequence[int], transforms: BasicTransform | None = None,
                 forbid_foreground: bool = True):
        # nnU-Net's loader consults the label manager only for ignore-label handling, which random sampling never needs
        label_manager = LabelManager({"background": 0}, regions_class_order=None)
        super().__init__(data, batch_size, patch_size, final_patch_size, label_manager,
                         oversample_foreground_percent=0.0, sampling_probabilities=None,
                         pad_sides=None, probabilistic_oversampling=False, transforms=transforms)
        # nnU-Net samples ignore-label datasets from annotated regions; unlabelled data has none, so always
        # sample uniformly
        self.has_ignore = False
        self.forbid_foreground = forbid_foreground
        if forbid_foreground:
            self._check_properties_have_no_foreground()

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Case identifiers this loader draws from."""
        return tuple(self._data.identifiers)

    def _check_properties_have_no_foreground(self) -> None:
        for key in self._data.identifiers:
            properties = self._data.load_case(key)[3]
            locations = properties.get("class_locations") or {}
            if any(len(v) > 0 for v in locations.values()):
                raise ForegroundInUnlabelledDataError(
                    f"{os.path.join(self._data.source_folder, key)}: case '{key}' has foreground locations in its "
                    f"properties, so it was preprocessed WITH labels. Unlabelled target data must come from "
                    f"glua_preprocess_target; pass forbid_foreground=False only for labelled source data")

    def generate_train_batch(self) -> dict:
        keys = self.get_indices()
        data_all = valid_all = None
        with torch.no_grad(), threadpool_limits(limits=1, user_api=None):
            for j, key in enumerate(keys):
                data, seg, _, _ = self._data.load_case(key)
                lbs, ubs = self.get_bbox(data.shape[1:], False, None)
                bbox = [[lo, hi] for lo, hi in zip(lbs, ubs)]
                image = torch.from_numpy(crop_and_pad_nd(data, bbox, 0)).float()
                # -1 marks outside-the-image voxels, both from preprocessing and from this padding
                seg_patch = torch.from_numpy(crop_and_pad_nd(seg, bbox, -1, cast_cropped_to=np.int16)).to(torch.int16)
                if self.forbid_foreground and bool((seg_patch > 0).any()):
                    raise ForegroundInUnlabelledDataError(
                        f"{os.path.join(self._data.source_folder, key)}: case '{key}' holds labelled voxels "
                        f"(segmentation > 0) but was loaded as unlabelled data; target labels must never reach "
                        f"training. Re-create the folder with glua_preprocess_target")
                if self.patch_size_was_2d:
                    image, seg_patch = image[:, 0], seg_patch[:, 0]
                if self.transforms is not None:
                    out = self.transforms(image=image, segmentation=seg_patch)
                    image, seg_patch = out["image"], out["segmentation"]
                    if isinstance(seg_patch, list):
                        raise TypeError("the patch transforms returned a list of segmentations (deep supervision); "
                                        "build them with build_patch_transforms")
                valid = seg_patch[:1] >= 0
                if data_all is None:
                    data_all = torch.empty((self.batch_size, *image.shape), dtype=torch.float32)
                    valid_all = torch.empty((self.batch_size, *valid.shape), dtype=torch.bool)
                data_all[j] = image
                valid_all[j] = valid
        return {"data": data_all, "valid": valid_all, "keys": [str(k) for k in keys]}


def make_patch_loader(folder: "str | os.PathLike", configuration_manager, batch_size: int | None = None,
                      identifiers: Sequence[str] | None = None, *, forbid_foreground: bool = True,
                      forbidden_identifiers: Iterable[str] = (), augment: bool = True,
                      settings: AugmentationSettings | None = None,
                      trainer: "type[nnUNetTrainer] | nnUNetTrainer" = nnUNetTrainer) -> UnlabelledPatchLoader:
    """A :class:`UnlabelledPatchLoader` over the preprocessed cases in ``folder``.

    - ``batch_size``: default the configuration's batch size.
    - ``identifiers``: the cases to draw from (default: all cases in ``folder``).
    - ``forbid_foreground``: True for unlabelled target data (structural guard); False for the labelled SOURCE
      folder, whose labels this loader then ignores (only the validity mask is derived from them).
    - ``forbidden_identifiers``: ids that must not be among the loader's cases (e.g. target test ids);
      an overlap raises ``ValueError``.
    - ``augment``: nnU-Net's training augmentation (``settings``, default :func:`augmentation_settings`);
      without it, patches of the configuration's patch size are cut at random and returned as they are.
    """
    folder = str(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: preprocessed folder not found (run glua_preprocess_target for target "
                                f"data, nnUNetv2_preprocess for source data)")
    dataset_class = infer_dataset_class(folder)
    all_ids = sorted(dataset_class.get_identifiers(folder))
    ids = list(all_ids if identifiers is None else identifiers)
    if not ids:
        raise ValueError(f"{folder}: no cases to sample patches from")
    unknown = sorted(set(ids) - set(all_ids))
    if unknown:
        raise ValueError(f"{folder}: requested cases are not in this folder: {unknown[:10]}")
    overlap = sorted(set(ids) & set(forbidden_identifiers))
    if overlap:
        raise ValueError(f"{folder}: cases {overlap[:10]} are forbidden for this loader (e.g. test cases) but were "
                         f"requested; test data must never be used for training")
    dataset = dataset_class(folder, ids)
    final_patch_size = tuple(int(i) for i in configuration_manager.patch_size)
    if augment:
        settings = settings or augmentation_settings(configuration_manager)
        transforms = build_patch_transforms(final_patch_size, settings, configuration_manager.use_mask_for_norm,
                                            trainer)
        patch_size = settings.initial_patch_size
    else:
        transforms, patch_size = None, final_patch_size
    return UnlabelledPatchLoader(dataset, batch_size or configuration_manager.batch_size, patch_size,
                                 final_patch_size, transforms=transforms, forbid_foreground=forbid_foreground)


def make_augmenter(loader: UnlabelledPatchLoader, num_processes: int | None = None, pin_memory: bool = False,
                   num_cached: int | None = None, worker_seeds: Callable[[int], list[int]] | None = None):
    """Run ``loader`` in background workers the way nnU-Net's trainer runs its training loader.

    ``num_processes`` defaults to nnU-Net's ``get_allowed_n_proc_DA()`` (environment variable
    ``nnUNet_n_proc_DA``); 0 gives a ``SingleThreadedAugmenter`` (debugging, 1-2 core machines; it draws from this
    process's random generators), otherwise a ``NonDetMultiThreadedAugmenter``, whose workers are seeded with
    ``worker_seeds(n)`` (``None``: from OS entropy). Call ``_finish()`` on the result when done (nnU-Net does the
    same).
    """
    n = get_allowed_n_proc_DA() if num_processes is None else int(num_processes)
    if n <= 0:
        return SingleThreadedAugmenter(loader, None)
    seeds = list(worker_seeds(n)) if worker_seeds is not None else None
    return NonDetMultiThreadedAugmenter(data_loader=loader, transform=None, num_processes=n,
                                        num_cached=num_cached or max(6, n // 2), seeds=seeds, pin_memory=pin_memory,
                                        wait_time=0.002)
