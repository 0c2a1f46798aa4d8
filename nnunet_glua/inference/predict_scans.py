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
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import textwrap
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

import nnunet_glua
from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import MODALITIES, IntensityRecord, IntensitySettings, harmonise_intensities
from nnunet_glua.conversion.orientation import (
    CANONICAL_ORIENTATION,
    DIRECTION_TOLERANCE,
    ORIGIN_TOLERANCE_MM,
    SPACING_TOLERANCE_MM,
    Geometry,
    Reorientation,
    restore_orientation,
    to_canonical,
)
from nnunet_glua.conversion.uda_dataset import VOLUME_PROCESS_CAP, check_nifti_complete, read_volume
from nnunet_glua.data.uda_dataset_info import UDADatasetError, parse_glua_block, resolve_dataset_name
from nnunet_glua.errors import PathError
from nnunet_glua.io_utils import write_image, write_json
from nnunet_glua.nnunet_io import RESULTS, load_plans, nnunet_folder, read_json
from nnunet_glua.parallel import default_num_processes, run_jobs

__all__ = [
    "PredictionError",
    "ScanInput",
    "TrainedModel",
    "ConversionSettings",
    "PredictFn",
    "NnUNetPrediction",
    "VOLUME_SUFFIXES",
    "OUTPUT_SUFFIX",
    "WORK_FOLDER_NAME",
    "PREDICTIONS_JSON",
    "discover_inputs",
    "check_scan_header",
    "read_scan",
    "find_trained_model",
    "trained_folds",
    "conversion_settings",
    "resolve_device",
    "predict_scans",
    "main",
]

#: file suffixes read as volumes (lower case; ``.nii.gz`` before ``.nii`` so the longest suffix wins)
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: suffix of the written segmentations
OUTPUT_SUFFIX = ".nii.gz"
#: work folder inside the output folder (harmonised inputs and canonical predictions)
WORK_FOLDER_NAME = "glua_intermediate"
#: run record inside the output folder
PREDICTIONS_JSON = "predictions.json"
FORMAT_VERSION = 1
_STATE_JSON = "state.json"
_LOCK_NAME = ".glua_predict_scans.lock"
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
DEVICES = ("cuda", "cpu", "mps")


class PredictionError(PathError):
    """A model, dataset or output folder problem. ``path`` names the file or folder at fault (may be ``None``)."""


# --- inputs -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScanInput:
    """One scan to segment.

    ``path`` is the volume file or the DICOM series folder; ``dicom_files`` are the series' files ordered by slice
    position (empty for a volume file).
    """

    case_id: str
    path: Path
    dicom_files: tuple[Path, ...] = ()

    @property
    def is_dicom(self) -> bool:
        return bool(self.dicom_files)

    @property
    def kind(self) -> str:
        return "dicom_series" if self.is_dicom else "file"

    def files(self) -> tuple[Path, ...]:
        """The files whose content makes up the scan."""
        return self.dicom_files or (self.path,)


def _brief(err: Exception) -> str:
    """The end of an ITK error message on one line (its start is a C++ source location)."""
    return " ".join(str(err).split())[-300:]


def _volume_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def _dicom_series_files(folder: Path) -> tuple[Path, ...]:
    """Files of the one DICOM series directly inside ``folder``, ordered by slice position; ``()`` if none.

    Raises :class:`ConversionError` if the folder holds several series: mixing them would stack unrelated slices.
    """
    # ITK warns "No Series were found" for every folder without DICOM files; here that is an ordinary answer
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:
        raise ConversionError(
            folder, f"cannot scan the folder for DICOM files: {_brief(err)}"
        ) from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    if not series_ids:
        return ()
    if len(series_ids) > 1:
        raise ConversionError(
            folder,
            f"holds {len(series_ids)} DICOM series (SeriesInstanceUIDs {', '.join(series_ids)}); a scan folder must "
            "hold exactly one series. Move each series into a folder of its own and pass those folders.",
        )
    # GDCM orders the files along the slice normal by ImagePositionPatient, never by file name
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    return tuple(Path(f) for f in files)


