"""A tiny UDA raw dataset (nnU-Net layout + "glua" block) and its nnU-Net plans, for data-pipeline tests.

Layout written by :func:`write_tiny_uda_dataset`::

    imagesTr/src_00{0..4}_0000.nii.gz + labelsTr/   labelled source domain (bright structures)
    imagesTargetTr/tgt_00{0..2}_0000.nii.gz         unlabelled target domain (inverted contrast); tgt_000 is a
                                                    byte-identical copy of src_000's image, tgt_001/002 have a
                                                    coarser spacing (they get resampled)
    imagesTs/tst_00{0..1}_0000.nii.gz + labelsTs/   target test set

Every volume is zero outside an ellipsoidal "body", so nnU-Net crops each one and marks the outside as -1.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SOURCE_CASES = [f"src_{i:03d}" for i in range(5)]
TARGET_CASES = [f"tgt_{i:03d}" for i in range(3)]
TEST_CASES = [f"tst_{i:03d}" for i in range(2)]
#: numpy (z, y, x) shape of the source volumes
SHAPE = (20, 24, 24)
#: SimpleITK (x, y, z) spacing in mm of the source volumes and of tgt_000
SPACING = (1.0, 1.0, 1.5)
#: spacing of the other target and test volumes (resampled by preprocessing)
COARSE_SPACING = (1.25, 1.25, 1.5)


def _volume(rng: np.random.Generator, shape: tuple[int, int, int],
            target_domain: bool) -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    shift = rng.uniform(-0.1, 0.1, size=3)
    body = ((z - shift[0]) / 0.85) ** 2 + ((y - shift[1]) / 0.8) ** 2 + ((x - shift[2]) / 0.75) ** 2 < 1
    organ1 = (z - shift[0]) ** 2 + (y - 0.25 - shift[1]) ** 2 + (x - shift[2]) ** 2 < 0.3 ** 2
    organ2 = (z - shift[0]) ** 2 + (y + 0.35 - shift[1]) ** 2 + (x - 0.2 - shift[2]) ** 2 < 0.2 ** 2
    seg = np.zeros(shape, np.uint8)
    seg[organ1 & body] = 1
    seg[organ2 & body] = 2
    intensity = {0: 100.0, 1: 220.0, 2: 40.0} if not target_domain else {0: 300.0, 1: 120.0, 2: 500.0}
    img = np.zeros(shape, np.float32)
    for label, value in intensity.items():
        img[(seg == label) & body] = value
    img += rng.normal(0, 10, size=shape).astype(np.float32)
    img[~body] = 0  # converters zero everything outside the body
    return img, seg


def _write(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def write_tiny_uda_dataset(raw_root: Path, dataset_id: int, name: str = "GLUATargetData", seed: int = 0) -> Path:
    """Write the dataset into ``raw_root/DatasetXXX_name`` and return that folder."""
    rng = np.random.default_rng(seed)
    folder = raw_root / f"Dataset{dataset_id:03d}_{name}"
    if folder.exists():
        shutil.rmtree(folder)
    for case in SOURCE_CASES:
        img, seg = _volume(rng, SHAPE, target_domain=False)
        _write(img, SPACING, folder / "imagesTr" / f"{case}_0000.nii.gz")
        _write(seg, SPACING, folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "imagesTargetTr").mkdir()
    shutil.copyfile(folder / "imagesTr" / f"{SOURCE_CASES[0]}_0000.nii.gz",
                    folder / "imagesTargetTr" / f"{TARGET_CASES[0]}_0000.nii.gz")
    coarse_shape = (20, 20, 20)
    for case in TARGET_CASES[1:]:
        img, _ = _volume(rng, coarse_shape, target_domain=True)
        _write(img, COARSE_SPACING, folder / "imagesTargetTr" / f"{case}_0000.nii.gz")
    for case in TEST_CASES:
        img, seg = _volume(rng, coarse_shape, target_domain=True)
        _write(img, COARSE_SPACING, folder / "imagesTs" / f"{case}_0000.nii.gz")
        _write(seg, COARSE_SPACING, folder / "labelsTs" / f"{case}.nii.gz")
    dataset_json = {
        "channel_names": {"0": "zscore"},
        "labels": {"background": 0, "organ1": 1, "organ2": 2},
        "numTraining": len(SOURCE_CASES),
        "file_ending": ".nii.gz",
        "name": name,
        "glua": {
            "format_version": 1,
            "direction": "MR2CT",
            "source_modality": "MR",
            "target_modality": "CT",
            "role": "adaptation",
            "unlabelled_target_folder": "imagesTargetTr",
            "target_test_images_folder": "imagesTs",
            "target_test_labels_folder": "labelsTs",
            "target_training_cases": TARGET_CASES,
            "target_test_cases": TEST_CASES,
        },
    }
    with open(folder / "dataset.json", "w") as f:
        json.dump(dataset_json, f, indent=2)
    return folder


def plan_and_preprocess(dataset_id: int, configurations: tuple[str, ...] = ("3d_fullres", "2d")) -> None:
    """nnU-Net fingerprint + planning + source preprocessing through its Python API, single process."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)

    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False,
                         show_progress_bar=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=configurations, num_processes=(1,), verbose=False,
               show_progress_bar=False)


def weights_with_noisy_test_labels(dataset_folder: Path, train) -> list[dict]:
    """The state dicts of two ``train()`` runs (``train`` returns one), the second with every target test label of
    ``dataset_folder/labelsTs`` replaced by noise; the labels are restored afterwards. Equal weights show that the
    test labels never reach training."""
    labels_ts = dataset_folder / "labelsTs"
    backup = dataset_folder.parent / f"{dataset_folder.name}_labelsTs_backup"
    shutil.copytree(labels_ts, backup)
    weights = []
    try:
        for run in range(2):
            if run == 1:
                rng = np.random.default_rng(0)
                for f in labels_ts.glob("*.nii.gz"):
                    ref = sitk.ReadImage(str(f))
                    noise = sitk.GetImageFromArray(rng.integers(0, 3, sitk.GetArrayFromImage(ref).shape, np.uint8))
                    noise.CopyInformation(ref)
                    sitk.WriteImage(noise, str(f))
            weights.append({k: v.clone() for k, v in train().items()})
    finally:
        shutil.rmtree(labels_ts)
        shutil.move(backup, labels_ts)
    return weights
