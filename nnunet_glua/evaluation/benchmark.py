"""The headline of an adaptation experiment: source-only, GLUA (and its ablations) and target-supervised
nnU-Net, source-only trained with ``--schedule`` and every other row started from that model and trained with
``--fine-tune-schedule``, evaluated on one target test set, repeated over seeds.

Two stages. First, source-only nnU-Net is trained from scratch (trainer suffix ``--schedule``, ``{s}`` below).
Then every other row starts from that model (nnU-Net's ``-pretrained_weights``; the segmentation head is
re-initialised by nnU-Net's loader) and trains the second-stage schedule (``--fine-tune-schedule``, ``{f}``;
default: the same as ``{s}``). "source-only, continued" trains that second stage on the source alone, so every
compared row has had exactly the same number of steps; it is the lower bound of "gap closed".

==============================  ==========================================  =====================================
row (``--rows`` key)            trainer                                     trained on
==============================  ==========================================  =====================================
source-only                     ``SourceOnlyTrainer{s}``                    labelled source, from scratch
source-only-continued           ``SourceOnlyTrainer{f}``                    labelled source
glua                            ``GLUATrainer{f}``                          labelled source + unlabelled target
target-supervised               ``SourceOnlyTrainer{f}``                    upper-bound dataset (labelled target)
glua-no-local-mask              ``GLUATrainer_NoLocalMask{f}``              ablation: global feature alignment
glua-style-only                 ``GLUATrainer_StyleOnly{f}``                ablation: translation only
glua-feature-only               ``GLUATrainer_FeatureOnly{f}``              ablation: feature alignment only
glua-no-structure-shift         ``GLUATrainer_NoStructureShift{f}``         ablation: the published method alone
source-only-structure-shift     ``SourceOnlyTrainer_StructureShift{f}``     ablation: the shift alone
==============================  ==========================================  =====================================

Every row predicts the **adaptation** dataset's ``imagesTs`` and is evaluated against its ``labelsTs``, so all
rows share the same test images and reference files. The upper bound is the dataset named by the adaptation
dataset.json's ``glua.upper_bound_dataset`` (written by the converters' ``--upper-bound-id``); it is trained on
the adaptation dataset's own plans, moved with ``nnUNetv2_move_plans_between_datasets`` and preprocessed with
``nnUNetv2_preprocess``, so patch size, spacing and network are identical in every row.

Seeds. Each seed ``k`` trains in results roots of its own (passed to nnU-Net as ``nnUNet_results``, with
``GLUA_SEED=k`` for the project's trainers): ``<out>/seed_<k>/nnUNet_results`` for source-only and
``<out>/seed_<k>/nnUNet_results_from_source-only`` for the rows that start from it (so that both stages may use
the same trainer name); ``nnUNet_raw`` and ``nnUNet_preprocessed`` are shared. Runs of different seeds therefore
never share a file, and the GLUA style translator, which lives in ``nnUNet_results``, is trained once per seed:
by the first GLUA row of that seed that needs it (its training time counts toward that row), then reused by the
other GLUA rows of the seed. Reported values are, per row, the median over seeds of each seed's mean over the
test cases; "gap closed" = (row − source-only, continued) / (target-supervised − source-only, continued) is
computed on those medians.

Output folder (default ``$nnUNet_results/<adaptation dataset>/glua_benchmark_<configuration>_<schedule>``, the
schedule without its leading ``_`` and ``default`` for an empty one; ``_then_<fine-tune schedule>`` is appended when
the two schedules differ, ``_<plans>`` when the plans are not ``nnUNetPlans`` and ``_fold<f>`` when the fold is not
0)::

    benchmark.json  benchmark.md               rows × seeds, medians, gap closed, wall times, machine,
                                               project commit, SHA-256 of the plans and translators
    seed_<k>/nnUNet_results*/                  everything nnU-Net trained for seed k (one root per stage)
    seed_<k>/<row>/predictions/                nnUNetv2_predict output on the adaptation imagesTs
    seed_<k>/<row>/evaluation/                 evaluation.json/.csv/.md and row.json (timings, commands)

Resuming: a row and seed whose ``evaluation/evaluation.json`` exists is not run again; a fold whose
``checkpoint_final.pth`` exists is not retrained; an interrupted training continues from its latest
checkpoint (nnU-Net's ``--c``). Every file is written atomically and every folder built under a temporary
name, so an interruption never leaves a result that looks finished.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import io
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

import nnunet_glua
from nnunet_glua.evaluation.evaluate import (
    EvaluationError,
    EvaluationResult,
    evaluate_dataset,
    find_raw_dataset_folder,
    load_evaluation,
    write_evaluation,
)
from nnunet_glua.errors import PathError
from nnunet_glua.evaluation.metrics import SUMMARY_METRICS, ClassSummary, Statistic, Summary
from nnunet_glua.evaluation.report import comparison, comparison_markdown, gap_closed
from nnunet_glua.json_io import write_json
from nnunet_glua.io_utils import atomic_path, staged_directory
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import (PREPROCESSED, RESULTS, dataset_id_from_name, image_cases, label_files, load_plans,
                                   nnunet_folder)
from nnunet_glua.parallel import default_num_processes
from nnunet_glua.paths import EXT_TRAINER_ENV, ensure_trainer_folder_registered

__all__ = [
    "BenchmarkError",
    "Row",
    "ROWS",
    "LOWER_ROW",
    "ADAPTED_ROW",
    "UPPER_ROW",
    "Command",
    "CommandRunner",
    "subprocess_runner",
    "select_rows",
    "trainer_name",
    "median_summary",
    "machine_info",
    "project_commit",
    "sha256_prefix",
    "run_benchmark",
    "main",
]

FORMAT_VERSION = 1
SEED_ENV = "GLUA_SEED"  # read by the project's trainers (nnunet_glua.training.short_schedule)
METRICS: tuple[str, ...] = ("dice", "assd_mm")
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
# DESIGN.md: a "wide margin" is >= 0.15 class-mean Dice over source-only and >= 50 % of the gap closed
WIDE_MARGIN_DICE = 0.15
WIDE_MARGIN_GAP = 0.5
TRANSLATOR_CHECKPOINT_GLOB = "*/GLUATranslator__*/checkpoint_final.pth"
EVALUATION_FOLDER = "evaluation"
PREDICTION_FOLDER = "predictions"
ROW_RECORD = "row.json"
PROGRESS_RECORD = "timing.json"


class BenchmarkError(PathError):
    """A benchmark cannot run or continue. ``path`` is the file or folder at fault (``None`` if global)."""


# ------------------------------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Row:
    """One row of the benchmark table.

    ``key`` names it on the command line and is its folder name; ``label`` is its name in the tables;
    ``trainer`` is the trainer class without schedule suffix; ``upper_bound`` rows train on the upper-bound
    dataset instead of the adaptation dataset; ``ablation`` rows are left out by ``ablations=False``;
    ``starts_from`` is the key of the row whose final checkpoint (same seed and fold) initialises this one, which
    then trains the second-stage schedule (``None``: from scratch, first-stage schedule).
    """

    key: str
    label: str
    trainer: str
    description: str
    upper_bound: bool = False
    ablation: bool = False
    starts_from: str | None = None


START_ROW = "source-only"
LOWER_ROW = "source-only, continued"
ADAPTED_ROW = "GLUA"
UPPER_ROW = "target-supervised"
_START = "source-only"  # key of the first-stage row every other row starts from
# run order: source-only first (every other row starts from it), then the headline rows, so an interrupted
# benchmark has them before the ablations
ROWS: tuple[Row, ...] = (
    Row(_START, START_ROW, "SourceOnlyTrainer",
        "plain nnU-Net trained from scratch on the labelled source domain; every other row starts from it"),
    Row("source-only-continued", LOWER_ROW, "SourceOnlyTrainer",
        "source-only trained on for the second stage: as many steps as GLUA, without adaptation (lower bound)",
        starts_from=_START),
    Row("glua", ADAPTED_ROW, "GLUATrainer",
        "style translation + structure-wise intensity shift + locally masked feature alignment", starts_from=_START),
    Row("target-supervised", UPPER_ROW, "SourceOnlyTrainer",
        "source-only fine-tuned on labelled target scans (upper bound), same plans", upper_bound=True,
        starts_from=_START),
    Row("glua-no-local-mask", "GLUA: no local mask", "GLUATrainer_NoLocalMask",
        "feature alignment at every valid location (global feature alignment)", ablation=True, starts_from=_START),
    Row("glua-style-only", "GLUA: style only", "GLUATrainer_StyleOnly",
        "style translation without feature alignment", ablation=True, starts_from=_START),
    Row("glua-feature-only", "GLUA: feature only", "GLUATrainer_FeatureOnly",
        "locally masked feature alignment without style translation", ablation=True, starts_from=_START),
    Row("glua-no-structure-shift", "GLUA: no structure shift", "GLUATrainer_NoStructureShift",
        "the published method alone: translation + local feature alignment, without the structure-wise "
        "intensity shift", ablation=True, starts_from=_START),
    Row("source-only-structure-shift", "source-only + structure shift", "SourceOnlyTrainer_StructureShift",
        "plain nnU-Net with the structure-wise intensity shift, no adaptation", ablation=True, starts_from=_START),
)
_ROWS_BY_KEY = {row.key: row for row in ROWS}


def select_rows(rows: Sequence[str] | None = None, ablations: bool = True) -> list[Row]:
    """The rows to run, in table order.

    ``rows`` lists row keys (or labels; case-insensitive); ``None`` means the headline rows plus, with
    ``ablations``, the ablation rows. An explicit ``rows`` list wins over ``ablations``. A row that starts from
    another brings that row along (it must be trained first).
    """
    if rows is None:
        return [row for row in ROWS if ablations or not row.ablation]
    lookup = {row.key.lower(): row for row in ROWS} | {row.label.lower(): row for row in ROWS}
    chosen: set[str] = set()
    for name in rows:
        row = lookup.get(str(name).strip().lower())
        if row is None:
            raise BenchmarkError(None, f"unknown row {name!r}; choose from {', '.join(r.key for r in ROWS)}")
        chosen.add(row.key)
    if not chosen:
        raise BenchmarkError(None, "no rows selected")
    chosen |= {_ROWS_BY_KEY[key].starts_from for key in chosen} - {None}
    return [row for row in ROWS if row.key in chosen]


def normalise_schedule(schedule: str | None) -> str:
    """``"Short"``/``"_Short"`` -> ``"_Short"``; ``""``/``None``/``"default"`` -> ``""`` (nnU-Net's schedule)."""
    schedule = (schedule or "").strip()
    if schedule.lower() in ("", "default", "none"):
        return ""
    return schedule if schedule.startswith("_") else "_" + schedule


def trainer_name(row: Row, schedule: str) -> str:
    """Trainer class name of ``row`` under ``schedule`` (e.g. ``GLUATrainer_NoLocalMask_Short``)."""
    return row.trainer + normalise_schedule(schedule)


# -------------------------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Command:
    """One external command: ``argv`` run with the current environment plus ``env`` (the overrides)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def program(self) -> str:
        """The command's name without its folder, e.g. ``nnUNetv2_train``."""
        return Path(self.argv[0]).name

    def shell(self) -> str:
        """The command as one copy-pasteable POSIX shell line, environment overrides first."""
        env = [f"{k}={shlex.quote(str(v))}" for k, v in self.env.items()]
        return " ".join(env + [shlex.quote(a) for a in self.argv])

    def to_dict(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "env": dict(self.env)}


CommandRunner = Callable[[Command], None]


def subprocess_runner(command: Command) -> None:
    """Run ``command`` with its output going to this process's terminal; raise :class:`BenchmarkError` when it
    fails. The default runner of :func:`run_benchmark`."""
    env = {**os.environ, **{k: str(v) for k, v in command.env.items()}}
    try:
        completed = subprocess.run(list(command.argv), env=env, check=False)
    except OSError as e:
        raise BenchmarkError(command.argv[0], f"cannot be started ({e})") from None
    if completed.returncode != 0:
        raise BenchmarkError(
            None,
            f"command failed with exit status {completed.returncode}:\n  {command.shell()}\nFix the cause shown "
            "above and run the same glua_benchmark command again: finished rows are kept and an interrupted "
            "training continues from its latest checkpoint.",
        )


def _nnunet_program(name: str, required: bool) -> str:
    # the console scripts of this interpreter's environment first: works without an activated venv
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is not None:
        return found
    if required:
        raise BenchmarkError(None, f"nnU-Net command {name} not found next to {sys.executable} or on PATH; is "
                                   "nnunetv2 installed in this environment?")
    return name


# -------------------------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class _Dataset:
    folder: Path
    dataset_json: dict[str, Any]

    @property
    def name(self) -> str:
        return self.folder.name

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


def _read_dataset(folder: Path) -> _Dataset:
    return _Dataset(folder, read_json(folder / "dataset.json", BenchmarkError))


def _dataset_id(name: str) -> int:
    try:
        return dataset_id_from_name(name)
    except ValueError as e:
        raise BenchmarkError(None, str(e)) from None


def _test_cases(dataset: _Dataset) -> list[str]:
    """Case ids of the target test set; images and labels must match one to one."""
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


def _upper_bound_dataset(adaptation: _Dataset, test_cases: Sequence[str]) -> _Dataset:
    """The target-supervised dataset named by the adaptation dataset.json, checked for the same test set and
    label map and for training cases disjoint from the test cases."""
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
    upper = _read_dataset(folder)
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


# ----------------------------------------------------------------------------------------------------- plans
def _preprocessed_root() -> Path:
    return nnunet_folder(PREPROCESSED, BenchmarkError, advice="set nnU-Net's three folders first (nnUNet_raw, "
                                                              "nnUNet_preprocessed, nnUNet_results)")


# keys that nnUNetv2_move_plans_between_datasets rewrites: plans equal up to these describe the same model
_PER_DATASET_PLANS_KEYS = ("dataset_name", "plans_name", "image_reader_writer")


def _plans_core(plans: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plans.items() if k not in _PER_DATASET_PLANS_KEYS}


def _adaptation_plans(dataset: _Dataset, plans: str, configuration: str) -> tuple[Path, dict[str, Any]]:
    path = _preprocessed_root() / dataset.name / f"{plans}.json"
    if not path.is_file():
        raise BenchmarkError(path, f"plans not found. Plan and preprocess the source domain first: "
                                   f"nnUNetv2_plan_and_preprocess -d {_dataset_id(dataset.name)} -c {configuration} "
                                   "(or pass the right -p PLANS)")
    return path, load_plans(path, plans, configuration, BenchmarkError)


def sha256_prefix(path: "str | os.PathLike", length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of a file's bytes (read in chunks: checkpoints are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


# ------------------------------------------------------------------------------------------------ provenance
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Host name, CPU model and count, GPU (name as torch reports it, ``None`` without CUDA), versions of
    Python, torch (and its CUDA build), nnunetv2 and this package."""
    gpu, cuda = None, None
    try:
        import torch

        cuda = torch.version.cuda
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA set-up must not stop the report; the GPU is then unknown
        gpu = None
    return {
        "hostname": platform.node() or "unknown",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torch_cuda": cuda,
        "nnunetv2": _version("nnunetv2"),
        "nnunet_glua": nnunet_glua.__version__,
    }


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def project_commit() -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool or None}`` of the git checkout this package is imported
    from; ``"unknown"`` for an installed copy (or a checkout of another project that happens to contain it)."""
    package = Path(nnunet_glua.__file__).resolve().parent
    top = _git(["rev-parse", "--show-toplevel"], package.parent)
    if not top or (Path(top) / "nnunet_glua").resolve() != package:
        return {"commit": "unknown", "dirty": None}
    sha = _git(["rev-parse", "HEAD"], package.parent)
    status = _git(["status", "--porcelain", "--untracked-files=no"], package.parent)
    return {"commit": sha or "unknown", "dirty": None if status is None else bool(status)}


# ------------------------------------------------------------------------------------------------- summaries
def median_summary(summaries: Sequence[Summary]) -> Summary:
    """Per class and metric, the median over ``summaries`` (one per seed) of the per-seed mean over cases.

    Each :class:`Statistic` of the result has ``mean`` = that median (taken over the seeds where the value is
    defined; ``None`` if it is defined in none), ``std = None`` and ``n`` = the number of seeds that entered
    it. The class mean is the median of the defined per-seed class means, its ``n`` the fewest classes any of
    those covered (so a partial class mean stays marked as partial). Outcome counts are the per-class
    lower medians over seeds; their sum need not equal ``n_cases``. All summaries must come from one test set.
    """
    if not summaries:
        raise ValueError("no summaries to take the median of")
    first = summaries[0]
    for s in summaries[1:]:
        if list(s.classes) != list(first.classes) or s.n_cases != first.n_cases:
            raise ValueError("summaries of different test sets (classes or number of cases differ)")

    def median(values: Iterable[float | None]) -> Statistic:
        defined = [v for v in values if v is not None]
        return Statistic(float(np.median(defined)) if defined else None, None, len(defined))

    classes = {}
    for name, c in first.classes.items():
        per_seed = [s.classes[name] for s in summaries]
        stats = {m: median(cs.statistic(m).mean for cs in per_seed) for m in SUMMARY_METRICS}
        counts = {k: int(statistics.median_low(getattr(cs, k) for cs in per_seed))
                  for k in ("n_ok", "n_missed", "n_false_positive", "n_absent")}
        classes[name] = ClassSummary(label=c.label, **stats, **counts)
    class_mean = {}
    for m in SUMMARY_METRICS:
        defined = [s.class_mean[m] for s in summaries if m in s.class_mean and s.class_mean[m].mean is not None]
        stat = median(c.mean for c in defined)
        class_mean[m] = Statistic(stat.mean, None, min((c.n for c in defined), default=0))
    return Summary(n_cases=first.n_cases, classes=classes, class_mean=class_mean)


def _metric_values(summary: Summary) -> dict[str, Any]:
    return {
        m: {"classes": {c: s.statistic(m).mean for c, s in summary.classes.items()},
            "class_mean": summary.class_mean[m].mean}
        for m in METRICS
    }


# ------------------------------------------------------------------------------------------------- the runner
@dataclass(frozen=True)
class _Settings:
    adaptation: _Dataset
    upper: _Dataset | None
    test_cases: tuple[str, ...]
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
    dry_run: bool

    def seed_root(self, seed: int) -> Path:
        return self.out / f"seed_{seed}"

    def results_root(self, seed: int, row: Row) -> Path:
        name = "nnUNet_results" if row.starts_from is None else f"nnUNet_results_from_{row.starts_from}"
        return self.seed_root(seed) / name

    def trainer(self, row: Row) -> str:
        return trainer_name(row, self.schedule if row.starts_from is None else self.fine_tune_schedule)

    def row_folder(self, seed: int, row: Row) -> Path:
        return self.seed_root(seed) / row.key

    def trained_dataset(self, row: Row) -> _Dataset:
        if row.upper_bound:
            assert self.upper is not None
            return self.upper
        return self.adaptation

    def fold_folder(self, seed: int, row: Row) -> Path:
        return (self.results_root(seed, row) / self.trained_dataset(row).name
                / f"{self.trainer(row)}__{self.plans}__{self.configuration}" / f"fold_{self.fold}")

    def start_checkpoint(self, seed: int, row: Row) -> Path | None:
        """The checkpoint ``row`` starts from (``None``: it trains from scratch)."""
        if row.starts_from is None:
            return None
        return self.fold_folder(seed, _ROWS_BY_KEY[row.starts_from]) / "checkpoint_final.pth"

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
        }


def _default_out(adaptation: _Dataset, configuration: str, plans: str, fold: str, schedule: str,
                 fine_tune_schedule: str) -> Path:
    results = nnunet_folder(RESULTS, BenchmarkError, advice="set it or pass an output folder (--out)")
    name = f"glua_benchmark_{configuration}_{schedule.lstrip('_') or 'default'}"
    if fine_tune_schedule != schedule:
        name += f"_then_{fine_tune_schedule.lstrip('_') or 'default'}"
    if plans != "nnUNetPlans":
        name += f"_{plans}"
    if fold != "0":
        name += f"_fold{fold}"
    return results / adaptation.name / name


def _check_trainers(names: Iterable[str]) -> None:
    """Fail before hours of training when a trainer does not exist where nnU-Net will look for it."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name in sorted(set(names)):
        # nnU-Net's lookup narrates its search on stdout; only its verdict matters here
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                recursive_find_trainer_class_by_name(name)
            except (RuntimeError, AssertionError):
                raise BenchmarkError(None, f"trainer {name} not found by nnU-Net (its own trainers and "
                                           f"{EXT_TRAINER_ENV}={os.environ.get(EXT_TRAINER_ENV, '')}); check the "
                                           "schedule suffix (--schedule) or define the trainer") from None


def _read_record(path: Path) -> dict[str, Any]:
    return read_json(path, BenchmarkError, advice=f"remove {path.parent} to run that row again")


class _Benchmark:
    """Executes one benchmark: upper-bound preparation, then every (seed, row), then the report."""

    def __init__(self, settings: _Settings, runner: CommandRunner):
        self.s = settings
        self.runner = runner
        self.commands: list[Command] = []
        self.n_done = 0

    # -- commands -------------------------------------------------------------------------------------------
    def program(self, name: str) -> str:
        return _nnunet_program(name, required=not self.s.dry_run)

    def execute(self, command: Command) -> None:
        self.commands.append(command)
        print(("(dry run) " if self.s.dry_run else "$ ") + command.shell(), flush=True)
        if not self.s.dry_run:
            self.runner(command)

    def note(self, text: str) -> None:
        print(("(dry run) # " if self.s.dry_run else "# ") + text, flush=True)

    def row_env(self, seed: int, row: Row) -> dict[str, str]:
        return {
            "nnUNet_results": str(self.s.results_root(seed, row)),
            SEED_ENV: str(seed),
            EXT_TRAINER_ENV: os.environ[EXT_TRAINER_ENV],
        }

    # -- upper bound ----------------------------------------------------------------------------------------
    def prepare_upper_bound(self, source_plans: dict[str, Any]) -> None:
        """Give the upper-bound dataset the adaptation dataset's plans and preprocess it with them."""
        upper, s = self.s.upper, self.s
        assert upper is not None
        pre = _preprocessed_root() / upper.name
        upper_id, source_id = str(_dataset_id(upper.name)), str(_dataset_id(s.adaptation.name))
        if not (pre / "dataset_fingerprint.json").is_file():
            # nnU-Net's trainer copies the fingerprint into its output folder, so it must exist
            self.execute(Command((self.program("nnUNetv2_extract_fingerprint"), "-d", upper_id,
                                  "-np", str(s.num_processes))))
        # nnUNetv2_preprocess reads the dataset.json from nnUNet_preprocessed; only planning copies it there
        if s.dry_run:
            self.note(f"copy {upper.folder / 'dataset.json'} -> {pre / 'dataset.json'}")
        else:
            pre.mkdir(parents=True, exist_ok=True)
            with atomic_path(pre / "dataset.json") as tmp:
                shutil.copyfile(upper.folder / "dataset.json", tmp)
        plans_file = pre / f"{s.plans}.json"
        if plans_file.is_file():
            if _plans_core(read_json(plans_file, BenchmarkError)) != _plans_core(source_plans):
                raise BenchmarkError(
                    plans_file,
                    f"exists and differs from {s.adaptation.name}'s {s.plans}.json, so the upper bound would not "
                    f"share the adaptation dataset's plans. Remove it (and {pre / '<data identifier>'}) to let the "
                    f"benchmark move the plans with nnUNetv2_move_plans_between_datasets, or use other plans (-p).",
                )
            self.note(f"{plans_file.name} of {upper.name} already equals {s.adaptation.name}'s")
        else:
            self.execute(Command((self.program("nnUNetv2_move_plans_between_datasets"), "-s", source_id,
                                  "-t", upper_id, "-sp", s.plans, "-tp", s.plans)))
            if not s.dry_run and not plans_file.is_file():
                raise BenchmarkError(plans_file, "nnUNetv2_move_plans_between_datasets did not write the plans")
        data_identifier = source_plans["configurations"][s.configuration].get(
            "data_identifier", f"{s.plans}_{s.configuration}")
        if self._upper_preprocessed(pre / data_identifier, pre / "gt_segmentations"):
            self.note(f"{upper.name} is already preprocessed with {s.plans} {s.configuration}")
            return
        self.execute(Command((self.program("nnUNetv2_preprocess"), "-d", upper_id, "-c", s.configuration,
                              "-plans_name", s.plans, "-np", str(s.num_processes))))

    def _upper_preprocessed(self, data_folder: Path, gt_folder: Path) -> bool:
        # nnUNetv2_preprocess empties the data folder first and writes each case's .pkl last, then copies the
        # reference segmentations: a .pkl and a reference per training case means it finished
        upper = self.s.upper
        assert upper is not None
        cases = image_cases(upper.folder / "imagesTr", upper.file_ending)
        return bool(cases) and data_folder.is_dir() and gt_folder.is_dir() and all(
            (data_folder / f"{c}.pkl").is_file() and (gt_folder / f"{c}{upper.file_ending}").is_file()
            for c in cases)

    # -- rows -----------------------------------------------------------------------------------------------
    def check_existing_rows(self) -> None:
        """Refuse to mix results of other settings into this benchmark's folder (checked before any work)."""
        for seed in self.s.seeds:
            for row in self.s.rows:
                record = self.s.row_folder(seed, row) / EVALUATION_FOLDER / ROW_RECORD
                if record.is_file():
                    stored = _read_record(record).get("identity")
                    expected = self.s.identity(seed, row)
                    if stored != expected:
                        raise BenchmarkError(
                            record, f"was produced with other settings ({stored}) than this run ({expected}); "
                                    "use another output folder (--out) or remove that row's folder")

    def run_row(self, seed: int, row: Row) -> None:
        s = self.s
        self.n_done += 1
        trainer = s.trainer(row)
        head = f"[{self.n_done}/{len(s.seeds) * len(s.rows)}] seed {seed} · {row.label} ({trainer})"
        folder = s.row_folder(seed, row)
        evaluation = folder / EVALUATION_FOLDER
        if (evaluation / "evaluation.json").is_file():
            print(f"{head}: finished earlier, kept ({evaluation})", flush=True)
            return
        print(f"\n{head}", flush=True)
        env = self.row_env(seed, row)
        fold_folder = s.fold_folder(seed, row)
        progress_file = folder / PROGRESS_RECORD
        progress = _read_record(progress_file) if progress_file.is_file() else {}
        checkpoint = fold_folder / "checkpoint_final.pth"
        start_checkpoint = s.start_checkpoint(seed, row)
        dataset_id = str(_dataset_id(s.trained_dataset(row).name))
        commands: list[Command] = []

        # 1. training
        if checkpoint.is_file():
            self.note(f"trained earlier, not retrained: {checkpoint}")
        else:
            argv = [self.program("nnUNetv2_train"), dataset_id, s.configuration, s.fold, "-tr", trainer,
                    "-p", s.plans, "-device", s.device]
            if (fold_folder / "checkpoint_latest.pth").is_file():
                argv.append("--c")  # continue the interrupted training (its weights replace the start weights)
            elif start_checkpoint is not None:
                if not s.dry_run and not start_checkpoint.is_file():
                    raise BenchmarkError(start_checkpoint, f"is missing, but row {row.key!r} starts from it; run row "
                                                           f"{row.starts_from!r} of seed {seed} first")
                argv += ["-pretrained_weights", str(start_checkpoint)]
            commands.append(Command(tuple(argv), env))
            start = time.perf_counter()
            self.execute(commands[-1])
            if not s.dry_run:
                if not checkpoint.is_file():
                    raise BenchmarkError(checkpoint, "training finished but left no final checkpoint")
                progress["train_s"] = round(time.perf_counter() - start, 1)
                write_json(progress, progress_file)

        # 2. prediction of the adaptation dataset's test images, into a folder that appears only when complete
        predictions = folder / PREDICTION_FOLDER
        fresh = (predictions.is_dir() and checkpoint.is_file()
                 and predictions.stat().st_mtime >= checkpoint.stat().st_mtime)
        if fresh and "predict_s" in progress:
            self.note(f"predicted earlier: {predictions}")
        else:
            workers = "1" if s.device == "cpu" else "3"
            start = time.perf_counter()
            with (contextlib.nullcontext(predictions) if s.dry_run
                  else staged_directory(predictions, overwrite=True)) as target:
                commands.append(Command((
                    self.program("nnUNetv2_predict"), "-i", str(s.adaptation.images_ts), "-o", str(target),
                    "-d", dataset_id, "-c", s.configuration, "-tr", trainer, "-p", s.plans, "-f", s.fold,
                    "-device", s.device, "-npp", workers, "-nps", workers), env))
                self.execute(commands[-1])
            if not s.dry_run:
                progress["predict_s"] = round(time.perf_counter() - start, 1)
                write_json(progress, progress_file)
        if s.dry_run:
            self.note(f"evaluate {predictions} against {s.adaptation.labels_ts} -> {evaluation}")
            return

        # 3. evaluation against the adaptation dataset's labels, written with the row's record in one folder
        start = time.perf_counter()
        result = evaluate_dataset(s.adaptation.folder, predictions, num_processes=s.num_processes,
                                  run_name=row.label)
        self.check_cases(result, evaluation)
        evaluate_s = round(time.perf_counter() - start, 1)
        times = {"train_s": progress.get("train_s"), "predict_s": progress.get("predict_s"),
                 "evaluate_s": evaluate_s}
        total = None if times["train_s"] is None else round(sum(times.values()), 1)
        record = {
            "identity": s.identity(seed, row),
            "label": row.label,
            "description": row.description,
            "device": s.device,
            "results_root": str(s.results_root(seed, row)),
            "starts_from": None if start_checkpoint is None else {
                "row": row.starts_from, "checkpoint": str(start_checkpoint),
                "checkpoint_sha256": sha256_prefix(start_checkpoint)},
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_prefix(checkpoint),
            "prediction_folder": str(predictions),
            "wall_time_s": {**times, "total_s": total},
            "trained_by_this_benchmark": times["train_s"] is not None,
            "commands": [c.shell() for c in commands],
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        with staged_directory(evaluation, overwrite=True) as tmp:
            write_evaluation(result, tmp)
            write_json(record, tmp / ROW_RECORD)
        mean = result.summary.class_mean["dice"].mean
        print(f"{head}: class-mean Dice {'n/a' if mean is None else f'{mean:.3f}'}, "
              f"wall time {'n/a' if total is None else f'{total:.0f} s'}", flush=True)

    def check_cases(self, result: EvaluationResult, where: Path) -> None:
        """Every row must be scored on exactly the benchmark's test cases and reference folder."""
        cases = sorted(c.case for c in result.cases)
        if cases != list(self.s.test_cases):
            raise BenchmarkError(where, f"evaluated cases {cases} differ from the benchmark's test cases "
                                        f"{list(self.s.test_cases)}; remove this folder to evaluate it again")
        reference = result.metadata.get("reference_folder")
        if reference is not None and Path(reference).resolve() != self.s.adaptation.labels_ts.resolve():
            raise BenchmarkError(where, f"was evaluated against {reference}, not {self.s.adaptation.labels_ts}; "
                                        "remove this folder to evaluate it again")

    # -- report ---------------------------------------------------------------------------------------------
    def report(self, plans_file: Path) -> dict[str, Any]:
        s = self.s
        rows: dict[str, Any] = {}
        medians: dict[str, Summary] = {}
        for row in s.rows:
            per_seed: dict[str, Any] = {}
            summaries = []
            for seed in s.seeds:
                folder = s.row_folder(seed, row) / EVALUATION_FOLDER
                try:
                    result = load_evaluation(folder)
                except EvaluationError as e:
                    raise BenchmarkError(folder, f"cannot be read ({e.problem}); remove it to run it again") from None
                self.check_cases(result, folder)
                record = _read_record(folder / ROW_RECORD)
                summaries.append(result.summary)
                per_seed[str(seed)] = {
                    **_metric_values(result.summary),
                    "n_missed": sum(c.n_missed for c in result.summary.classes.values()),
                    "n_false_positive": sum(c.n_false_positive for c in result.summary.classes.values()),
                    "wall_time_s": record["wall_time_s"],
                    "checkpoint_sha256": record["checkpoint_sha256"],
                    "evaluation_folder": str(folder),
                }
            medians[row.label] = median_summary(summaries)
            totals = [v["wall_time_s"]["total_s"] for v in per_seed.values() if v["wall_time_s"]["total_s"] is not None]
            rows[row.label] = {
                "key": row.key,
                "trainer": s.trainer(row),
                "starts_from": row.starts_from,
                "trained_dataset": s.trained_dataset(row).name,
                "description": row.description,
                "seeds": per_seed,
                "median": _metric_values(medians[row.label]),
                "median_summary": medians[row.label].to_dict(),
                "wall_time_s": {"median_total_s": float(np.median(totals)) if totals else None,
                                "sum_total_s": round(sum(totals), 1) if totals else None,
                                "seeds_timed": len(totals)},
            }
        table = comparison(medians, lower=LOWER_ROW, upper=UPPER_ROW, metrics=METRICS)
        hashes: dict[str, Any] = {"plans": {"file": str(plans_file), "sha256": sha256_prefix(plans_file)}}
        if s.upper is not None and any(r.upper_bound for r in s.rows):
            upper_plans = _preprocessed_root() / s.upper.name / f"{s.plans}.json"
            hashes["upper_bound_plans"] = {"file": str(upper_plans),
                                           "sha256": sha256_prefix(upper_plans) if upper_plans.is_file() else None}
        hashes["translators"] = {
            str(seed): {str(p.relative_to(s.seed_root(seed))): sha256_prefix(p)
                        for p in sorted(s.seed_root(seed).glob("nnUNet_results*/" + TRANSLATOR_CHECKPOINT_GLOB))}
            for seed in s.seeds
        }
        return {
            "format_version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": {
                "dataset": s.adaptation.name,
                "upper_bound_dataset": s.upper.name if s.upper is not None else None,
                "configuration": s.configuration,
                "plans": s.plans,
                "fold": s.fold,
                "schedule": s.schedule,
                "fine_tune_schedule": s.fine_tune_schedule,
                "seeds": list(s.seeds),
                "rows": [r.key for r in s.rows],
                "device": s.device,
                "output_folder": str(s.out),
            },
            "test_set": {
                "images": str(s.adaptation.images_ts),
                "labels": str(s.adaptation.labels_ts),
                "cases": list(s.test_cases),
                "target_modality": s.adaptation.glua.get("target_modality"),
                "direction": s.adaptation.glua.get("direction"),
            },
            "machine": machine_info(),
            "project": project_commit(),
            "hashes": hashes,
            "notes": {
                "values": "per row: each seed's mean over the test cases; 'median' = median over seeds of those "
                          "values (Dice in [0, 1], ASSD in mm; null where undefined)",
                "gap_closed": f"(row - {LOWER_ROW}) / ({UPPER_ROW} - {LOWER_ROW}) on the medians",
                "comparison": "report.comparison of the per-row median summaries: a per-class 'n' counts the "
                              "seeds with a defined value, a class-mean 'n' the classes it covers",
                "seeds": "each seed trains every row, and the GLUA translator, in its own nnUNet_results",
                "wide_margin": f">= {WIDE_MARGIN_DICE} class-mean Dice over {LOWER_ROW} and >= "
                               f"{WIDE_MARGIN_GAP:.0%} of the gap closed, on the medians",
            },
            "rows": rows,
            "comparison": table,
            "headline": _headline(rows, table, s.seeds),
        }


def _headline(rows: Mapping[str, Any], table: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """Per adapted row: Dice gain over source-only, continued, and gap closed (class means, on the medians; also per
    seed) and whether that is a wide margin."""
    if LOWER_ROW not in rows or UPPER_ROW not in rows:
        return {}
    lower, upper = rows[LOWER_ROW], rows[UPPER_ROW]
    out = {}
    for label, row in rows.items():
        if label in (START_ROW, LOWER_ROW, UPPER_ROW):
            continue
        value, base = row["median"]["dice"]["class_mean"], lower["median"]["dice"]["class_mean"]
        gain = None if value is None or base is None else value - base
        gap = table["gap_closed"].get(label, {}).get("dice", {}).get("class_mean")
        out[label] = {
            "dice_gain": gain,
            "gap_closed_dice": gap,
            "gap_closed_dice_per_seed": {
                str(k): gap_closed(row["seeds"][str(k)]["dice"]["class_mean"],
                                   lower["seeds"][str(k)]["dice"]["class_mean"],
                                   upper["seeds"][str(k)]["dice"]["class_mean"])
                for k in seeds
            },
            "wide_margin": None if gain is None or gap is None else bool(gain >= WIDE_MARGIN_DICE
                                                                         and gap >= WIDE_MARGIN_GAP),
        }
    return out


# ----------------------------------------------------------------------------------------------- markdown
def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 3600:.2f} h" if value >= 3600 else f"{value / 60:.1f} min" if value >= 60 else f"{value:.0f} s"


def benchmark_markdown(report: Mapping[str, Any]) -> str:
    """benchmark.md: the comparison table of the medians (headline rows, then ablations, then gap closed),
    per-seed class-mean Dice, wall times, machine, commit and hashes. Ends with a newline."""
    st, test = report["settings"], report["test_set"]
    seeds = st["seeds"]
    rows = report["rows"]
    lines = [
        f"# Adaptation benchmark — {st['dataset']}",
        "",
        f"Configuration {st['configuration']}, plans {st['plans']}, fold {st['fold']}, schedule "
        f"{st['schedule'] or 'default (nnU-Net)'} for {START_ROW}, then "
        f"{st['fine_tune_schedule'] or 'default (nnU-Net)'} for every other row, started from the {START_ROW} "
        f"model; device {st['device']}, seeds {', '.join(map(str, seeds))}. "
        f"Every row is evaluated on the same {len(test['cases'])} target test cases ({test['labels']}). "
        "Values: median over seeds of each seed's mean over the test cases.",
        "",
        "## Results",
        "",
    ]
    medians = {label: Summary.from_dict(row["median_summary"]) for label, row in rows.items()}
    lines.append(comparison_markdown(medians, lower=LOWER_ROW, upper=UPPER_ROW, metrics=METRICS, title=None))
    headline = report.get("headline") or {}
    if headline:
        lines += ["### Headline", "", f"| Row | Dice gain over {LOWER_ROW} | Gap closed (Dice) | Per seed | "
                  "Wide margin |", "| :--- | ---: | ---: | ---: | :---: |"]
        for label, h in headline.items():
            per_seed = " / ".join("n/a" if v is None else f"{100 * v:.0f} %"
                                  for v in h["gap_closed_dice_per_seed"].values())
            gap = "n/a" if h["gap_closed_dice"] is None else f"{100 * h['gap_closed_dice']:.1f} %"
            wide = {True: "yes", False: "no", None: "n/a"}[h["wide_margin"]]
            lines.append(f"| {label} | {_fmt(h['dice_gain'])} | {gap} | {per_seed} | {wide} |")
        lines += ["", f"Wide margin: {report['notes']['wide_margin']}.", ""]
    lines += ["### Class-mean Dice per seed", "",
              "| Row | Trainer | " + " | ".join(f"seed {k}" for k in seeds) + " | median | missed per seed |",
              "| :--- | :--- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: |"]
    for label, row in rows.items():
        per_seed = [_fmt(row["seeds"][str(k)]["dice"]["class_mean"]) for k in seeds]
        missed = " / ".join(str(row["seeds"][str(k)]["n_missed"]) for k in seeds)
        lines.append(f"| {label} | {row['trainer']} | " + " | ".join(per_seed)
                     + f" | {_fmt(row['median']['dice']['class_mean'])} | {missed} |")
    lines += ["", "### Wall time (train + predict + evaluate)", "",
              "| Row | " + " | ".join(f"seed {k}" for k in seeds) + " | median | total |",
              "| :--- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: |"]
    for label, row in rows.items():
        per_seed = [_fmt_seconds(row["seeds"][str(k)]["wall_time_s"]["total_s"]) for k in seeds]
        lines.append(f"| {label} | " + " | ".join(per_seed) + f" | {_fmt_seconds(row['wall_time_s']['median_total_s'])}"
                     f" | {_fmt_seconds(row['wall_time_s']['sum_total_s'])} |")
    notes = []
    if any(v["wall_time_s"]["total_s"] is None for row in rows.values() for v in row["seeds"].values()):
        notes.append("n/a: the model was trained before this benchmark recorded its training time.")
    if any(row["trainer"].startswith("GLUATrainer") for row in rows.values()):
        notes.append("Each seed trains the GLUA style translator once, in the first GLUA row of that seed that uses "
                     "it (counted in that row's time); the other GLUA rows of the seed reuse it.")
    lines += ["", " ".join(notes), ""] if notes else [""]
    m, p, h = report["machine"], report["project"], report["hashes"]
    dirty = " (with uncommitted changes)" if p.get("dirty") else ""
    lines += [
        "### Provenance",
        "",
        f"- Machine: {m['hostname']}, {m['cpu']} ({m['cpu_count']} CPUs), GPU {m['gpu'] or 'none'}; torch "
        f"{m['torch']}, nnunetv2 {m['nnunetv2']}, nnunet_glua {m['nnunet_glua']}, Python {m['python']}",
        f"- Project commit: {p['commit']}{dirty}",
        f"- Plans: {h['plans']['file']} (SHA-256 {h['plans']['sha256']})",
    ]
    if "upper_bound_plans" in h:
        lines.append(f"- Upper-bound plans: {h['upper_bound_plans']['file']} "
                     f"(SHA-256 {h['upper_bound_plans']['sha256'] or 'n/a: file removed'})")
    if any(row["trainer"].startswith("GLUATrainer") for row in rows.values()):
        for seed, found in h["translators"].items():
            text = ", ".join(f"{path} ({digest})" for path, digest in found.items()) or "none"
            lines.append(f"- Translator, seed {seed}: {text}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- entry points
def run_benchmark(
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
    runner: CommandRunner | None = None,
) -> dict[str, Any]:
    """Train, predict and evaluate every row for every seed, then write benchmark.json and benchmark.md.

    ``dataset``: id, ``DatasetXXX_Name`` or raw folder of the *adaptation* dataset (planned and preprocessed
    with ``plans``). ``schedule``: trainer-name suffix of the source-only row (``""``: nnU-Net's own,
    ``"_Short"``); ``fine_tune_schedule``: that of the rows that start from it (``None``: the same).
    ``rows``: row keys (see :data:`ROWS`; default: all, without ablations if ``ablations`` is false).
    ``num_processes``: worker processes of evaluation and of nnU-Net's preprocessing (default
    ``$nnUNet_def_n_proc``). ``runner`` executes each external command (default :func:`subprocess_runner`).

    Returns the benchmark.json content; with ``dry_run``, nothing is run or written and the result is
    ``{"dry_run": True, "out": str, "commands": [{"argv", "env"}, ...]}`` (the commands are also printed).
    Raises :class:`BenchmarkError` for unusable input or a failed command.
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
    try:
        adaptation = _read_dataset(find_raw_dataset_folder(dataset))
    except EvaluationError as e:
        raise BenchmarkError(e.path, e.problem) from None
    role = adaptation.glua.get("role")
    if role not in (None, "adaptation"):
        raise BenchmarkError(adaptation.folder / "dataset.json",
                             f"is a {role!r} dataset; pass the adaptation dataset "
                             f"({adaptation.glua.get('adaptation_dataset') or 'the one converted with it'})")
    test_cases = tuple(_test_cases(adaptation))
    upper = _upper_bound_dataset(adaptation, test_cases) if any(r.upper_bound for r in selected) else None
    plans_file, plans_content = _adaptation_plans(adaptation, plans, configuration)
    out_folder = Path(out) if out is not None else _default_out(adaptation, configuration, plans, fold, schedule,
                                                                fine_tune_schedule)
    settings = _Settings(
        adaptation=adaptation, upper=upper, test_cases=test_cases, configuration=configuration, plans=plans,
        fold=fold, schedule=schedule, fine_tune_schedule=fine_tune_schedule, seeds=seeds, rows=selected,
        device=device, out=out_folder.resolve(),
        num_processes=num_processes if num_processes is not None else default_num_processes(cap=8), dry_run=dry_run,
    )
    ensure_trainer_folder_registered()
    _check_trainers(settings.trainer(r) for r in selected)
    bench = _Benchmark(settings, runner or subprocess_runner)
    bench.check_existing_rows()
    print(f"Benchmark of {adaptation.name}: rows {', '.join(r.label for r in selected)}; seeds "
          f"{', '.join(map(str, seeds))}; {len(test_cases)} target test cases; output {settings.out}", flush=True)
    upper_rows = [r for r in selected if r.upper_bound]
    if upper is not None and any(not (settings.row_folder(k, r) / EVALUATION_FOLDER / "evaluation.json").is_file()
                                 for k in seeds for r in upper_rows):
        bench.prepare_upper_bound(plans_content)
    for seed in seeds:
        for row in selected:
            bench.run_row(seed, row)
    if dry_run:
        return {"dry_run": True, "out": str(settings.out), "commands": [c.to_dict() for c in bench.commands]}
    report = bench.report(plans_file)
    markdown = benchmark_markdown(report)
    write_json(report, settings.out / "benchmark.json")
    with atomic_path(settings.out / "benchmark.md") as tmp:
        tmp.write_text(markdown)
    print("\n" + markdown)
    print(f"Wrote {settings.out / 'benchmark.json'} and {settings.out / 'benchmark.md'}")
    return report


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glua_benchmark",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Headline table of an adaptation experiment: source-only nnU-Net, GLUA (and "
                    "ablations) and target-supervised nnU-Net, all with the same plans: source-only is trained "
                    "from scratch with --schedule, every other row starts from the source-only model and trains "
                    "--fine-tune-schedule; all are "
                    "predicted on the adaptation dataset's target test images (imagesTs) and evaluated against its "
                    "labelsTs, repeated over seeds. Writes benchmark.json and benchmark.md (medians over seeds, "
                    "gap closed, wall times, machine, commit, plans and translator hashes) and prints the table. "
                    "Resumable: run the same command again after an interruption.", width=100),
        epilog="rows (--rows):\n" + "\n".join(
            f"  {r.key:<28} {r.trainer}<{'schedule' if r.starts_from is None else 'fine-tune schedule'}>: "
            f"{r.description}" for r in ROWS)
               + "\n\nEach seed k trains in its own results folders <out>/seed_<k>/nnUNet_results (source-only) and "
                 "<out>/seed_<k>/nnUNet_results_from_source-only\n(every other row) with GLUA_SEED=k, so the style "
                 "translator is trained once per seed. nnUNet_raw and nnUNet_preprocessed are shared. The "
                 "dataset must be planned and\npreprocessed (nnUNetv2_plan_and_preprocess -d ID -c CONFIG); the upper "
                 "bound gets the same plans automatically.\nOn CPU set nnUNet_def_n_proc=2 and nnUNet_n_proc_DA=0 "
                 "on small machines (not for nnUNetv2_plan_and_preprocess:\nnnU-Net's planner fails with "
                 "nnUNet_n_proc_DA=0).\n\nexamples:\n"
                 "  glua_benchmark -d 701 --schedule _Short --seeds 0 1 2 -device cpu"
                 "\n  glua_benchmark -d 903 -c 2d --schedule _Demo --fine-tune-schedule _DemoFineTune -device cpu"
                 "   (the main demo's rows)",
    )
    parser.add_argument("-d", "--dataset", required=True,
                        help="adaptation dataset: id (701), name (Dataset701_MMWHS_MR2CT) or raw folder")
    parser.add_argument("-c", "--configuration", default="3d_fullres",
                        help="nnU-Net configuration (default 3d_fullres)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-f", "--fold", default="0", help="fold to train and predict with (default 0; or 'all')")
    parser.add_argument("--schedule", default="",
                        help="trainer-name suffix of the source-only row, e.g. _Short (default: none, nnU-Net's "
                             "schedule)")
    parser.add_argument("--fine-tune-schedule", default=None,
                        help="trainer-name suffix of the rows that start from the source-only model (default: the "
                             "same as --schedule)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="seeds; each trains every row (default 0 1 2)")
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="rows to run (default: all; see below)")
    parser.add_argument("--no-ablations", action="store_true",
                        help="leave out the ablation rows (when --rows is not given)")
    parser.add_argument("-device", "--device", default="cuda", choices=("cuda", "cpu", "mps"),
                        help="device for training and prediction (default cuda)")
    parser.add_argument("--out", default=None,
                        help="output folder (default "
                             "$nnUNet_results/<dataset>/glua_benchmark_<configuration>_<schedule>, the schedule "
                             "without its leading _ and 'default' for none; _then_<fine-tune schedule> is added "
                             "when the schedules differ, _<plans> when not nnUNetPlans, _fold<f> when the fold "
                             "is not 0)")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="processes for evaluation and nnU-Net preprocessing (default $nnUNet_def_n_proc)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands that would run; run nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``glua_benchmark``; returns the exit status (0 on success, 1 on an error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.num_processes is not None and args.num_processes < 1:
        parser.error("-np must be >= 1")
    try:
        run_benchmark(
            args.dataset, configuration=args.configuration, plans=args.plans, fold=args.fold,
            schedule=args.schedule, fine_tune_schedule=args.fine_tune_schedule, seeds=args.seeds, rows=args.rows,
            device=args.device, out=args.out,
            ablations=not args.no_ablations, dry_run=args.dry_run, num_processes=args.num_processes,
        )
    except (BenchmarkError, EvaluationError) as e:
        print(f"glua_benchmark: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
