"""Evaluate predicted segmentations of the target test set against its labels: Dice and ASSD per class.

Predictions are the files ``{case}{file_ending}`` that ``nnUNetv2_predict`` writes, in the geometry of the
images they were predicted from (``imagesTs``); references are ``{case}{file_ending}`` in the target test
label folder (``labelsTs`` beside ``imagesTs``, named by dataset.json's ``"glua"`` block). Every reference
case must have a prediction (unless a subset is allowed explicitly), both must share size, spacing, origin
and direction, and both may hold only label values of the dataset's label map.

Arrays are handled in SimpleITK's numpy order, (z, y, x), with spacing in mm in the same order; see
:mod:`nnunet_glua.evaluation.metrics` for the metric definitions and the empty-structure conventions.

This module reads dataset.json itself and imports nothing from the training side of the package: the
target test labels are read here and nowhere else.

Command line::

    glua_evaluate -d 701 -pred pred                       # writes pred/evaluation.{json,csv,md}
    glua_evaluate -d 701 -pred pred -o results/glua --name GLUA -np 4
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

import nnunet_glua
from nnunet_glua.errors import PathError
from nnunet_glua.evaluation.metrics import ClassMetrics, Summary, compute_case_metrics, summarize
from nnunet_glua.evaluation.label_maps import as_integer_labels
from nnunet_glua.evaluation.report import evaluation_markdown
from nnunet_glua.json_io import write_json
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import RAW, dataset_folders_with_id, label_files
from nnunet_glua.parallel import default_num_processes, run_jobs
from nnunet_glua.volume_io import read_volume

__all__ = [
    "EvaluationError",
    "CaseResult",
    "EvaluationResult",
    "SPACING_CONVENTION",
    "DEFAULT_TOLERANCE",
    "evaluate_case",
    "evaluate_folder",
    "evaluate_dataset",
    "find_raw_dataset_folder",
    "load_evaluation",
    "write_evaluation",
    "main",
]

SPACING_CONVENTION = (
    "Arrays in SimpleITK numpy order (z, y, x); 'shape' and 'spacing' (mm) are given in that order. "
    "assd_mm uses the true voxel spacing, assd_voxel unit spacing (not comparable across spacings)."
)
CONVENTIONS = (
    "Dice = 2|A&B|/(|A|+|B|). ASSD = mean of the two directed average surface distances between boundary "
    "voxels (object minus its connectivity-1 erosion). Prediction empty, reference present: Dice 0, ASSD "
    "missing ('missed'). Reference empty, prediction present: Dice 0, ASSD missing ('false_positive'). "
    "Both empty: case excluded for that class ('absent'). Summaries: mean and population std over the cases "
    "where a value is defined; class mean = mean over classes of the per-class means."
)
# absolute tolerance for spacing and origin (mm) and for direction cosines: NIfTI stores these as float32,
# so files written from the same image may differ by rounding, never by more than this
DEFAULT_TOLERANCE = 1e-3
OUTPUT_FILES = {"json": "evaluation.json", "csv": "evaluation.csv", "markdown": "evaluation.md"}
_CSV_COLUMNS = (
    "case", "class", "label", "outcome", "dice", "assd_mm", "assd_voxel",
    "n_reference", "n_prediction", "n_overlap",
)


class EvaluationError(PathError):
    """Bad evaluation input. ``path`` is the file or folder at fault (``None`` for global problems)."""


@dataclass(frozen=True)
class CaseResult:
    """Metrics of one test case. ``shape`` and ``spacing`` (mm) are in (z, y, x) order."""

    case: str
    reference_file: str
    prediction_file: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    metrics: dict[str, ClassMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "reference_file": self.reference_file,
            "prediction_file": self.prediction_file,
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CaseResult":
        return cls(
            case=str(d["case"]),
            reference_file=str(d["reference_file"]),
            prediction_file=str(d["prediction_file"]),
            shape=tuple(int(s) for s in d["shape"]),
            spacing=tuple(float(s) for s in d["spacing"]),
            metrics={name: ClassMetrics.from_dict(m) for name, m in d["metrics"].items()},
        )


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one evaluation produced: foreground label map, per-case metrics, summary, metadata."""

    labels: dict[str, int]
    cases: list[CaseResult]
    summary: Summary
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no NaN anywhere: undefined values are ``None``)."""
        return {
            "metadata": dict(self.metadata),
            "labels": dict(self.labels),
            "summary": self.summary.to_dict(),
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvaluationResult":
        return cls(
            labels={str(k): int(v) for k, v in d["labels"].items()},
            cases=[CaseResult.from_dict(c) for c in d["cases"]],
            summary=Summary.from_dict(d["summary"]),
            metadata=dict(d.get("metadata", {})),
        )

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per case × class (columns of evaluation.csv); undefined values are empty strings."""
        rows = []
        for case in self.cases:
            for name, m in case.metrics.items():
                row = {"case": case.case, "class": name, "label": self.labels[name], **m.to_dict()}
                rows.append({k: ("" if row[k] is None else row[k]) for k in _CSV_COLUMNS})
        return rows

    def markdown(self) -> str:
        """Per-class Markdown table of this evaluation (what evaluation.md holds)."""
        title = self.metadata.get("run_name") or "Evaluation"
        dataset = self.metadata.get("dataset")
        if dataset:
            title = f"{title} — {dataset}"
        return evaluation_markdown(self.summary, title=title)