def _scan_from_file(path: Path) -> ScanInput:
    suffix = _volume_suffix(path)
    if suffix is None:
        if path.suffix.lower() in _DICOM_SUFFIXES:
            raise ConversionError(
                path, "is a single DICOM file; pass the folder that holds the whole series (one series per folder)"
            )
        raise ConversionError(
            path,
            "unsupported file type; pass NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) files, "
            "folders holding one DICOM series, or folders of those",
        )
    return ScanInput(path.name[: -len(suffix)], path)


def _scans_from_folder(folder: Path) -> list[ScanInput]:
    series = _dicom_series_files(folder)
    # hidden names are partial downloads, interrupted writes or file-system metadata (._x.nii.gz), never scans
    volumes = sorted(p for p in folder.iterdir() if p.is_file() and _volume_suffix(p) and not p.name.startswith("."))
    if series:
        if volumes:
            raise ConversionError(
                folder,
                f"holds both a DICOM series and volume files ({', '.join(p.name for p in volumes[:3])}"
                f"{', ...' if len(volumes) > 3 else ''}); it is unclear what to segment. Put the DICOM series into a "
                "folder of its own.",
            )
        return [ScanInput(folder.resolve().name, folder, series)]
    scans = [_scan_from_file(p) for p in volumes]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != WORK_FOLDER_NAME
                      and not p.name.startswith(".")):
        sub_series = _dicom_series_files(sub)
        if sub_series:
            scans.append(ScanInput(sub.name, sub, sub_series))
    if not scans:
        raise ConversionError(
            folder,
            "holds no NIfTI/NRRD/MetaImage file and no DICOM series (sub-folders are searched one level deep, for "
            "DICOM series only); pass scan files, a DICOM series folder, or a folder of those",
        )
    return scans


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> list[ScanInput]:
    """Expand the user's input paths into scans, in the given order (a folder's scans sorted by name).

    Raises :class:`ConversionError` for a missing path, an unsupported file, a folder with several DICOM series or
    with nothing to segment, and for two scans with the same case id (their outputs would overwrite each other).
    """
    if not inputs:
        raise ConversionError(None, "no input given; pass scan files or folders")
    scans: list[ScanInput] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_file():
            scans.append(_scan_from_file(path))
        elif path.is_dir():
            scans.extend(_scans_from_folder(path))
        else:
            raise ConversionError(path, "input does not exist")
    seen: dict[str, ScanInput] = {}
    for scan in scans:
        other = seen.setdefault(scan.case_id, scan)
        if other is not scan:
            same = other.path.resolve() == scan.path.resolve()
            raise ConversionError(
                scan.path,
                f"{'is given twice' if same else f'has the same case id {scan.case_id!r} as {other.path}'}; each scan "
                f"must have a unique case id (file name without suffix, or DICOM folder name) because the output is "
                f"named {scan.case_id}{OUTPUT_SUFFIX}. Rename one of them or segment them in separate runs.",
            )
    return scans


# --- reading ------------------------------------------------------------------------------------------------------

def _check_shape(path: Path, dimension: int, size: Sequence[int], components: int) -> None:
    size = tuple(int(s) for s in size)
    if dimension == 2 or (dimension == 3 and size[2] == 1 and size[0] > 1 and size[1] > 1):
        raise ConversionError(
            path,
            f"is a 2D image (size {size}); the model segments 3D volumes. Pass the whole 3D volume (for DICOM: the "
            "folder holding all slices of the series).",
        )
    if dimension == 4:
        raise ConversionError(
            path,
            f"is 4D (size {size}): {size[3]} volumes in one file (channels or time points). The model takes a single "
            "channel; extract the volume to segment into a 3D file.",
        )
    if dimension != 3:
        raise ConversionError(path, f"is {dimension}D (size {size}); a 3D volume is required")
    if components != 1:
        raise ConversionError(
            path,
            f"has {components} components per voxel (e.g. RGB or vector data); the model takes one scalar channel. "
            "Convert the scan to a single-channel (grey-value) volume.",
        )
    if min(size) < 2:
        raise ConversionError(path, f"has size {size}: a single slice along one axis; a 3D volume is required")


