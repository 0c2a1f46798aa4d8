"""Segment new raw scans with a trained model and return each segmentation in its scan's original geometry.

The dataset converters transform every raw volume before nnU-Net sees it: the voxel array is re-indexed to a
canonical orientation (axis permutations and flips only, :mod:`nnunet_glua.conversion.orientation`) and the
intensities are harmonised (label-free body mask, robust clipping, body mapped to ``[1, 1000]``, outside exactly 0,
:mod:`nnunet_glua.conversion.intensity`). A model trained on such data must see new scans transformed the same
way, and its predictions must be mapped back onto the scans as they were stored. :func:`predict_scans` does all of
it in one run:

1. **Inputs.** NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``, ``.mhd``) files,
   folders holding one DICOM series (slices ordered by position), or folders of such files and series folders
   (expanded one level deep). The case id is the file name without its suffix, or the series folder's name.
   Every header is checked before any work starts: 3D, a single channel, more than one slice on every axis.
2. **Per scan:** read, :func:`~nnunet_glua.conversion.orientation.to_canonical`,
   :func:`~nnunet_glua.conversion.intensity.harmonise_intensities` with the modality and the settings recorded in
   the ``"glua"`` block of the model's ``dataset.json`` (the copy nnU-Net stores next to the checkpoints, i.e. the
   settings of the data the model was trained on), written to ``{work}/images/{case}_0000.nii.gz``.
3. **One nnU-Net prediction** over all scans (:class:`NnUNetPrediction`: ``nnUNetPredictor`` with the requested
   folds as an ensemble) into ``{work}/predictions/{case}.nii.gz`` (canonical grid).
4. **Per prediction:** :func:`~nnunet_glua.conversion.orientation.restore_orientation` to the scan's original
   orientation code, check that the grid matches the original (same size; spacing, origin and direction within the
   tolerances of :mod:`~nnunet_glua.conversion.orientation`), copy the original spacing, origin and direction
   exactly, write ``{output}/{case}.nii.gz`` (uint8) atomically.
5. ``{output}/predictions.json`` records per case the input, the orientation change, the intensity record, the
   model folder and folds, and the voxel count of every label.

Resuming: a case whose output file exists is skipped unless ``overwrite``. The work folder
``{output}/glua_intermediate`` is removed after a successful run unless ``keep_intermediate``. After a failure it
stays, and the next run reuses the canonical predictions it holds for every case whose input files, modality,
intensity settings and model (folder, folds, checkpoint files, step size, mirroring) are unchanged, so an
interrupted nnU-Net run over hundreds of scans does not start from scratch. One run at a time may write to an
output folder (a lock file, ``.glua_predict_scans.lock``, guards it).

Command line::

    glua_predict_scans -d 701 -i /data/new_ct/ -o /data/new_ct_seg                 # all trained folds
    glua_predict_scans -d 701 -i scan1.nii.gz dicom_folder/ -o out -f 0 1 2 3 4 -device cpu

This module runs the steps; each lives in a module of its own:
:mod:`~nnunet_glua.inference.scan_inputs` (finding, checking and reading scans),
:mod:`~nnunet_glua.inference.trained_model` (the model folder and its conversion settings),
:mod:`~nnunet_glua.inference.scan_transforms` (steps 2 and 4), :mod:`~nnunet_glua.inference.nnunet_step` (step 3),
:mod:`~nnunet_glua.inference.resumable_run` (resuming, ``predictions.json``),
:mod:`~nnunet_glua.inference.output_layout` (the output folder's names), :mod:`~nnunet_glua.inference.errors`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import MODALITIES
from nnunet_glua.data.uda_dataset_info import UDADatasetError
from nnunet_glua.inference.errors import PredictionError
from nnunet_glua.inference.nnunet_step import (
    DEVICES,
    NnUNetPrediction,
    PredictFn,
    resolve_device,
)
from nnunet_glua.inference.output_layout import (
    LOCK_NAME,
    OUTPUT_SUFFIX,
    WORK_FOLDER_NAME,
)
from nnunet_glua.inference.resumable_run import (
    case_fingerprint,
    model_fingerprint,
    reusable_predictions,
    timestamp,
    write_predictions_json,
    write_state,
)
from nnunet_glua.inference.scan_inputs import (
    ScanInput,
    check_scan_header,
    discover_inputs,
)
from nnunet_glua.inference.scan_transforms import (
    Prepared,
    PrepareJob,
    RestoreJob,
    label_names,
    prepare,
    restore,
)
from nnunet_glua.inference.trained_model import (
    ConversionSettings,
    TrainedModel,
    conversion_settings,
    find_trained_model,
)
from nnunet_glua.parallel import VOLUME_PROCESS_CAP, default_num_processes, run_jobs

__all__ = ["main", "predict_scans"]


# --- the run ------------------------------------------------------------------------------------------------------

def _check_output_folder(output: Path, inputs: Sequence[str | os.PathLike], scans: Sequence[ScanInput]) -> None:
    resolved = output.resolve()
    for raw in inputs:
        if Path(raw).is_dir() and Path(raw).resolve() == resolved:
            raise PredictionError(
                output, "the output folder is also an input folder; its predictions would be read as scans by the "
                "next run. Choose another output folder."
            )
    for scan in scans:
        if (resolved / f"{scan.case_id}{OUTPUT_SUFFIX}") == scan.path.resolve():
            raise PredictionError(scan.path, "the prediction would overwrite this input scan; choose another output "
                                             "folder")


def _env_int(name: str, default: int) -> int:
    """The whole number in the environment variable ``name`` (nnU-Net's ``nnUNet_npp`` / ``nnUNet_nps``), ``default``
    if it is unset or empty; :class:`PredictionError` naming the variable if it holds anything else."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise PredictionError(
            None,
            f"the environment variable {name} must be a whole number of processes (e.g. 3; 0 in both nnUNet_npp "
            f"and nnUNet_nps runs nnU-Net without worker processes), got {value!r}. Fix or unset it, or pass -npp / "
            "-nps.",
        ) from None