# ----------------------------------------------------------------------------------------------- label maps
def _foreground_labels(labels: Mapping[str, Any], source: "str | os.PathLike | None" = None) -> dict[str, int]:
    """Validate an nnU-Net label map (name -> int, background 0) and return its foreground classes."""
    foreground: dict[str, int] = {}
    seen: dict[int, str] = {}
    for name, value in labels.items():
        if name == "ignore":
            raise EvaluationError(source, "label maps with an 'ignore' label are not supported by this evaluation")
        if isinstance(value, (list, tuple)):
            raise EvaluationError(
                source, f"label {name!r} is a region {list(value)}; region-based label maps are not supported"
            )
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
            raise EvaluationError(source, f"label {name!r} has value {value!r}; values must be integers >= 0")
        if int(value) in seen:
            raise EvaluationError(source, f"labels {seen[int(value)]!r} and {name!r} share the value {int(value)}")
        seen[int(value)] = name
        if int(value) != 0:
            foreground[str(name)] = int(value)
    if not foreground:
        raise EvaluationError(source, "the label map has no foreground class (only background 0)")
    return dict(sorted(foreground.items(), key=lambda kv: kv[1]))


# ------------------------------------------------------------------------------------------------ one case
def _read_label_image(path: Path, role: str) -> tuple[sitk.Image, np.ndarray]:
    """The label volume at ``path`` and its integer array; :class:`EvaluationError` naming the file if it is
    missing, truncated, unreadable, not a 3D scalar volume or not a label map."""
    image = read_volume(path, role, EvaluationError)
    return image, as_integer_labels(sitk.GetArrayFromImage(image), path, role, EvaluationError)


def _geometry_problem(pred: sitk.Image, ref: sitk.Image, tolerance: float) -> str | None:
    if pred.GetDimension() != ref.GetDimension():
        return f"is {pred.GetDimension()}D but the reference is {ref.GetDimension()}D"
    checks = (
        ("size (x, y, z)", pred.GetSize(), ref.GetSize(), 0.0),
        ("spacing (x, y, z) in mm", pred.GetSpacing(), ref.GetSpacing(), tolerance),
        ("origin (x, y, z) in mm", pred.GetOrigin(), ref.GetOrigin(), tolerance),
        ("direction", pred.GetDirection(), ref.GetDirection(), tolerance),
    )
    for what, p, r, tol in checks:
        if not np.allclose(np.asarray(p, float), np.asarray(r, float), rtol=0.0, atol=tol):
            return (f"has {what} {tuple(round(v, 6) for v in p)} but the reference has "
                    f"{tuple(round(v, 6) for v in r)}")
    return None


def _label_values(array: np.ndarray) -> np.ndarray:
    if array.size and array.min() >= 0 and array.max() < 65536:
        # far faster than np.unique (a sort) on full-size volumes
        counts = np.bincount(array.ravel().astype(np.intp, copy=False))
        return np.flatnonzero(counts)
    return np.unique(array)