def check_scan_header(scan: ScanInput) -> None:
    """Check from the header alone (no voxel data) that ``scan`` is a single-channel 3D volume.

    Run on every scan before any work starts, so a bad input fails the run at once rather than after hours of
    prediction. Raises :class:`ConversionError` naming the file or folder.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(scan.files()[0]))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ConversionError(
            scan.files()[0], f"cannot read the image header (corrupt or not an image?): {_brief(err)}"
        ) from None
    dimension, size, components = reader.GetDimension(), list(reader.GetSize()), reader.GetNumberOfComponents()
    if scan.is_dicom and len(scan.dicom_files) > 1 and (dimension == 2 or (dimension == 3 and size[2] == 1)):
        # one slice per file: the series' depth is its number of files
        dimension, size = 3, size[:2] + [len(scan.dicom_files)]
    _check_shape(scan.path, dimension, size, components)


def read_scan(scan: ScanInput) -> sitk.Image:
    """Read ``scan`` as a 3D scalar image; :class:`ConversionError` naming the file or folder if it cannot."""
    if not scan.is_dicom:
        image = read_volume(scan.path, "scan")
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in scan.dicom_files])
        reader.MetaDataDictionaryArrayUpdateOn()
        try:
            image = reader.Execute()
        except RuntimeError as err:
            raise ConversionError(
                scan.path,
                f"cannot read the DICOM series ({len(scan.dicom_files)} files; slices of different sizes or a "
                f"corrupt file?): {_brief(err)}",
            ) from None
        if len(scan.dicom_files) > 1:
            _check_slice_positions(scan, reader, image)
    _check_shape(scan.path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    return image


# Slice positions may carry rounding noise of the header's decimal strings; a gap beyond this is a missing slice.
_SLICE_STEP_TOLERANCE_MM = 0.01
_SLICE_STEP_TOLERANCE_FRACTION = 0.01


def _check_slice_positions(scan: ScanInput, reader: sitk.ImageSeriesReader, image: sitk.Image) -> None:
    """Raise :class:`ConversionError` if the series' slices are not evenly spaced along the slice normal.

    A regular voxel grid (and so the output file) cannot represent a series with a missing slice or uneven
    spacing: ITK would silently stack the slices at an average spacing and every slice after the gap would sit at
    the wrong position.
    """
    key = "0020|0032"  # ImagePositionPatient
    if not all(reader.HasMetaDataKey(i, key) for i in range(len(scan.dicom_files))):
        return  # e.g. secondary captures without positions: nothing to verify
    try:
        positions = np.array([[float(v) for v in reader.GetMetaData(i, key).split("\\")]
                              for i in range(len(scan.dicom_files))])
    except ValueError:
        raise ConversionError(scan.path, "a slice has an unreadable ImagePositionPatient (0020,0032)") from None
    normal = np.array(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    steps = np.diff(positions @ normal)
    median = float(np.median(steps))
    tolerance = max(_SLICE_STEP_TOLERANCE_MM, _SLICE_STEP_TOLERANCE_FRACTION * abs(median))
    bad = np.flatnonzero(np.abs(steps - median) > tolerance)
    if median <= 0 or bad.size:
        where = ", ".join(f"{scan.dicom_files[i].name} -> {scan.dicom_files[i + 1].name}: {steps[i]:.4g} mm"
                          for i in bad[:3])
        raise ConversionError(
            scan.path,
            f"the DICOM slices are not evenly spaced along the slice normal (median step {median:.4g} mm; {where}). "
            "A slice is missing or duplicated, or the series mixes acquisitions; complete the series or resample "
            "it to a regular grid (e.g. export it as NIfTI) before segmenting it.",
        )


# --- the trained model and the dataset's conversion settings ------------------------------------------------------

@dataclass(frozen=True)
class TrainedModel:
    """A trained nnU-Net model folder and the folds / checkpoint to predict with.

    ``folder`` is ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}``; ``folds`` are fold
    numbers or ``"all"``, each with ``fold_{f}/{checkpoint}`` present; ``dataset_json`` is the folder's copy.
    """

    dataset_name: str
    folder: Path
    trainer: str
    plans: str
    configuration: str
    folds: tuple[Any, ...]
    checkpoint: str
    dataset_json: dict = field(repr=False)

    def checkpoint_path(self, fold: Any) -> Path:
        return self.folder / f"fold_{fold}" / self.checkpoint

    def key(self) -> dict[str, Any]:
        """JSON-ready identity of the model: any change (e.g. a retrained fold) makes its predictions stale."""
        stats = {}
        for fold in self.folds:
            st = self.checkpoint_path(fold).stat()
            stats[str(fold)] = [st.st_size, st.st_mtime_ns]
        return {
            "folder": str(self.folder.resolve()),
            "configuration": self.configuration,
            "folds": [str(f) for f in self.folds],
            "checkpoint": self.checkpoint,
            "checkpoint_files": stats,
        }


def _fold_value(fold: Any) -> Any:
    text = str(fold).strip()
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise PredictionError(None, f"fold {fold!r} is neither a fold number nor 'all'") from None


def trained_folds(model_folder: str | os.PathLike, checkpoint: str = "checkpoint_final.pth") -> list[Any]:
    """Folds of ``model_folder`` whose ``fold_*`` folder holds ``checkpoint``: numbers sorted, then ``"all"``."""
    found: list[Any] = []
    for sub in Path(model_folder).glob("fold_*"):
        if not (sub / checkpoint).is_file():
            continue
        suffix = sub.name[len("fold_"):]
        if suffix == "all":
            found.append("all")
        elif suffix.isdigit():
            found.append(int(suffix))
    return sorted(found, key=lambda f: (isinstance(f, str), f if isinstance(f, int) else 0))


def _configuration_chain(plans: Mapping[str, Any], configuration: str) -> dict[str, Any]:
    """The entries of ``configuration`` with those it inherits (``inherits_from``) filled in."""
    configurations = plans["configurations"]
    merged: dict[str, Any] = {}
    name, seen = configuration, set()
    while name is not None and name not in seen:
        seen.add(name)
        entry = configurations.get(name, {})
        merged = {**entry, **merged}
        name = entry.get("inherits_from")
    return merged


def find_trained_model(
    dataset: int | str,
    configuration: str = "3d_fullres",
    trainer: str = "GLUATrainer",
    plans: str = "nnUNetPlans",
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
) -> TrainedModel:
    """Locate the model folder of ``dataset`` in ``$nnUNet_results`` and check the requested folds.

    ``folds=None`` takes every fold that has ``checkpoint``. Raises :class:`PredictionError` for an unknown dataset,
    a missing model folder (listing the dataset's trained models), a fold without the checkpoint (listing the
    trained folds), a cascade configuration, or a model with more than one input channel.
    """
    try:
        name = resolve_dataset_name(dataset)
    except UDADatasetError as err:
        raise PredictionError(None, err.problem) from None
    dataset_dir = nnunet_folder(RESULTS, PredictionError) / name
    folder = dataset_dir / f"{trainer}__{plans}__{configuration}"
    if not folder.is_dir():
        available = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir() and p.name.count("__") == 2) \
            if dataset_dir.is_dir() else []
        raise PredictionError(
            folder,
            f"no trained model {trainer}__{plans}__{configuration} for {name}. Trained models of this dataset: "
            f"{', '.join(available) if available else 'none'}. Choose one with -tr TRAINER -p PLANS -c CONFIGURATION, "
            f"or train it first (nnUNetv2_train {name} {configuration} FOLD -tr {trainer}).",
        )
    for required in ("dataset.json", "plans.json"):
        if not (folder / required).is_file():
            raise PredictionError(folder, f"not a complete nnU-Net model folder: {required} is missing")
    available_folds = trained_folds(folder, checkpoint)
    if folds is None:
        if not available_folds:
            raise PredictionError(
                folder,
                f"no fold_* folder holds {checkpoint}: no fold has finished training. Finish training, or pick "
                f"another checkpoint with -chk (e.g. checkpoint_best.pth or checkpoint_latest.pth).",
            )
        chosen = tuple(f for f in available_folds if f != "all") or ("all",)
    else:
        chosen = tuple(dict.fromkeys(_fold_value(f) for f in folds))
        if not chosen:
            raise PredictionError(None, "no fold requested; pass -f with at least one fold")
        missing = [f for f in chosen if f not in available_folds]
        if missing:
            raise PredictionError(
                folder,
                f"fold(s) {', '.join(str(f) for f in missing)} have no {checkpoint}. "
                f"Trained folds (with {checkpoint}): "
                f"{', '.join(str(f) for f in available_folds) if available_folds else 'none'}. Pass those with -f, "
                f"leave -f out to use all trained folds, or finish training the missing folds.",
            )
    plans_json = load_plans(folder / "plans.json", plans, configuration, PredictionError)
    dataset_json = read_json(folder / "dataset.json", PredictionError)
    config = _configuration_chain(plans_json, configuration)
    if config.get("previous_stage"):
        raise PredictionError(
            folder,
            f"configuration {configuration} is a cascade stage (it needs the predictions of "
            f"{config['previous_stage']}); this command predicts single-stage configurations such as 3d_fullres",
        )
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    if len(channels) != 1:
        raise PredictionError(
            folder / "dataset.json",
            f"the model takes {len(channels)} input channels ({channels}); this command feeds one scan per case and "
            "supports single-channel models only (the GLUA converters write one channel)",
        )
    return TrainedModel(name, folder, trainer, plans, configuration, chosen, checkpoint, dataset_json)


@dataclass(frozen=True)
class ConversionSettings:
    """How the model's training data were converted: the transform new scans must go through.

    ``source`` is the dataset.json the settings came from; ``warnings`` list settings that were not recorded
    there and fell back to the converters' defaults.
    """

    target_modality: str
    canonical_orientation: str
    intensity: IntensitySettings
    source: Path
    warnings: tuple[str, ...] = ()


def conversion_settings(model: TrainedModel) -> ConversionSettings:
    """Read target modality, canonical orientation and intensity settings from the model's ``dataset.json``.

    The model folder's copy is used (not ``$nnUNet_raw``): it describes the data this model was trained on, and it
    is present on machines that hold only ``nnUNet_results``. Settings missing from the block fall back to the
    converters' defaults with a warning; malformed ones raise :class:`PredictionError`.
    """
    json_path = model.folder / "dataset.json"
    try:
        block = parse_glua_block(model.dataset_json, json_path)
    except UDADatasetError as err:
        raise PredictionError(err.path, err.problem) from None
    warnings: list[str] = []
    modality = str(block["target_modality"]).upper()
    if modality not in MODALITIES:
        raise PredictionError(json_path, f"glua.target_modality {block['target_modality']!r} is not one of "
                                         f"{MODALITIES}")
    orientation = block.get("canonical_orientation")
    if orientation is None:
        orientation = CANONICAL_ORIENTATION
        warnings.append(f"dataset.json records no glua.canonical_orientation; using the converters' "
                        f"{CANONICAL_ORIENTATION}")
    if not _valid_orientation_code(str(orientation)):
        raise PredictionError(json_path, f"glua.canonical_orientation {orientation!r} is not an orientation code "
                                         "such as 'LPS'")
    recorded = block.get("intensity")
    names = [f.name for f in fields(IntensitySettings)]
    if recorded is None:
        intensity = IntensitySettings()
        warnings.append("dataset.json records no glua.intensity settings; harmonising with the converters' "
                        f"defaults {intensity.to_dict()}")
    else:
        missing = [n for n in names if n not in recorded]
        if missing:
            raise PredictionError(json_path, f"glua.intensity lacks {missing}; re-run the dataset converter")
        try:
            intensity = IntensitySettings(**{n: float(recorded[n]) for n in names})
        except (TypeError, ValueError) as err:
            raise PredictionError(json_path, f"glua.intensity is invalid: {err}") from None
    return ConversionSettings(modality, str(orientation), intensity, json_path, tuple(warnings))


def _valid_orientation_code(code: str) -> bool:
    pairs = ("LR", "PA", "SI")
    return len(code) == 3 and all(sum(c in pair for c in code) == 1 for pair in pairs)


def _axial_array_axis(orientation: str) -> int:
    # numpy order is (k, j, i): letter position p of the code is array axis 2 - p
    position = next(i for i, c in enumerate(orientation) if c in "SI")
    return 2 - position


# --- the nnU-Net step ---------------------------------------------------------------------------------------------

#: ``predict_fn(input_folder, output_folder, case_ids)``: segment ``{case}_0000{ending}`` of ``input_folder`` for each
#: case id and write ``{case}{ending}`` (integer labels, same grid as the input) into ``output_folder``.
PredictFn = Callable[[Path, Path, Sequence[str]], None]


def resolve_device(device: str | None) -> str:
    """``"cuda"``, ``"cpu"`` or ``"mps"``; ``None`` picks CUDA if visible, else MPS, else CPU."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    device = str(device).lower()
    if device not in DEVICES:
        raise PredictionError(None, f"device must be one of {DEVICES}, got {device!r} (select a GPU with "
                                    "CUDA_VISIBLE_DEVICES, not with the device name)")
    if device == "cuda" and not torch.cuda.is_available():
        raise PredictionError(None, "device 'cuda' requested but no CUDA GPU is visible; use -device cpu")
    return device


