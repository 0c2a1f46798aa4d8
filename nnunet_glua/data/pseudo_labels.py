"""Pseudo-label sets: the fold ensemble's filtered predictions of the unlabelled target training images.

``glua_pseudo_label -d D -c C -tr TRAINER -f 0 1 2 3 4 [-o NAME]`` predicts every image of the dataset's unlabelled
target folder (``imagesTargetTr``; never ``imagesTs``) with each fold model through nnU-Net's predictor, with class
probabilities, filters the ensemble (:mod:`nnunet_glua.data.pseudo_label_filter`) and writes::

    $nnUNet_raw/<dataset>/pseudolabels/<NAME>/
        labels/<case>.nii.gz       pseudo-label in the image's geometry; untrusted voxels = the ignore label
        pseudo_label_set.json      model, folds, filter, ignore label, labels, source volume ranges, per-case report
        report.md                  per case and structure: kept, ignored and dropped voxels, why, mean confidence
        fold_<f>/                  per-fold probabilities while the set is incomplete (removed at the end)

``NAME`` defaults to ``<TRAINER>__<plans>__<configuration>``. Dropped cases get no label file. The command is
resumable (finished cases and finished fold predictions are kept) and writes every file atomically; it refuses to
continue a set made with another model, folds or filter settings (``--overwrite`` starts it afresh).

Only source training labels (``labelsTr``, for the plausible volume range) are ever read; the target test images
and labels are never opened.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_glua.data.pseudo_label_filter import CaseReport, PseudoLabelFilter, StructureReport, filter_pseudo_label
from nnunet_glua.data.uda_dataset_info import UDADatasetError, UDADatasetInfo, load_uda_info
from nnunet_glua.errors import PathError
from nnunet_glua.io_utils import write_image
from nnunet_glua.json_io import read_json, write_json
from nnunet_glua.volume_io import read_volume

__all__ = ["PseudoLabelError", "PSEUDO_LABEL_FOLDER", "SET_FILE", "FoldPredictFn", "pseudo_label_ignore_label",
           "pseudo_label_set_folder", "source_volume_ranges", "read_target_image", "fold_probabilities",
           "make_pseudo_labels", "main"]

PSEUDO_LABEL_FOLDER = "pseudolabels"
SET_FILE = "pseudo_label_set.json"
LABELS_FOLDER = "labels"

#: ``predict(fold, input_files, output_folder)``: write ``<case>.npz`` (key ``probabilities``, ``(classes,
#: *array shape of the image)``) into ``output_folder`` for every ``{case: image file}`` of ``input_files``
FoldPredictFn = Callable[[object, Mapping[str, Path], Path], None]


class PseudoLabelError(PathError):
    """A pseudo-label set cannot be made: the path at fault and what to do."""


def pseudo_label_ignore_label(labels: Iterable[int]) -> int:
    """The ignore label of a dataset's pseudo-labels: its highest label + 1 (the rule the self-training trainers
    check a set against)."""
    return max(labels) + 1


def pseudo_label_set_folder(info: UDADatasetInfo, name: str) -> Path:
    """``$nnUNet_raw/<dataset>/pseudolabels/<name>``."""
    if not name or "/" in name or name.startswith("."):
        raise PseudoLabelError(None, f"invalid pseudo-label set name {name!r}: use a plain folder name")
    return info.raw_folder / PSEUDO_LABEL_FOLDER / name


def dataset_labels(dataset_json: Mapping) -> dict[int, str]:
    """Foreground label value -> name from ``dataset.json``'s ``labels``; refuses region-based labels and an
    existing ignore label (pseudo-labels add their own)."""
    labels = {}
    for name, value in dataset_json["labels"].items():
        if not isinstance(value, int):
            raise PseudoLabelError(None, f"label {name!r} is a region ({value}); pseudo-labels support plain "
                                         "integer labels only")
        if name == "ignore":
            raise PseudoLabelError(None, "the dataset already has an ignore label; pseudo-labels need a dataset "
                                         "whose labels are all structures")
        if value != 0:
            labels[value] = name
    return labels


def source_volume_ranges(info: UDADatasetInfo, labels: Mapping[int, str]) -> dict[int, tuple[float, float]]:
    """Per label, the (min, max) volume in millilitres over the labelled source training cases (``labelsTr``)."""
    folder = info.raw_folder / "labelsTr"
    files = sorted(folder.glob(f"*{info.file_ending}"))
    if not files:
        raise PseudoLabelError(folder, "holds no source label file: the plausible volume range needs the "
                                       "labelled source cases (or pass --volume-factor inf)")
    volumes: dict[int, list[float]] = {label: [] for label in labels}
    for path in files:
        image = read_volume(path, "source label", PseudoLabelError)
        counts = np.bincount(sitk.GetArrayViewFromImage(image).ravel().astype(np.int64))
        voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
        for label in labels:
            volumes[label].append((float(counts[label]) if label < len(counts) else 0.0) * voxel_ml)
    return {label: (min(v), max(v)) for label, v in volumes.items()}


def nnunet_fold_predictor(model, device: str, use_mirroring: bool, num_processes: int) -> FoldPredictFn:
    """The default :data:`FoldPredictFn`: nnU-Net's predictor with one fold of ``model`` (a
    :class:`~nnunet_glua.inference.trained_model.TrainedModel`), saving probabilities."""
    def predict(fold, input_files: Mapping[str, Path], output_folder: Path) -> None:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_glua.paths import ensure_trainer_folder_registered

        ensure_trainer_folder_registered()
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                    perform_everything_on_device=device == "cuda", device=torch.device(device),
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=True)
        predictor.initialize_from_trained_model_folder(str(model.folder), use_folds=(fold,),
                                                       checkpoint_name=model.checkpoint)
        cases = list(input_files)
        inputs = [[str(input_files[c])] for c in cases]
        outputs = [str(output_folder / c) for c in cases]
        if num_processes == 0:
            predictor.predict_from_files_sequential(inputs, outputs, save_probabilities=True, overwrite=True)
        else:
            predictor.predict_from_files(inputs, outputs, save_probabilities=True, overwrite=True,
                                         num_processes_preprocessing=num_processes,
                                         num_processes_segmentation_export=num_processes)
    return predict


def read_target_image(path: Path) -> tuple[sitk.Image, tuple[int, ...], float]:
    """A target training image, its array shape (the shape of its fold probabilities without the class axis) and
    one voxel's volume in millilitres."""
    image = read_volume(path, "target image", PseudoLabelError)
    return image, sitk.GetArrayViewFromImage(image).shape, float(np.prod(image.GetSpacing())) / 1000.0