def evaluate_case(
    prediction_file: "str | os.PathLike",
    reference_file: "str | os.PathLike",
    labels: Mapping[str, int],
    tolerance: float = DEFAULT_TOLERANCE,
    case: str | None = None,
) -> CaseResult:
    """Metrics of one case: prediction and reference label files of identical geometry.

    ``labels`` is the label map (name -> value; background 0 is not evaluated). ``tolerance`` is the
    absolute tolerance for spacing and origin (mm) and direction cosines. Raises :class:`EvaluationError`
    naming the file when a file cannot be read, the geometries differ or a file holds a value outside
    the label map.
    """
    prediction_file, reference_file = Path(prediction_file), Path(reference_file)
    foreground = _foreground_labels(labels)
    allowed = set(foreground.values()) | {0}
    ref_image, ref = _read_label_image(reference_file, "reference")
    pred_image, pred = _read_label_image(prediction_file, "prediction")
    problem = _geometry_problem(pred_image, ref_image, tolerance)
    if problem is not None:
        raise EvaluationError(
            prediction_file,
            f"the prediction {problem} ({reference_file}). Predictions must be in the geometry of the test "
            "images they were predicted from; predict on imagesTs of this dataset, or map the predictions back "
            "to the original scan geometry before evaluating.",
        )
    for path, array, role, hint in (
        (reference_file, ref, "reference", "the label folder does not belong to this dataset's label map"),
        (prediction_file, pred, "prediction", "was it predicted by a model of another dataset?"),
    ):
        unexpected = sorted(set(_label_values(array).tolist()) - allowed)
        if unexpected:
            raise EvaluationError(
                path, f"the {role} holds label values {unexpected} that are not in the label map "
                      f"{dict(sorted(foreground.items(), key=lambda kv: kv[1]))} (background 0); {hint}",
            )
    spacing = tuple(float(s) for s in ref_image.GetSpacing()[::-1])
    metrics = compute_case_metrics(pred, ref, foreground, spacing)
    return CaseResult(
        case=case if case is not None else prediction_file.name,
        reference_file=str(reference_file.resolve()),
        prediction_file=str(prediction_file.resolve()),
        shape=tuple(int(s) for s in ref.shape),
        spacing=spacing,
        metrics=metrics,
    )


def _evaluate_job(job: tuple[str, str, str, dict[str, int], float]) -> CaseResult:
    case, prediction_file, reference_file, labels, tolerance = job
    return evaluate_case(prediction_file, reference_file, labels, tolerance=tolerance, case=case)