@dataclass(frozen=True)
class NnUNetPrediction:
    """The default :data:`PredictFn`: one ``nnUNetPredictor`` run with the model's folds as an ensemble.

    ``num_processes_preprocessing`` / ``num_processes_export`` are nnU-Net's ``-npp`` / ``-nps``; both 0 runs
    nnU-Net's single-process path (``predict_from_files_sequential``), as ``nnUNetv2_predict`` does.
    """

    model: TrainedModel
    device: str
    step_size: float = 0.5
    use_mirroring: bool = True
    num_processes_preprocessing: int = 3
    num_processes_export: int = 3

    def __call__(self, input_folder: Path, output_folder: Path, case_ids: Sequence[str]) -> None:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_glua.paths import ensure_trainer_folder_registered

        # the checkpoints name the trainer class (e.g. GLUATrainer); nnU-Net finds the plugin's through this variable
        ensure_trainer_folder_registered()
        predictor = nnUNetPredictor(
            tile_step_size=self.step_size,
            use_gaussian=True,
            use_mirroring=self.use_mirroring,
            perform_everything_on_device=self.device == "cuda",
            device=torch.device(self.device),
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=True,
        )
        predictor.initialize_from_trained_model_folder(
            str(self.model.folder), use_folds=tuple(self.model.folds), checkpoint_name=self.model.checkpoint
        )
        ending = self.model.dataset_json["file_ending"]
        inputs = [[str(input_folder / f"{case}_0000{ending}")] for case in case_ids]
        outputs = [str(output_folder / case) for case in case_ids]
        if self.num_processes_preprocessing == 0 and self.num_processes_export == 0:
            predictor.predict_from_files_sequential(inputs, outputs, save_probabilities=False, overwrite=True)
        else:
            predictor.predict_from_files(
                inputs, outputs, save_probabilities=False, overwrite=True,
                num_processes_preprocessing=self.num_processes_preprocessing,
                num_processes_segmentation_export=self.num_processes_export,
            )


