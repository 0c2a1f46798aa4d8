"""One benchmark's settings, checked, and the folder layout they imply.

Layout under the output folder ``out``::

    seed_<k>/nnUNet_results/                     first-stage rows of seed k (trained from scratch)
    seed_<k>/nnUNet_results_from_<start row>/    rows that start from <start row>'s final checkpoint (a second row
                                                 with the same trainer and start: ..._from_<start row>__<row>/)
    seed_<k>/<row>/predictions/                  nnUNetv2_predict output on the adaptation imagesTs
    seed_<k>/<row>/evaluation/                   evaluation.json/.csv/.md and row.json
    seed_<k>/<row>/timing.json                   training and prediction times, kept across interruptions

Separate results roots per start row let two stages use the same trainer name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nnunet_glua.experiments.commands import check_trainers
from nnunet_glua.experiments.datasets import (RawDataset, adaptation_plans, open_adaptation_dataset, target_test_cases,
                                              upper_bound_dataset)
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.rows import Row, normalise_schedule, results_folder_name, select_rows, trainer_name
from nnunet_glua.nnunet_io import RESULTS, nnunet_folder
from nnunet_glua.parallel import default_num_processes
from nnunet_glua.paths import ensure_trainer_folder_registered

__all__ = ["DEFAULT_SEEDS", "EVALUATION_FOLDER", "PREDICTION_FOLDER", "ROW_RECORD", "PROGRESS_RECORD",
           "NOT_TRAINED_RECORD", "ExperimentSettings", "build_settings", "default_out"]

DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
EVALUATION_FOLDER = "evaluation"
PREDICTION_FOLDER = "predictions"
ROW_RECORD = "row.json"
PROGRESS_RECORD = "timing.json"
#: written instead of an evaluation when a row cannot be trained (e.g. its pseudo-label set keeps no case)
NOT_TRAINED_RECORD = "not_trained.json"


@dataclass(frozen=True)
class ExperimentSettings:
    """Everything one benchmark run depends on, and where each of its files goes.

    ``plans_file``/``plans_content``: the adaptation dataset's plans (every row uses them); ``upper``: the
    upper-bound dataset, ``None`` when no selected row trains on it; ``test_time_mirroring``: whether
    prediction mirrors (nnU-Net's default) or runs with ``--disable_tta``.
    """

    adaptation: RawDataset
    upper: RawDataset | None
    test_cases: tuple[str, ...]
    plans_file: Path
    plans_content: Mapping[str, Any]
    configuration: str
    plans: str
    fold: str
    schedule: str
    fine_tune_schedule: str
    seeds: tuple[int, ...]
    rows: tuple[Row, ...]
    device: str
    out: Path
    num_processes: int
    test_time_mirroring: bool = True
    dry_run: bool = False

    def row(self, key: str) -> Row:
        """The selected row with this key; :class:`BenchmarkError` if it is not selected."""
        for row in self.rows:
            if row.key == key:
                return row
        raise BenchmarkError(None, f"row {key!r} is not among this benchmark's rows {[r.key for r in self.rows]}")

    def seed_root(self, seed: int) -> Path:
        return self.out / f"seed_{seed}"

    def results_root(self, seed: int, row: Row) -> Path:
        """The ``nnUNet_results`` that ``row`` trains into for ``seed``."""
        return self.seed_root(seed) / results_folder_name(row)

    def trainer(self, row: Row) -> str:
        """The trainer class of ``row``: its base name with the schedule of its stage."""
        return trainer_name(row, self.schedule if row.first_stage else self.fine_tune_schedule)

    def row_folder(self, seed: int, row: Row) -> Path:
        return self.seed_root(seed) / row.key

    def evaluation_folder(self, seed: int, row: Row) -> Path:
        return self.row_folder(seed, row) / EVALUATION_FOLDER

    def prediction_folder(self, seed: int, row: Row) -> Path:
        return self.row_folder(seed, row) / PREDICTION_FOLDER

    def not_trained_record(self, seed: int, row: Row) -> Path:
        """Where the benchmark says why ``row`` of ``seed`` could not be trained (absent when it could)."""
        return self.row_folder(seed, row) / NOT_TRAINED_RECORD

    def is_finished(self, seed: int, row: Row) -> bool:
        """Whether ``row`` of ``seed`` has its evaluation (written last, so the row is complete)."""
        return (self.evaluation_folder(seed, row) / "evaluation.json").is_file()

    def trained_dataset(self, row: Row) -> RawDataset:
        if row.upper_bound:
            if self.upper is None:
                raise BenchmarkError(None, f"row {row.key!r} trains on the upper-bound dataset, which these settings "
                                           "lack")
            return self.upper
        return self.adaptation

    def fold_folder(self, seed: int, row: Row) -> Path:
        """nnU-Net's output folder of ``row``'s fold (checkpoints, training log) for ``seed``."""
        return (self.results_root(seed, row) / self.trained_dataset(row).name
                / f"{self.trainer(row)}__{self.plans}__{self.configuration}" / f"fold_{self.fold}")

    def start_checkpoint(self, seed: int, row: Row) -> Path | None:
        """The checkpoint ``row`` starts from (``None``: it trains from scratch)."""
        if row.starts_from is None:
            return None
        return self.fold_folder(seed, self.row(row.starts_from)) / "checkpoint_final.pth"

    def pseudo_label_set(self, seed: int, row: Row) -> str | None:
        """Name of the pseudo-label set a self-training ``row`` trains on for ``seed`` (``None`` for other rows):
        unique to this benchmark folder, seed, start row and filter options, as the sets of a dataset share one
        folder (rows with the same start and options share the set)."""
        if not row.pseudo_labels:
            return None
        import hashlib

        tag = hashlib.sha256(str(self.out.resolve()).encode()).hexdigest()[:8]
        name = f"benchmark_{tag}_seed{seed}_fold{self.fold}_from_{row.starts_from}"
        if row.pseudo_label_options:
            name += "_" + hashlib.sha256(" ".join(row.pseudo_label_options).encode()).hexdigest()[:6]
        return name

    def identity(self, seed: int, row: Row) -> dict[str, Any]:
        """What a finished row's results depend on; a stored row must match it to be reused."""
        return {
            "row": row.key,
            "trainer": self.trainer(row),
            "starts_from": row.starts_from,
            "trained_dataset": self.trained_dataset(row).name,
            "evaluated_dataset": self.adaptation.name,
            "configuration": self.configuration,
            "plans": self.plans,
            "fold": self.fold,
            "seed": seed,
            "test_time_mirroring": self.test_time_mirroring,
        }


def default_out(adaptation: RawDataset, configuration: str, plans: str, fold: str, schedule: str,
                fine_tune_schedule: str, test_time_mirroring: bool = True) -> Path:
    """``$nnUNet_results/<adaptation>/glua_benchmark_<configuration>_<schedule>`` plus a suffix for every setting
    that differs from the usual one, so that two benchmarks never share a folder by default."""
    results = nnunet_folder(RESULTS, BenchmarkError, advice="set it or pass an output folder (--out)")
    name = f"glua_benchmark_{configuration}_{schedule.lstrip('_') or 'default'}"
    if fine_tune_schedule != schedule:
        name += f"_then_{fine_tune_schedule.lstrip('_') or 'default'}"
    if plans != "nnUNetPlans":
        name += f"_{plans}"
    if fold != "0":
        name += f"_fold{fold}"
    if not test_time_mirroring:
        name += "_no_mirroring"
    return results / adaptation.name / name


def build_settings(
    dataset: "int | str | os.PathLike",
    configuration: str = "3d_fullres",
    plans: str = "nnUNetPlans",
    fold: "int | str" = 0,
    schedule: str = "",
    seeds: Sequence[int] = DEFAULT_SEEDS,
    fine_tune_schedule: str | None = None,
    rows: Sequence[str] | None = None,
    device: str = "cuda",
    out: "str | os.PathLike | None" = None,
    ablations: bool = True,
    dry_run: bool = False,
    num_processes: int | None = None,
    test_time_mirroring: bool = True,
) -> ExperimentSettings:
    """Check the arguments of :func:`~nnunet_glua.experiments.benchmark.run_benchmark` and the datasets, plans and
    trainers they name; return the settings. Registers the plugin's trainer folder in ``nnUNet_extTrainer``.

    Raises :class:`BenchmarkError`, naming the file at fault and what to do, before anything runs.
    """
    schedule = normalise_schedule(schedule)
    fine_tune_schedule = schedule if fine_tune_schedule is None else normalise_schedule(fine_tune_schedule)
    fold = str(fold)
    if fold != "all" and not fold.isdigit():
        raise BenchmarkError(None, f"fold must be a fold number or 'all', got {fold!r}")
    seeds = tuple(int(k) for k in seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BenchmarkError(None, f"seeds must be distinct integers >= 0, got {list(seeds)}")
    if device not in ("cuda", "cpu", "mps"):
        raise BenchmarkError(None, f"device must be cuda, cpu or mps, got {device!r}")
    selected = tuple(select_rows(rows, ablations))
    adaptation = open_adaptation_dataset(dataset)
    test_cases = tuple(target_test_cases(adaptation))
    upper = upper_bound_dataset(adaptation, test_cases) if any(r.upper_bound for r in selected) else None
    plans_file, plans_content = adaptation_plans(adaptation, plans, configuration)
    if out is None:
        out = default_out(adaptation, configuration, plans, fold, schedule, fine_tune_schedule, test_time_mirroring)
    settings = ExperimentSettings(
        adaptation=adaptation, upper=upper, test_cases=test_cases, plans_file=plans_file, plans_content=plans_content,
        configuration=configuration, plans=plans, fold=fold, schedule=schedule, fine_tune_schedule=fine_tune_schedule,
        seeds=seeds, rows=selected, device=device, out=Path(out).resolve(),
        num_processes=num_processes if num_processes is not None else default_num_processes(cap=8),
        test_time_mirroring=test_time_mirroring, dry_run=dry_run,
    )
    ensure_trainer_folder_registered()
    check_trainers(settings.trainer(r) for r in selected)
    return settings