# ------------------------------------------------------------------------------------------------- folders
def evaluate_folder(
    pred_folder: "str | os.PathLike",
    ref_folder: "str | os.PathLike",
    labels: Mapping[str, int],
    file_ending: str = ".nii.gz",
    num_processes: int | None = None,
    allow_subset: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    metadata: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate every reference case of ``ref_folder`` against ``{case}{file_ending}`` in ``pred_folder``.

    ``labels`` is the label map (name -> value, background 0). A reference case without a prediction is an
    error listing all such cases, unless ``allow_subset`` is set: then only the predicted cases are evaluated
    and the missing ones are listed in the metadata. Predictions without a reference are ignored and listed
    in the metadata. ``num_processes`` defaults to ``nnUNet_def_n_proc`` (else up to 8); cases are evaluated
    in a process pool with a progress bar. ``metadata`` entries are added to the result's metadata.
    """
    pred_folder, ref_folder = Path(pred_folder), Path(ref_folder)
    foreground = _foreground_labels(labels)
    for folder, role in ((pred_folder, "prediction"), (ref_folder, "reference")):
        if not folder.is_dir():
            raise EvaluationError(folder, f"the {role} folder does not exist")
    references = label_files(ref_folder, file_ending)
    if not references:
        raise EvaluationError(ref_folder, f"the reference folder holds no '*{file_ending}' files")
    predictions = label_files(pred_folder, file_ending)
    missing = [c for c in references if c not in predictions]
    unmatched = [c for c in predictions if c not in references]
    if missing and not allow_subset:
        raise EvaluationError(
            pred_folder,
            f"no prediction for {len(missing)} of {len(references)} reference cases: "
            + ", ".join(f"{c}{file_ending}" for c in missing)
            + f" (references in {ref_folder}). Predict all test images, or allow a subset "
              "(--allow_subset) to evaluate only the predicted cases.",
        )
    cases = [c for c in references if c in predictions]
    if not cases:
        raise EvaluationError(pred_folder, f"none of the {len(references)} reference cases of {ref_folder} has a "
                                           f"prediction '{{case}}{file_ending}' here")
    jobs = [(c, str(predictions[c]), str(references[c]), foreground, float(tolerance)) for c in cases]
    n_proc = num_processes if num_processes is not None else default_num_processes(cap=8)
    results = run_jobs(_evaluate_job, jobs, n_proc, desc="Evaluating", unit="case")
    summary = summarize([r.metrics for r in results], foreground)
    meta: dict[str, Any] = {
        "dataset": None,
        "run_name": None,
        "prediction_folder": str(pred_folder.resolve()),
        "reference_folder": str(ref_folder.resolve()),
        "file_ending": file_ending,
        "n_cases": len(results),
        "missing_predictions": missing,
        "unmatched_predictions": unmatched,
        "spacing_convention": SPACING_CONVENTION,
        "conventions": CONVENTIONS,
        "geometry_tolerance": float(tolerance),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nnunet_glua_version": nnunet_glua.__version__,
    }
    meta.update(metadata or {})
    return EvaluationResult(labels=foreground, cases=results, summary=summary, metadata=meta)


# ------------------------------------------------------------------------------------------------ datasets
def find_raw_dataset_folder(dataset: "int | str | os.PathLike") -> Path:
    """Folder of a raw dataset: an id (``701``/``"701"``), a name (``"Dataset701_MMWHS_MR2CT"``) or a folder path.

    Ids and names are looked up in ``$nnUNet_raw`` (read when called).
    """
    if not isinstance(dataset, int) and Path(dataset).is_dir() and (Path(dataset) / "dataset.json").is_file():
        return Path(dataset)
    raw = os.environ.get(RAW)
    if not raw or not Path(raw).is_dir():
        raise EvaluationError(None, f"nnUNet_raw is not set to an existing folder (it is {raw!r}); set it, or "
                                    "pass the reference folder and label map explicitly")
    raw_path = Path(raw)
    name = str(dataset)
    if name.startswith("Dataset"):
        folder = raw_path / name
        if not folder.is_dir():
            raise EvaluationError(folder, "the dataset folder does not exist")
        return folder
    try:
        dataset_id = int(name)
    except ValueError:
        raise EvaluationError(None, f"dataset {name!r} is neither an id, a 'DatasetXXX_Name' nor a dataset "
                                    "folder") from None
    candidates = dataset_folders_with_id(raw_path, dataset_id)
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise EvaluationError(raw_path, f"expected exactly one folder Dataset{dataset_id:03d}_* for dataset "
                                        f"{dataset_id}, found {found}")
    return candidates[0]


def evaluate_dataset(
    dataset: "int | str | os.PathLike",
    pred_folder: "str | os.PathLike",
    ref_folder: "str | os.PathLike | None" = None,
    num_processes: int | None = None,
    allow_subset: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    run_name: str | None = None,
) -> EvaluationResult:
    """Evaluate predictions of a raw dataset's target test set.

    Label map and file ending come from the dataset's dataset.json; the reference folder defaults to the
    ``"glua"`` block's ``"target_test_labels_folder"`` (``labelsTs``) inside the dataset folder.
    """
    folder = find_raw_dataset_folder(dataset)
    dataset_json_file = folder / "dataset.json"
    dataset_json = read_json(dataset_json_file, EvaluationError)
    if "labels" not in dataset_json:
        raise EvaluationError(dataset_json_file, "has no 'labels' entry")
    labels = _foreground_labels(dataset_json["labels"], dataset_json_file)
    glua = dataset_json.get("glua", {})
    if ref_folder is None:
        ref_folder = folder / glua.get("target_test_labels_folder", "labelsTs")
        if not Path(ref_folder).is_dir():
            raise EvaluationError(ref_folder, "the target test label folder does not exist; this dataset has no "
                                              "target test labels (pass -ref to name a label folder)")
    metadata = {
        "dataset": folder.name,
        "run_name": run_name,
        "target_modality": glua.get("target_modality"),
        "direction": glua.get("direction"),
    }
    return evaluate_folder(
        pred_folder, ref_folder, labels,
        file_ending=dataset_json.get("file_ending", ".nii.gz"),
        num_processes=num_processes, allow_subset=allow_subset, tolerance=tolerance, metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------------- I/O
def load_evaluation(path: "str | os.PathLike") -> EvaluationResult:
    """Read an evaluation.json (or the folder that holds one) back into an :class:`EvaluationResult`."""
    path = Path(path)
    if path.is_dir():
        path = path / OUTPUT_FILES["json"]
    try:
        with open(path) as f:
            return EvaluationResult.from_dict(json.load(f))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise EvaluationError(path, f"is not a readable evaluation result ({type(e).__name__}: {e})") from None


def write_evaluation(result: EvaluationResult, output_folder: "str | os.PathLike") -> dict[str, Path]:
    """Write evaluation.json, evaluation.csv and evaluation.md into ``output_folder``, each atomically.

    Returns the written paths keyed ``"json"``, ``"csv"``, ``"markdown"``.
    """
    out = Path(output_folder)
    paths = {key: out / name for key, name in OUTPUT_FILES.items()}
    payload = result.to_dict()
    # a NaN would make the file unreadable for strict JSON parsers; the metrics never produce one
    json.dumps(payload, allow_nan=False)
    write_json(payload, paths["json"])
    with atomic_path(paths["csv"]) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(_CSV_COLUMNS))
            writer.writeheader()
            writer.writerows(result.csv_rows())
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(result.markdown())
    return paths


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glua_evaluate",
        description="Evaluate predictions of a dataset's target test images against its target test labels: "
                    "Dice and ASSD (mm and voxels) per class, mean ± std over cases, and the class mean. Writes "
                    "evaluation.json (per case, per class, summary, metadata), evaluation.csv (one row per "
                    "case and class) and evaluation.md (summary table, also printed).",
        epilog=CONVENTIONS,
    )
    parser.add_argument("-d", "--dataset", required=True,
                        help="dataset id (701), name (Dataset701_MMWHS_MR2CT) or raw dataset folder; label map, file "
                             "ending and the target test label folder come from its dataset.json")
    parser.add_argument("-pred", "--pred", required=True, help="folder with the predictions ({case}.nii.gz, "
                                                                 "as written by nnUNetv2_predict)")
    parser.add_argument("-ref", "--ref", default=None,
                        help="reference label folder (default: the dataset's target test labels, labelsTs)")
    parser.add_argument("-o", "--output", default=None,
                        help="folder for evaluation.json/.csv/.md (default: the prediction folder)")
    parser.add_argument("-np", "--num_processes", type=int, default=None,
                        help="worker processes (default: $nnUNet_def_n_proc, else up to 8)")
    parser.add_argument("--name", default=None, help="run name recorded in the outputs, e.g. GLUA or source-only")
    parser.add_argument("--allow_subset", action="store_true",
                        help="evaluate only the reference cases that have a prediction instead of failing")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="absolute tolerance for spacing/origin (mm) and direction when comparing prediction "
                             f"and reference geometry (default {DEFAULT_TOLERANCE})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``glua_evaluate``; returns the exit status (0 on success, 1 on bad input)."""
    args = _build_parser().parse_args(argv)
    if args.num_processes is not None and args.num_processes < 1:
        _build_parser().error("-np must be >= 1")
    try:
        result = evaluate_dataset(
            args.dataset, args.pred, ref_folder=args.ref, num_processes=args.num_processes,
            allow_subset=args.allow_subset, tolerance=args.tolerance, run_name=args.name,
        )
        paths = write_evaluation(result, args.output if args.output is not None else args.pred)
    except EvaluationError as e:
        print(f"glua_evaluate: error: {e}", file=sys.stderr)
        return 1
    print(result.markdown())
    print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