def _load_probabilities(path: Path) -> np.ndarray | None:
    """The probabilities of one fold's prediction, or None when the file is missing or unreadable (a prediction
    cut off by a killed run): it is then predicted again."""
    try:
        with np.load(path) as data:
            return np.asarray(data["probabilities"], dtype=np.float32)
    except Exception:  # a file cut off mid-write raises BadZipFile, EOFError, ValueError or OSError
        return None


def fold_probabilities(folder: Path, folds: Sequence, case: str, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Each fold's probabilities of ``case``, loaded one at a time and checked against the image's array shape."""
    for fold in folds:
        path = folder / f"fold_{fold}" / f"{case}.npz"
        probabilities = _load_probabilities(path)
        if probabilities is None:
            raise PseudoLabelError(path, "the fold's prediction is missing or unreadable after predicting; delete "
                                         "it and run the command again")
        if probabilities.shape[1:] != shape:
            raise PseudoLabelError(path, f"probabilities of shape {probabilities.shape[1:]} do not match the "
                                         f"image's array shape {shape}")
        yield probabilities


def _set_identity(model_key: dict, folds: Sequence, settings: PseudoLabelFilter, cases: Sequence[str],
                  use_mirroring: bool) -> dict:
    return {"model": model_key, "folds": [str(f) for f in folds], "filter": settings.to_dict(),
            "cases": list(cases), "test_time_mirroring": use_mirroring}


def _case_report(entry: Mapping) -> CaseReport:
    fields = {f.name for f in dataclasses.fields(CaseReport)} - {"structures"}
    return CaseReport(**{k: v for k, v in entry.items() if k in fields},
                      structures=[StructureReport(**s) for s in entry["structures"]])


def _report_markdown(name: str, identity: dict, reports: Sequence[CaseReport]) -> str:
    lines = [f"# Pseudo-label set {name}", "",
             f"Model `{identity['model']['folder']}`, folds {', '.join(identity['folds'])}; filter: "
             + ", ".join(f"{k}={v}" for k, v in identity["filter"].items()), "",
             f"{sum(r.status == 'kept' for r in reports)} of {len(reports)} cases kept.", "",
             "| case | status | ignored | mean confidence | structure (mean confidence) | predicted | kept | "
             "low confidence | disagreement | small components | volume (ml) | structure status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        for i, s in enumerate(r.structures):
            head = (f"{r.case} | {r.status}{': ' + r.reason if r.reason else ''} | {r.ignored_fraction:.1%} | "
                    f"{r.mean_confidence:.3f}") if i == 0 else " | | |"
            conf = "n/a" if s.mean_confidence is None else f"{s.mean_confidence:.3f}"
            if s.confidence_threshold is not None and s.confidence_threshold < identity["filter"]["min_confidence"]:
                conf += f", threshold {s.confidence_threshold:.3f}"
            lines.append(f"| {head} | {s.name} ({conf}) | {s.predicted_voxels} | {s.kept_voxels} | "
                         f"{s.ignored_low_confidence} | {s.ignored_disagreement} | {s.ignored_small_components} | "
                         f"{s.volume_ml:.2f} | {s.status}{': ' + s.reason if s.reason else ''} |")
    return "\n".join(lines) + "\n"


def make_pseudo_labels(
    dataset: "int | str",
    model,
    name: str | None = None,
    settings: PseudoLabelFilter = PseudoLabelFilter(),
    predict: FoldPredictFn | None = None,
    device: str = "cuda",
    use_mirroring: bool = True,
    num_processes: int = 2,
    overwrite: bool = False,
    keep_probabilities: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Write (or finish) the pseudo-label set of ``model`` (a ``TrainedModel`` whose ``folds`` form the ensemble)
    for the unlabelled target training images of ``dataset``; returns the set's folder.

    ``predict`` defaults to :func:`nnunet_fold_predictor`. Raises :class:`PseudoLabelError` (or
    :class:`UDADatasetError`) naming the file at fault.
    """
    info = load_uda_info(dataset)
    if info.role != "adaptation":
        raise PseudoLabelError(info.raw_folder, f"is a {info.role} dataset; pseudo-labels are made for the "
                                                "unlabelled target images of an adaptation dataset")
    images = {case: files[0] for case, files in info.target_image_files("train").items()}
    leaked = sorted(set(images) & set(info.target_test_cases))
    if leaked:  # load_uda_info refuses this already; a pseudo-label of a test case must never exist
        raise PseudoLabelError(info.unlabelled_target_folder, f"test cases {leaked} among the target training images")
    labels = dataset_labels(info.dataset_json)
    ignore_label = pseudo_label_ignore_label(labels)
    name = name or f"{model.trainer}__{model.plans}__{model.configuration}"
    folder = pseudo_label_set_folder(info, name)
    identity = _set_identity(model.key(), model.folds, settings, sorted(images), use_mirroring)

    set_file = folder / SET_FILE
    state = read_json(set_file, PseudoLabelError) if set_file.is_file() else None
    if state is not None and state["identity"] != identity:
        if not overwrite:
            changed = [k for k in identity if state["identity"].get(k) != identity[k]]
            raise PseudoLabelError(set_file, f"this set was made with another {', '.join(changed)}; pass another "
                                             "name (-o NAME) or --overwrite to make it afresh")
        shutil.rmtree(folder)
        state = None
    if state is None:
        folder.mkdir(parents=True, exist_ok=True)
        ranges = source_volume_ranges(info, labels) if np.isfinite(settings.volume_factor) else {}
        state = {"identity": identity, "complete": False, "dataset": info.dataset_name, "ignore_label": ignore_label,
                 "labels": {"background": 0, **{n: v for v, n in sorted(labels.items())}, "ignore": ignore_label},
                 "source_volume_ranges_ml": {str(k): v for k, v in ranges.items()}, "cases": {}}
        write_json(state, set_file)
    ranges = {int(k): tuple(v) for k, v in state["source_volume_ranges_ml"].items()}

    predict = predict or nnunet_fold_predictor(model, device, use_mirroring, num_processes)
    pending = [c for c in sorted(images) if c not in state["cases"]]
    log(f"pseudo-labels {name}: {len(images)} target training images, {len(images) - len(pending)} done, "
        f"{len(pending)} to go, folds {', '.join(str(f) for f in model.folds)}")
    for fold in model.folds:
        fold_folder = folder / f"fold_{fold}"
        fold_folder.mkdir(exist_ok=True)
        missing = {c: images[c] for c in pending if _load_probabilities(fold_folder / f"{c}.npz") is None}
        if missing:
            log(f"  fold {fold}: predicting {len(missing)} image(s)")
            predict(fold, missing, fold_folder)
    for i, case in enumerate(pending, 1):
        image, shape, voxel_ml = read_target_image(images[case])
        pseudo, report = filter_pseudo_label(case, fold_probabilities(folder, model.folds, case, shape), labels,
                                             ignore_label, voxel_ml, ranges, settings)
        if report.status == "kept":
            out = sitk.GetImageFromArray(pseudo)
            out.CopyInformation(image)
            write_image(out, folder / LABELS_FOLDER / f"{case}{info.file_ending}")
        state["cases"][case] = report.to_dict()
        write_json(state, set_file)
        structures = ", ".join(f"{s.name} {s.status}" for s in report.structures)
        log(f"  [{i}/{len(pending)}] {case}: {report.status}{' (' + report.reason + ')' if report.reason else ''}; "
            f"ignored {report.ignored_fraction:.1%}; {structures}")

    reports = [_case_report(state["cases"][c]) for c in sorted(state["cases"])]
    (folder / "report.md").write_text(_report_markdown(name, identity, reports))
    state["complete"] = True
    write_json(state, set_file)
    if not keep_probabilities:
        for fold in model.folds:
            shutil.rmtree(folder / f"fold_{fold}", ignore_errors=True)
    log(f"pseudo-label set: {folder} ({sum(r.status == 'kept' for r in reports)} of {len(reports)} cases kept; "
        f"report {folder / 'report.md'})")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    defaults = PseudoLabelFilter()
    parser = argparse.ArgumentParser(
        prog="glua_pseudo_label",
        description="Pseudo-labels for self-training: predict the unlabelled target TRAINING images (imagesTargetTr, "
                    "never imagesTs) with the fold ensemble of a trained model, keep the voxels the ensemble "
                    "trusts (the rest become nnU-Net's ignore label) and write $nnUNet_raw/<dataset>/pseudolabels/"
                    "<NAME>/ with labels/, pseudo_label_set.json and report.md. Resumable: run the same command "
                    "again after an interruption.")
    parser.add_argument("-d", "--dataset", required=True, help="adaptation dataset id or name")
    parser.add_argument("-c", "--configuration", default="3d_fullres", help="configuration (default 3d_fullres)")
    parser.add_argument("-tr", "--trainer", default="GLUATrainer", help="trainer of the model (default GLUATrainer)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds of the ensemble (default: every trained fold)")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name")
    parser.add_argument("-o", "--name", default=None, help="set name (default TRAINER__PLANS__CONFIGURATION)")
    parser.add_argument("-device", "--device", default=None, choices=("cuda", "cpu", "mps"),
                        help="device for prediction (default: CUDA when available)")
    parser.add_argument("--disable-tta", action="store_true", help="predict without test-time mirroring")
    parser.add_argument("-np", "--num-processes", type=int, default=2,
                        help="nnU-Net preprocessing / export processes (0: sequential; default 2)")
    parser.add_argument("--min-confidence", type=float, default=defaults.min_confidence,
                        help=f"ensemble probability below which a voxel is ignored (default {defaults.min_confidence})")
    parser.add_argument("--keep-most-confident", type=float, default=defaults.keep_most_confident,
                        help="per structure and case, at least this fraction of its voxels (the most confident) "
                             "passes the confidence step, below --min-confidence if need be (default "
                             f"{defaults.keep_most_confident}: off)")
    parser.add_argument("--min-agreement", type=float, default=defaults.min_agreement,
                        help="fraction of folds that must predict the ensemble's class (default "
                             f"{defaults.min_agreement})")
    parser.add_argument("--min-component-fraction", type=float, default=defaults.min_component_fraction,
                        help="components smaller than this fraction of a structure's largest are ignored (default "
                             f"{defaults.min_component_fraction}; 0 keeps all)")
    parser.add_argument("--volume-factor", type=float, default=defaults.volume_factor,
                        help="a structure outside [min/f, max*f] of the source volumes is dropped (default "
                             f"{defaults.volume_factor}; inf: no check)")
    parser.add_argument("--max-dropped-fraction", type=float, default=defaults.max_dropped_fraction,
                        help="a case is dropped when more than this fraction of its structures is dropped "
                             f"(default {defaults.max_dropped_fraction})")
    parser.add_argument("--overwrite", action="store_true", help="make the set afresh if it exists with other settings")
    parser.add_argument("--keep-probabilities", action="store_true", help="keep the per-fold probabilities")
    args = parser.parse_args(argv)

    from nnunet_glua.inference.errors import PredictionError
    from nnunet_glua.inference.nnunet_step import resolve_device
    from nnunet_glua.inference.trained_model import find_trained_model

    try:
        settings = PseudoLabelFilter(min_confidence=args.min_confidence, keep_most_confident=args.keep_most_confident,
                                     min_agreement=args.min_agreement,
                                     min_component_fraction=args.min_component_fraction,
                                     volume_factor=args.volume_factor, max_dropped_fraction=args.max_dropped_fraction)
    except ValueError as e:
        parser.error(str(e))
    try:
        model = find_trained_model(args.dataset, args.configuration, args.trainer, args.plans, args.folds,
                                   args.checkpoint)
        make_pseudo_labels(args.dataset, model, args.name, settings, device=resolve_device(args.device),
                           use_mirroring=not args.disable_tta, num_processes=args.num_processes,
                           overwrite=args.overwrite, keep_probabilities=args.keep_probabilities)
    except (PseudoLabelError, UDADatasetError, PredictionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