# --- per-scan work (runs in worker processes) ---------------------------------------------------------------------

@dataclass(frozen=True)
class _PrepareJob:
    scan: ScanInput
    modality: str
    intensity: IntensitySettings
    canonical_orientation: str
    image_path: Path


@dataclass(frozen=True)
class _Prepared:
    case_id: str
    reorientation: Reorientation
    intensity: IntensityRecord


def _prepare(job: _PrepareJob) -> _Prepared:
    image = read_scan(job.scan)
    canonical, reorientation = to_canonical(image, job.canonical_orientation)
    harmonised, intensity = harmonise_intensities(
        canonical, job.modality, job.intensity, job.scan.path, _axial_array_axis(job.canonical_orientation)
    )
    write_image(harmonised, job.image_path)
    return _Prepared(job.scan.case_id, reorientation, intensity)


@dataclass(frozen=True)
class _RestoreJob:
    case_id: str
    prediction_path: Path
    output_path: Path
    original: Geometry
    label_names: tuple[tuple[int, str], ...]


def _grid_problems(image: sitk.Image, geometry: Geometry) -> list[str]:
    problems = []
    if tuple(image.GetSize()) != tuple(geometry.size):
        problems.append(f"size {tuple(image.GetSize())} vs {tuple(geometry.size)}")
    checks = (("spacing", image.GetSpacing(), geometry.spacing, SPACING_TOLERANCE_MM),
              ("origin", image.GetOrigin(), geometry.origin, ORIGIN_TOLERANCE_MM),
              ("direction", image.GetDirection(), geometry.direction, DIRECTION_TOLERANCE))
    for what, got, want, tolerance in checks:
        if not np.allclose(got, want, rtol=0, atol=tolerance):
            problems.append(f"{what} {tuple(round(v, 6) for v in got)} vs {tuple(round(v, 6) for v in want)}")
    return problems


