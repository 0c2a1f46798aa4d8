"""Which scans a run segments and how each is read: the scans named by the user's paths, checked before any work.

Inputs are NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``, ``.mhd``) files,
folders holding one DICOM series (slices ordered by position), or folders of such files and series folders
(expanded one level deep). :func:`discover_inputs` turns paths into :class:`ScanInput` s with unique case ids,
:func:`check_scan_header` checks a scan from its header alone (3D, one channel, more than one slice on every axis),
:func:`read_scan` reads it (refusing DICOM series with missing or unevenly spaced slices). Every problem is a
:class:`~nnunet_glua.conversion.errors.ConversionError` naming the file or folder.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.inference.output_layout import OUTPUT_SUFFIX, WORK_FOLDER_NAME
from nnunet_glua.volume_io import read_volume

__all__ = ["VOLUME_SUFFIXES", "ScanInput", "check_scan_header", "discover_inputs", "read_scan"]

#: file suffixes read as volumes (lower case; ``.nii.gz`` before ``.nii`` so the longest suffix wins)
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


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
        image = read_volume(scan.path, "scan", ConversionError)
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
