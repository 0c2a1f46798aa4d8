"""The datasets of an adaptation experiment, read and checked before anything runs.

The *adaptation* dataset (labelled source training set, unlabelled target images, target test images with their
labels beside them) is what every row is evaluated on; its dataset.json may name a target-supervised *upper-bound*
dataset, which must share its label map and test set and must not train on a test case. The adaptation dataset's
plans are the plans of every row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nnunet_glua.evaluation.evaluate import EvaluationError, find_raw_dataset_folder
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import (PREPROCESSED, dataset_id_from_name, image_cases, label_files, load_plans,
                                   nnunet_folder)

__all__ = ["RawDataset", "read_dataset", "dataset_id", "open_adaptation_dataset", "target_test_cases",
           "upper_bound_dataset", "preprocessed_root", "adaptation_plans", "same_plans"]


@dataclass(frozen=True)
class RawDataset:
    """A dataset folder in ``nnUNet_raw`` and its dataset.json (``glua`` holds the adaptation fields)."""

    folder: Path
    dataset_json: dict[str, Any]

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def id(self) -> int:
        return dataset_id(self.name)

    @property
    def glua(self) -> dict[str, Any]:
        return self.dataset_json.get("glua") or {}

    @property
    def file_ending(self) -> str:
        return self.dataset_json.get("file_ending", ".nii.gz")

    @property
    def images_ts(self) -> Path:
        return self.folder / self.glua.get("target_test_images_folder", "imagesTs")

    @property
    def labels_ts(self) -> Path:
        return self.folder / self.glua.get("target_test_labels_folder", "labelsTs")


def read_dataset(folder: Path) -> RawDataset:
    """The dataset in ``folder``; :class:`BenchmarkError` if its dataset.json cannot be read."""
    return RawDataset(folder, read_json(folder / "dataset.json", BenchmarkError))


def dataset_id(name: str) -> int:
    """``"Dataset701_MMWHS"`` -> ``701``; :class:`BenchmarkError` for a name nnU-Net would not accept."""
    try:
        return dataset_id_from_name(name)
    except ValueError as e:
        raise BenchmarkError(None, str(e)) from None


def open_adaptation_dataset(dataset: "int | str | os.PathLike") -> RawDataset:
    """The adaptation dataset given by id, ``DatasetXXX_Name`` or raw folder; :class:`BenchmarkError` when it is
    missing or is the upper-bound dataset of a conversion (its role in dataset.json)."""
    try:
        adaptation = read_dataset(find_raw_dataset_folder(dataset))
    except EvaluationError as e:
        raise BenchmarkError(e.path, e.problem) from None
    role = adaptation.glua.get("role")
    if role not in (None, "adaptation"):
        raise BenchmarkError(adaptation.folder / "dataset.json",
                             f"is a {role!r} dataset; pass the adaptation dataset "
                             f"({adaptation.glua.get('adaptation_dataset') or 'the one converted with it'})")
    return adaptation


def target_test_cases(dataset: RawDataset) -> list[str]:
    """Case ids of the target test set, sorted; images and labels must match one to one."""
    for folder, what in ((dataset.images_ts, "target test images"), (dataset.labels_ts, "target test labels")):
        if not folder.is_dir():
            raise BenchmarkError(folder, f"the folder of the {what} does not exist; the benchmark needs a dataset "
                                         "converted with its target test labels (imagesTs + labelsTs)")
    labels = list(label_files(dataset.labels_ts, dataset.file_ending))
    images = image_cases(dataset.images_ts, dataset.file_ending)
    if not labels:
        raise BenchmarkError(dataset.labels_ts, f"holds no '*{dataset.file_ending}' label files")
    if labels != images:
        only_images = sorted(set(images) - set(labels))
        only_labels = sorted(set(labels) - set(images))
        raise BenchmarkError(dataset.labels_ts, "target test images and labels differ: "
                                                f"images without label {only_images}, labels without image "
                                                f"{only_labels}; every test image needs its label")
    return labels


def _is_dataset_folder_name(name: Any) -> bool:
    if not isinstance(name, str) or Path(name).name != name:
        return False
    try:
        dataset_id_from_name(name)
    except ValueError:
        return False
    return True


def upper_bound_dataset(adaptation: RawDataset, test_cases: Sequence[str]) -> RawDataset:
    """The target-supervised dataset named by the adaptation dataset.json, checked for the same test set and
    label map and for training cases disjoint from the test cases; :class:`BenchmarkError` (with what to do)
    otherwise."""
    dataset_json_file = adaptation.folder / "dataset.json"
    name = adaptation.glua.get("upper_bound_dataset")
    if not name:
        raise BenchmarkError(
            dataset_json_file,
            "names no target-supervised upper-bound dataset (glua.upper_bound_dataset is missing or empty). "
            "Convert the data again with --upper-bound-id ID (e.g. glua_convert_mmwhs ... -d 701 "
            "--upper-bound-id 702), or leave the row out: --rows source-only glua ...",
        )
    if not _is_dataset_folder_name(name):
        # a path here would let the upper bound be read from (or written next to) anything outside nnUNet_raw
        raise BenchmarkError(dataset_json_file, f"glua.upper_bound_dataset is {name!r}; it must be the name of a "
                                                "dataset folder next to this one (DatasetXXX_Name). Convert the data "
                                                "again with --upper-bound-id")
    folder = adaptation.folder.parent / name
    if not (folder / "dataset.json").is_file():
        raise BenchmarkError(folder, f"the upper-bound dataset named in {dataset_json_file} does not exist. Convert "
                                     "the data again with --upper-bound-id, or leave the row out (--rows ...)")
    upper = read_dataset(folder)
    if upper.dataset_json.get("labels") != adaptation.dataset_json.get("labels"):
        raise BenchmarkError(folder / "dataset.json", f"label map {upper.dataset_json.get('labels')} differs from "
                                                      f"{adaptation.name}'s {adaptation.dataset_json.get('labels')}")
    upper_tests = list(label_files(upper.labels_ts, upper.file_ending)) if upper.labels_ts.is_dir() else []
    if upper_tests and upper_tests != list(test_cases):
        raise BenchmarkError(upper.labels_ts, f"the upper-bound test set {upper_tests} is not the adaptation "
                                              f"dataset's {list(test_cases)}; both must come from one conversion")
    training = upper.folder / "imagesTr"
    leaked = sorted(set(image_cases(training, upper.file_ending)) & set(test_cases)) if training.is_dir() else []
    if leaked:
        raise BenchmarkError(training, f"the upper bound trains on target test cases {leaked}; its training set "
                                       "must exclude the test set (convert again)")
    return upper


def preprocessed_root() -> Path:
    """``$nnUNet_preprocessed``; :class:`BenchmarkError` when it is not set."""
    return nnunet_folder(PREPROCESSED, BenchmarkError, advice="set nnU-Net's three folders first (nnUNet_raw, "
                                                              "nnUNet_preprocessed, nnUNet_results)")


def adaptation_plans(dataset: RawDataset, plans: str, configuration: str) -> tuple[Path, dict[str, Any]]:
    """The plans file of ``dataset`` and its content, checked to hold ``configuration``; the error says how to
    plan the dataset when the file is missing."""
    path = preprocessed_root() / dataset.name / f"{plans}.json"
    if not path.is_file():
        raise BenchmarkError(path, f"plans not found. Plan and preprocess the source domain first: "
                                   f"nnUNetv2_plan_and_preprocess -d {dataset.id} -c {configuration} "
                                   "(or pass the right -p PLANS)")
    return path, load_plans(path, plans, configuration, BenchmarkError)


# keys that nnUNetv2_move_plans_between_datasets rewrites: plans equal up to these describe the same model
_PER_DATASET_PLANS_KEYS = ("dataset_name", "plans_name", "image_reader_writer")


def same_plans(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two plans describe the same model (they may belong to different datasets)."""
    def core(plans: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in plans.items() if k not in _PER_DATASET_PLANS_KEYS}

    return core(a) == core(b)