def _restore(job: _RestoreJob) -> tuple[str, dict[str, int]]:
    """Map one canonical prediction back onto its scan's grid and write it; returns (case id, voxels per label)."""
    check_nifti_complete(job.prediction_path, "prediction")
    prediction = sitk.ReadImage(str(job.prediction_path))
    restored = restore_orientation(prediction, job.original.orientation)
    problems = _grid_problems(restored, job.original)
    if problems:
        # permutation/flip is exact, so this means the prediction was not made on the harmonised image's grid
        raise ConversionError(
            job.prediction_path,
            "the prediction, re-oriented to the scan's original orientation, does not lie on the scan's voxel grid ("
            + "; ".join(problems) + "). The predictor must write each prediction on its input image's grid.",
        )
    labels = sitk.GetArrayFromImage(restored)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ConversionError(job.prediction_path, f"label values {labels.min()}..{labels.max()} do not fit uint8")
    out = sitk.GetImageFromArray(labels.astype(np.uint8, copy=False))
    # the scan's own header values, not the round-tripped ones: tolerance-level noise must not reach the output
    out.SetSpacing(job.original.spacing)
    out.SetOrigin(job.original.origin)
    out.SetDirection(job.original.direction)
    write_image(out, job.output_path)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=256)
    named = {name: int(counts[value]) for value, name in job.label_names}
    known = {value for value, _ in job.label_names}
    named.update({str(v): int(counts[v]) for v in np.flatnonzero(counts) if v != 0 and int(v) not in known})
    return job.case_id, named


