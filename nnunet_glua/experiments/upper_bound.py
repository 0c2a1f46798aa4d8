"""The upper-bound dataset gets the adaptation dataset's plans and is preprocessed with them, so that patch size,
spacing and network are identical in every row.

nnU-Net's own commands do the work (``nnUNetv2_extract_fingerprint``, ``nnUNetv2_move_plans_between_datasets``,
``nnUNetv2_preprocess``); each step is skipped when its output is already there.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from nnunet_glua.experiments.commands import Command, Executor
from nnunet_glua.experiments.datasets import preprocessed_root, same_plans
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.settings import ExperimentSettings
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import image_cases

__all__ = ["needs_upper_bound", "prepare_upper_bound"]


def needs_upper_bound(settings: ExperimentSettings) -> bool:
    """Whether a selected row of some seed still has to train on the upper-bound dataset."""
    return settings.upper is not None and any(
        not settings.is_finished(seed, row) for seed in settings.seeds for row in settings.rows if row.upper_bound)


def prepare_upper_bound(settings: ExperimentSettings, executor: Executor) -> None:
    """Give the upper-bound dataset the adaptation dataset's plans and preprocess it with them.

    Raises :class:`BenchmarkError` when the upper bound already has plans of that name that differ (they would
    make it another model), or when nnU-Net did not write what it should have.
    """
    s, upper = settings, settings.upper
    if upper is None:
        raise BenchmarkError(None, "no upper-bound dataset to prepare")
    pre = preprocessed_root() / upper.name
    upper_id, source_id = str(upper.id), str(s.adaptation.id)
    if not (pre / "dataset_fingerprint.json").is_file():
        # nnU-Net's trainer copies the fingerprint into its output folder, so it must exist
        executor.execute(Command((executor.program("nnUNetv2_extract_fingerprint"), "-d", upper_id,
                                  "-np", str(s.num_processes))))
    # nnUNetv2_preprocess reads the dataset.json from nnUNet_preprocessed; only planning copies it there
    if s.dry_run:
        executor.note(f"copy {upper.folder / 'dataset.json'} -> {pre / 'dataset.json'}")
    else:
        pre.mkdir(parents=True, exist_ok=True)
        with atomic_path(pre / "dataset.json") as tmp:
            shutil.copyfile(upper.folder / "dataset.json", tmp)
    plans_file = pre / f"{s.plans}.json"
    if plans_file.is_file():
        if not same_plans(read_json(plans_file, BenchmarkError), s.plans_content):
            raise BenchmarkError(
                plans_file,
                f"exists and differs from {s.adaptation.name}'s {s.plans}.json, so the upper bound would not "
                f"share the adaptation dataset's plans. Remove it (and {pre / '<data identifier>'}) to let the "
                f"benchmark move the plans with nnUNetv2_move_plans_between_datasets, or use other plans (-p).",
            )
        executor.note(f"{plans_file.name} of {upper.name} already equals {s.adaptation.name}'s")
    else:
        executor.execute(Command((executor.program("nnUNetv2_move_plans_between_datasets"), "-s", source_id,
                                  "-t", upper_id, "-sp", s.plans, "-tp", s.plans)))
        if not s.dry_run and not plans_file.is_file():
            raise BenchmarkError(plans_file, "nnUNetv2_move_plans_between_datasets did not write the plans")
    data_identifier = s.plans_content["configurations"][s.configuration].get(
        "data_identifier", f"{s.plans}_{s.configuration}")
    if _is_preprocessed(settings, pre / data_identifier, pre / "gt_segmentations"):
        executor.note(f"{upper.name} is already preprocessed with {s.plans} {s.configuration}")
        return
    executor.execute(Command((executor.program("nnUNetv2_preprocess"), "-d", upper_id, "-c", s.configuration,
                              "-plans_name", s.plans, "-np", str(s.num_processes))))


def _is_preprocessed(settings: ExperimentSettings, data_folder: Path, gt_folder: Path) -> bool:
    # nnUNetv2_preprocess empties the data folder first and writes each case's .pkl last, then copies the
    # reference segmentations: a .pkl and a reference per training case means it finished
    upper = settings.upper
    assert upper is not None
    cases = image_cases(upper.folder / "imagesTr", upper.file_ending)
    return bool(cases) and data_folder.is_dir() and gt_folder.is_dir() and all(
        (data_folder / f"{c}.pkl").is_file() and (gt_folder / f"{c}{upper.file_ending}").is_file()
        for c in cases)