def predict_scans(
    dataset: int | str,
    inputs: Sequence[str | os.PathLike],
    output_folder: str | os.PathLike,
    configuration: str = "3d_fullres",
    trainer: str = "GLUATrainer",
    plans: str = "nnUNetPlans",
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
    device: str | None = None,
    modality: str | None = None,
    num_processes: int | None = None,
    num_processes_preprocessing: int | None = None,
    num_processes_export: int | None = None,
    overwrite: bool = False,
    step_size: float = 0.5,
    disable_tta: bool = False,
    keep_intermediate: bool = False,
    predict_fn: PredictFn | None = None,
) -> list[Path]:
    """Segment raw scans with a trained model of ``dataset``; write each segmentation in its scan's geometry.

    ``inputs``: volume files, DICOM series folders or folders of those (see :func:`discover_inputs`).
    ``output_folder`` receives ``{case}.nii.gz`` (uint8 labels, same size, spacing, origin and direction as the
    scan) and ``predictions.json``. ``folds=None`` ensembles every fold trained with ``checkpoint``.
    ``device=None`` picks CUDA, then MPS, then CPU. ``modality`` (``"CT"``/``"MR"``) selects the body mask of the
    intensity harmonisation; default: the dataset's target modality. ``num_processes``: worker processes for
    reading/harmonising and for writing the outputs (default ``nnUNet_def_n_proc``, else up to 4; a CT volume
    takes about 1.5 GB in a worker); ``num_processes_preprocessing`` / ``num_processes_export``: nnU-Net's
    ``-npp`` / ``-nps`` (default ``nnUNet_npp`` / ``nnUNet_nps``, else 3; both 0: no worker processes).
    ``predict_fn`` replaces the nnU-Net step (default :class:`NnUNetPrediction`).

    Returns the output paths in input order, including those of skipped cases. Raises :class:`ConversionError`
    for bad inputs and :class:`PredictionError` for model, dataset or output folder problems, before any scan is
    processed wherever that can be known up front.
    """
    if not 0 < float(step_size) <= 1:
        raise PredictionError(None, f"step_size must be in (0, 1], got {step_size}")
    scans = discover_inputs(inputs)
    model = find_trained_model(dataset, configuration, trainer, plans, folds, checkpoint)
    settings = conversion_settings(model)
    modality = settings.target_modality if modality is None else str(modality).upper()
    if modality not in MODALITIES:
        raise PredictionError(None, f"modality must be one of {MODALITIES}, got {modality!r}")
    output = Path(output_folder)
    _check_output_folder(output, inputs, scans)
    npp = _env_int("nnUNet_npp", 3) if num_processes_preprocessing is None else int(num_processes_preprocessing)
    nps = _env_int("nnUNet_nps", 3) if num_processes_export is None else int(num_processes_export)
    if npp < 0 or nps < 0 or (npp == 0) != (nps == 0):
        raise PredictionError(None, f"-npp and -nps must both be >= 1, or both 0 (no worker processes); got {npp}, "
                                    f"{nps}")
    workers = default_num_processes(VOLUME_PROCESS_CAP) if num_processes is None else max(1, int(num_processes))
    if predict_fn is None:
        device = resolve_device(device)
        predict_fn = NnUNetPrediction(model, device, float(step_size), not disable_tta, npp, nps)

    for warning in settings.warnings:
        print(f"WARNING: {warning}")
    output.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock, Timeout

    lock = FileLock(str(output / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise PredictionError(output, f"another glua_predict_scans run is writing to this folder (lock "
                                      f"{LOCK_NAME}); wait for it to finish or choose another output folder") from None
    try:
        _run(scans, model, settings, modality, output, workers, overwrite, step_size, disable_tta, device,
             keep_intermediate, predict_fn)
    finally:
        lock.release()
    return [output / f"{scan.case_id}{OUTPUT_SUFFIX}" for scan in scans]


def _run(scans: Sequence[ScanInput], model: TrainedModel, settings: ConversionSettings, modality: str, output: Path,
         workers: int, overwrite: bool, step_size: float, disable_tta: bool, device: str | None,
         keep_intermediate: bool, predict_fn: PredictFn) -> None:
    pending = [s for s in scans if overwrite or not (output / f"{s.case_id}{OUTPUT_SUFFIX}").exists()]
    skipped = len(scans) - len(pending)
    folds_text = ", ".join(str(f) for f in model.folds)
    print(f"{len(scans)} scan(s); {skipped} already segmented in {output} (skipped; --overwrite redoes them), "
          f"{len(pending)} to segment with {model.folder.name} fold(s) {folds_text} ({modality}, settings from "
          f"{settings.source})")
    for scan in pending:
        check_scan_header(scan)

    work = output / WORK_FOLDER_NAME
    model_record = {
        "dataset": model.dataset_name,
        "model_folder": str(model.folder.resolve()),
        "trainer": model.trainer,
        "plans": model.plans,
        "configuration": model.configuration,
        "folds": list(model.folds),
        "checkpoint": model.checkpoint,
    }
    entries: dict[str, dict[str, Any]] = {}
    try:
        if pending:
            _segment(pending, model, settings, modality, output, work, workers, overwrite, step_size, disable_tta,
                     predict_fn, model_record, entries)
    except BaseException:
        if work.exists():
            print(f"Intermediate files kept in {work}; run the same command again to resume.", file=sys.stderr)
        raise
    finally:
        # also after a failure: the cases written so far keep their record
        write_predictions_json(output, scans, entries, model_record, settings, modality, step_size, disable_tta,
                               device)
    if keep_intermediate:
        if work.exists():
            print(f"Intermediate files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Done: {len(pending)} segmentation(s) written, {skipped} skipped -> {output}")


def _segment(pending: Sequence[ScanInput], model: TrainedModel, settings: ConversionSettings, modality: str,
             output: Path, work: Path, workers: int, overwrite: bool, step_size: float, disable_tta: bool,
             predict_fn: PredictFn, model_record: dict[str, Any], entries: dict[str, dict[str, Any]]) -> None:
    """Prepare, predict and restore ``pending``; fills ``entries`` (case id -> predictions.json record) as outputs
    are written."""
    ending = model.dataset_json["file_ending"]
    images, predictions = work / "images", work / "predictions"
    # images are rebuilt every run (cheap next to prediction); predictions survive if still valid
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)

    def report_warnings(prepared: Prepared, bar: tqdm) -> None:
        for warning in prepared.intensity.warnings:
            bar.write(f"WARNING {prepared.case_id}: {warning}")

    jobs = [PrepareJob(s, modality, settings.intensity, settings.canonical_orientation,
                       images / f"{s.case_id}_0000{ending}") for s in pending]
    prepared = run_jobs(prepare, jobs, workers, "reorienting + harmonising", "scan", report_warnings)

    case_keys = {s.case_id: case_fingerprint(s, modality, settings) for s in pending}
    model_key = model_fingerprint(model, step_size, not disable_tta)
    reused = reusable_predictions(work, model_key, case_keys, ending, fresh=overwrite)
    write_state(work, model_key, case_keys)
    predictions.mkdir(parents=True, exist_ok=True)
    to_predict = [s.case_id for s in pending if s.case_id not in reused]
    if reused:
        print(f"Reusing {len(reused)} canonical prediction(s) of an interrupted run from {predictions}")
    if to_predict:
        print(f"Predicting {len(to_predict)} scan(s) with {model.folder} fold(s) "
              f"{', '.join(str(f) for f in model.folds)}")
        predict_fn(images, predictions, to_predict)
    missing = [c for c in to_predict if not (predictions / f"{c}{ending}").is_file()]
    if missing:
        raise PredictionError(predictions, f"the predictor wrote no prediction for {', '.join(missing)}")

    names = label_names(model.dataset_json)
    restore_jobs = [RestoreJob(p.case_id, predictions / f"{p.case_id}{ending}",
                               output / f"{p.case_id}{OUTPUT_SUFFIX}", p.reorientation.original, names)
                    for p in prepared]
    by_case = {s.case_id: (s, p) for s, p in zip(pending, prepared)}

    def record(result: tuple[str, dict[str, int]], bar: tqdm) -> None:
        case, counts = result
        scan, prep = by_case[case]
        warnings = list(prep.intensity.warnings)
        if not any(counts.values()):
            warnings.append("the prediction is empty (background only)")
            bar.write(f"WARNING {case}: the prediction is empty (background only)")
        entries[case] = {
            "input": str(scan.path.resolve()),
            "input_kind": scan.kind,
            **({"dicom_files": len(scan.dicom_files)} if scan.is_dicom else {}),
            "output": f"{case}{OUTPUT_SUFFIX}",
            "modality": modality,
            "reorientation": prep.reorientation.to_dict(),
            "intensity": prep.intensity.to_dict(),
            **model_record,
            "reused_intermediate_prediction": case in reused,
            "voxels_per_label": counts,
            "warnings": warnings,
            "created": timestamp(),
        }

    run_jobs(restore, restore_jobs, workers, "restoring original geometry", "scan", record)


# --- command line -------------------------------------------------------------------------------------------------

def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glua_predict_scans",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Segment new raw scans with a trained model and write each segmentation in its scan's original "
            "geometry. Each scan goes through the same transform as the training data (re-indexing to the "
            "dataset's canonical orientation, intensity harmonisation with the settings recorded in the model's "
            "dataset.json), all scans are predicted in one nnU-Net run (fold ensemble), and each prediction is "
            "mapped back to its scan's orientation, spacing, origin and direction: OUT/{case}.nii.gz (uint8) plus "
            "OUT/predictions.json. Cases whose output exists are skipped, so an interrupted run resumes.",
            width=100,
        ),
        epilog=(
            "examples:\n"
            "  glua_predict_scans -d 701 -i /data/new_ct -o /data/new_ct_seg\n"
            "  glua_predict_scans -d 701 -i scan.nii.gz dicom_series_folder/ -o out -f 0 1 2 3 4 -device cpu\n"
            "  glua_predict_scans -d 703 -i mr_scans/ -o seg --modality MR   # scans of the other (source) modality\n"
            "inputs: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a folder holding one DICOM\n"
            "series, or a folder of files / DICOM series folders. Case id = file name without suffix, or the DICOM\n"
            "folder's name."
        ),
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (e.g. 701) or name (Dataset701_...)")
    parser.add_argument("-i", "--inputs", nargs="+", required=True, metavar="SCAN",
                        help="scan files, DICOM series folders, or folders of those")
    parser.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    parser.add_argument("-c", "--configuration", default="3d_fullres",
                        help="nnU-Net configuration (default 3d_fullres)")
    parser.add_argument("-tr", "--trainer", default="GLUATrainer", help="trainer class name (default GLUATrainer)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble (numbers or 'all'; default: every fold trained with the checkpoint)")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth",
                        help="checkpoint file name (default checkpoint_final.pth)")
    parser.add_argument("-device", "--device", choices=DEVICES, default=None,
                        help="cuda, cpu or mps (default: cuda if available, else mps, else cpu); pick the GPU with "
                             "CUDA_VISIBLE_DEVICES")
    parser.add_argument("--modality", type=str.upper, choices=MODALITIES, default=None,
                        help="modality of the scans, selects the body mask of the intensity harmonisation "
                             "(default: the dataset's target modality)")
    parser.add_argument("--disable_tta", action="store_true",
                        help="no test-time mirroring (faster, slightly less accurate)")
    parser.add_argument("-step_size", "--step_size", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch size, in (0, 1] (default 0.5)")
    parser.add_argument("-npp", type=int, default=None,
                        help="nnU-Net preprocessing processes (default $nnUNet_npp, else 3; -npp 0 -nps 0 runs "
                             "without worker processes)")
    parser.add_argument("-nps", type=int, default=None,
                        help="nnU-Net segmentation export processes (default $nnUNet_nps, else 3)")
    parser.add_argument("-np", "--num_processes", type=int, default=None,
                        help="processes for reading/harmonising scans and writing outputs (default "
                             "$nnUNet_def_n_proc, else up to 4; about 1.5 GB each for a CT volume)")
    parser.add_argument("--overwrite", action="store_true", help="re-segment cases whose output already exists")
    parser.add_argument("--keep-intermediate", "--keep_intermediate", dest="keep_intermediate", action="store_true",
                        help=f"keep OUT/{WORK_FOLDER_NAME} (harmonised canonical images and canonical predictions)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``glua_predict_scans``; returns the exit status (0 on success, 1 on bad input)."""
    args = _build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        import torch

        # as nnUNetv2_predict does: CPU inference uses every core, GPU inference leaves the cores to the workers
        if device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        elif device == "cuda":
            torch.set_num_threads(1)
            torch.set_num_interop_threads(1)
        predict_scans(
            args.dataset, args.inputs, args.output, configuration=args.configuration, trainer=args.trainer,
            plans=args.plans, folds=args.folds, checkpoint=args.checkpoint, device=device, modality=args.modality,
            num_processes=args.num_processes, num_processes_preprocessing=args.npp, num_processes_export=args.nps,
            overwrite=args.overwrite, step_size=args.step_size, disable_tta=args.disable_tta,
            keep_intermediate=args.keep_intermediate,
        )
    except (ConversionError, PredictionError, UDADatasetError) as err:
        print(f"glua_predict_scans: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