# --- the work folder ----------------------------------------------------------------------------------------------

def _file_fingerprint(scan: ScanInput) -> list[list[Any]]:
    out = []
    for f in scan.files():
        st = f.stat()
        out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _json_ready(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _read_json(path: Path) -> dict | None:
    """The JSON object stored at ``path``; ``None`` if it is missing, unreadable or not an object (a record of an
    interrupted run that cannot be trusted is ignored, not an error)."""
    try:
        data = read_json(path)
    except PathError:
        return None
    return data if isinstance(data, dict) else None


def _prediction_complete(path: Path) -> bool:
    try:
        check_nifti_complete(path, "prediction")
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except (ConversionError, RuntimeError):
        return False
    return True


def _reusable_predictions(work: Path, model_key: dict, case_keys: Mapping[str, dict], ending: str,
                          fresh: bool) -> set[str]:
    """Cases whose canonical prediction from an interrupted earlier run is still valid; stale files are removed."""
    predictions = work / "predictions"
    previous = None if fresh else _read_json(work / _STATE_JSON)
    if previous is None or previous.get("model") != model_key:
        shutil.rmtree(predictions, ignore_errors=True)
        return set()
    reusable = set()
    for case, key in case_keys.items():
        path = predictions / f"{case}{ending}"
        if not path.is_file():
            continue
        if previous.get("cases", {}).get(case) == key and _prediction_complete(path):
            reusable.add(case)
        else:
            path.unlink()
    return reusable


def _write_state(work: Path, model_key: dict, case_keys: Mapping[str, dict]) -> None:
    previous = _read_json(work / _STATE_JSON) or {}
    cases = dict(previous.get("cases", {})) if previous.get("model") == model_key else {}
    cases.update(case_keys)
    write_json({"model": model_key, "cases": cases}, work / _STATE_JSON)


# --- the run ------------------------------------------------------------------------------------------------------

def _label_names(dataset_json: Mapping[str, Any]) -> tuple[tuple[int, str], ...]:
    names = []
    for name, value in dataset_json.get("labels", {}).items():
        if isinstance(value, int) and value != 0:
            names.append((value, str(name)))
    return tuple(sorted(names))


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
    value = os.environ.get(name)
    return int(value) if value else default


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

    lock = FileLock(str(output / _LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise PredictionError(output, f"another glua_predict_scans run is writing to this folder (lock "
                                      f"{_LOCK_NAME}); wait for it to finish or choose another output folder") from None
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
        _write_predictions_json(output, scans, entries, model_record, settings, modality, step_size, disable_tta,
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

    def report_warnings(prepared: _Prepared, bar: tqdm) -> None:
        for warning in prepared.intensity.warnings:
            bar.write(f"WARNING {prepared.case_id}: {warning}")

    jobs = [_PrepareJob(s, modality, settings.intensity, settings.canonical_orientation,
                        images / f"{s.case_id}_0000{ending}") for s in pending]
    prepared = run_jobs(_prepare, jobs, workers, "reorienting + harmonising", "scan", report_warnings)

    case_keys = {
        s.case_id: _json_ready({"files": _file_fingerprint(s), "modality": modality,
                                "intensity": settings.intensity.to_dict(),
                                "canonical_orientation": settings.canonical_orientation})
        for s in pending
    }
    model_key = _json_ready({**model.key(), "step_size": float(step_size), "mirroring": not disable_tta})
    reused = _reusable_predictions(work, model_key, case_keys, ending, fresh=overwrite)
    _write_state(work, model_key, case_keys)
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

    label_names = _label_names(model.dataset_json)
    restore_jobs = [_RestoreJob(p.case_id, predictions / f"{p.case_id}{ending}",
                                output / f"{p.case_id}{OUTPUT_SUFFIX}", p.reorientation.original, label_names)
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
            "created": _now(),
        }

    run_jobs(_restore, restore_jobs, workers, "restoring original geometry", "scan", record)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_predictions_json(output: Path, scans: Sequence[ScanInput], entries: Mapping[str, dict],
                            model_record: Mapping[str, Any], settings: ConversionSettings, modality: str,
                            step_size: float, disable_tta: bool, device: str | None) -> None:
    previous = _read_json(output / PREDICTIONS_JSON) or {}
    cases: dict[str, Any] = dict(previous.get("cases", {})) if isinstance(previous.get("cases"), dict) else {}
    for scan in scans:
        if scan.case_id in entries:
            cases[scan.case_id] = entries[scan.case_id]
        elif scan.case_id not in cases and (output / f"{scan.case_id}{OUTPUT_SUFFIX}").exists():
            # segmented before this command recorded anything here: say so rather than invent a record
            cases[scan.case_id] = {
                "input": str(scan.path.resolve()),
                "output": f"{scan.case_id}{OUTPUT_SUFFIX}",
                "skipped": "the output existed before this run; how it was made is not recorded",
            }
    record = {
        "format_version": FORMAT_VERSION,
        "created": _now(),
        "nnunet_glua_version": nnunet_glua.__version__,
        **model_record,
        "step_size": float(step_size),
        "test_time_mirroring": not disable_tta,
        "device": device,
        "modality": modality,
        "canonical_orientation": settings.canonical_orientation,
        "intensity_settings": settings.intensity.to_dict(),
        "settings_source": str(settings.source),
        "settings_warnings": list(settings.warnings),
        "output_geometry": "each output has its scan's size, spacing, origin and direction (uint8 labels)",
        "cases": dict(sorted(cases.items())),
    }
    write_json(record, output / PREDICTIONS_JSON)


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
