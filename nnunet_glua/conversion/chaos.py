"""Reader for the CHAOS MR T2-SPIR training data: one DICOM series plus one PNG mask per DICOM file.

Public layout (as unpacked from ``CHAOS_Train_Sets.zip``)::

    CHAOS_Train_Sets/Train_Sets/MR/<id>/T2SPIR/DICOM_anon/IMG-0004-00001.dcm ...
    CHAOS_Train_Sets/Train_Sets/MR/<id>/T2SPIR/Ground/IMG-0004-00001.png ...

Every DICOM file is a single-frame slice; its mask is the PNG with the same file stem, and PNG pixel
``(row, col)`` belongs to DICOM ``pixel_array[row, col]``. File names and InstanceNumbers do not reliably
follow the slice order, so each PNG is tied to its DICOM by stem first and the pairs are then sorted by
position along the slice normal. pydicom is used instead of SimpleITK's series reader because the latter
hides which file became which slice, which is exactly what the mask pairing needs.

This module only reads: it keeps the scanner's orientation (reorientation and label mapping happen in the
converter) and validates the series so that a broken download fails loudly instead of producing a volume
with misplaced slices.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from PIL import Image
from pydicom.errors import InvalidDicomError

from nnunet_glua.conversion.errors import ConversionError

T2SPIR_FOLDER = "T2SPIR"
DICOM_FOLDER = "DICOM_anon"
MASK_FOLDER = "Ground"

# Slice spacing tolerance: a step may differ from the median step by max(1 %, 0.01 mm). Real CHAOS headers
# store positions with a few decimals, so an exact comparison would reject valid series.
_STEP_RTOL = 0.01
_STEP_ATOL_MM = 0.01
# Per-component tolerance on direction cosines across slices (about 0.006 degrees).
_ORIENTATION_ATOL = 1e-4
# How far ImageOrientationPatient may be from two orthogonal unit vectors before the header is rejected.
_ORTHONORMAL_ATOL = 1e-3
# Relative tolerance on PixelSpacing across slices.
_PIXEL_SPACING_RTOL = 1e-4

_REQUIRED_TAGS = (
    "SeriesInstanceUID",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelData",
)

_MAX_NAMES_IN_MESSAGE = 5


@dataclass
class _DicomSlice:
    """One parsed DICOM file with the header values the volume geometry depends on."""

    path: Path
    mask_path: Path
    dataset: pydicom.Dataset
    series_uid: str
    rows: int
    columns: int
    pixel_spacing: np.ndarray  # (row spacing, column spacing) in mm, as stored in PixelSpacing
    orientation: np.ndarray  # (6,) row direction cosine then column direction cosine
    position: np.ndarray  # (3,) ImagePositionPatient in mm (LPS patient coordinates)


# --------------------------------------------------------------------------------------------------------
# patient discovery
# --------------------------------------------------------------------------------------------------------


def _patient_folders(mr_dir: Path) -> dict[int, Path]:
    """Numeric sub-folders of ``mr_dir`` that hold a ``T2SPIR`` folder, keyed by patient id."""
    found: dict[int, Path] = {}
    for child in sorted(mr_dir.iterdir()):
        if not (child.is_dir() and child.name.isdigit()):
            continue
        t2 = child / T2SPIR_FOLDER
        if not t2.is_dir():
            warnings.warn(
                f"{child}: patient folder has no {T2SPIR_FOLDER} sub-folder and is skipped; "
                f"re-extract CHAOS_Train_Sets.zip if this patient should be included",
                stacklevel=3,
            )
            continue
        pid = int(child.name)
        if pid in found:
            raise ConversionError(
                child,
                f"patient id {pid} appears twice ({found[pid].parent.name} and {child.name}); "
                f"remove one of the two folders",
            )
        found[pid] = t2
    return found


def list_chaos_patients(chaos_root: str | os.PathLike) -> dict[int, Path]:
    """Find the CHAOS MR patients that have a T2-SPIR series.

    ``chaos_root`` may point at the CHAOS root (``CHAOS_Train_Sets``, holding ``Train_Sets``), at
    ``Train_Sets`` (holding ``MR``), at ``Train_Sets/MR`` itself, or at the folder holding
    ``CHAOS_Train_Sets``. Returns ``{patient id: .../Train_Sets/MR/<id>/T2SPIR}`` sorted by id. Numeric
    patient folders without a ``T2SPIR`` sub-folder are skipped with a warning.

    Raises :class:`ConversionError` if ``chaos_root`` does not exist or holds no patient.
    """
    root = Path(chaos_root)
    if not root.is_dir():
        raise ConversionError(
            root, "CHAOS folder does not exist or is not a folder; pass the unpacked CHAOS_Train_Sets folder"
        )
    candidates = (
        root / "Train_Sets" / "MR",
        root / "MR",
        root,
        root / "CHAOS_Train_Sets" / "Train_Sets" / "MR",
    )
    for mr_dir in candidates:
        if not mr_dir.is_dir():
            continue
        patients = _patient_folders(mr_dir)
        if patients:
            return dict(sorted(patients.items()))
    raise ConversionError(
        root,
        f"no CHAOS MR patient found; expected Train_Sets/MR/<id>/{T2SPIR_FOLDER} below this folder "
        f"(point at the unpacked CHAOS_Train_Sets folder, its Train_Sets or its Train_Sets/MR folder)",
    )


# --------------------------------------------------------------------------------------------------------
# file pairing
# --------------------------------------------------------------------------------------------------------


def _numbers(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _name_list(paths: Sequence[Path]) -> str:
    names = [p.name for p in paths[:_MAX_NAMES_IN_MESSAGE]]
    more = len(paths) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _files_by_stem(folder: Path, suffix: str) -> dict[str, Path]:
    """Files ``*<suffix>`` (any letter case) in ``folder`` keyed by stem.

    Hidden files are skipped: macOS archive tools leave a ``._<name>`` shadow next to every real file.
    """
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != suffix or not path.is_file():
            continue
        if path.stem in by_stem:
            raise ConversionError(
                path,
                f"has the same stem as {by_stem[path.stem].name}; keep only one of the two files",
            )
        by_stem[path.stem] = path
    return by_stem


def _paired_files(patient_dir: Path) -> list[tuple[Path, Path]]:
    """(DICOM file, PNG mask) pairs of a T2SPIR folder, matched by file stem, in file-name order."""
    if not patient_dir.is_dir():
        raise ConversionError(patient_dir, "T2SPIR folder does not exist or is not a folder")
    dicom_dir = patient_dir / DICOM_FOLDER
    mask_dir = patient_dir / MASK_FOLDER
    if not dicom_dir.is_dir():
        hint = (
            f"; this looks like a patient folder, pass its {T2SPIR_FOLDER} sub-folder"
            if (patient_dir / T2SPIR_FOLDER).is_dir()
            else f"; pass the .../MR/<id>/{T2SPIR_FOLDER} folder of an unpacked CHAOS training set"
        )
        raise ConversionError(dicom_dir, f"DICOM folder is missing{hint}")
    if not mask_dir.is_dir():
        raise ConversionError(
            mask_dir,
            "mask folder is missing; the CHAOS training set ships one PNG per DICOM file there, "
            "re-extract CHAOS_Train_Sets.zip",
        )
    dicoms = _files_by_stem(dicom_dir, ".dcm")
    if not dicoms:
        raise ConversionError(dicom_dir, "holds no *.dcm file; re-extract CHAOS_Train_Sets.zip")
    masks = _files_by_stem(mask_dir, ".png")

    without_mask = [dicoms[s] for s in dicoms if s not in masks]
    if without_mask:
        raise ConversionError(
            without_mask[0],
            f"has no mask {mask_dir / (without_mask[0].stem + '.png')}; {len(without_mask)} DICOM file(s) "
            f"without a PNG of the same name: {_name_list(without_mask)}. Restore the missing masks or "
            f"re-extract CHAOS_Train_Sets.zip",
        )
    without_dicom = [masks[s] for s in masks if s not in dicoms]
    if without_dicom:
        raise ConversionError(
            without_dicom[0],
            f"has no DICOM file {dicom_dir / (without_dicom[0].stem + '.dcm')}; {len(without_dicom)} PNG "
            f"mask(s) without a DICOM file of the same name: {_name_list(without_dicom)}. Restore the missing "
            f"DICOM files or remove the stray masks",
        )
    return [(dicoms[s], masks[s]) for s in dicoms]


# --------------------------------------------------------------------------------------------------------
# DICOM headers and geometry
# --------------------------------------------------------------------------------------------------------


def _float_values(path: Path, ds: pydicom.Dataset, keyword: str, count: int) -> np.ndarray:
    value = ds.get(keyword)
    try:
        values = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        values = np.asarray([], dtype=np.float64)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise ConversionError(
            path, f"{keyword} must hold {count} finite numbers, found {value!r}; the header is corrupt"
        )
    return values


def _read_slice(dicom_path: Path, mask_path: Path) -> _DicomSlice:
    """Read one DICOM file (header and pixel data) and parse the geometry tags."""
    try:
        ds = pydicom.dcmread(dicom_path)
    except InvalidDicomError as exc:
        raise ConversionError(dicom_path, f"is not a DICOM file ({exc}); re-extract CHAOS_Train_Sets.zip") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ConversionError(
            dicom_path, f"cannot be read as DICOM ({type(exc).__name__}: {exc}); the file is damaged, re-extract it"
        ) from exc
    missing = [tag for tag in _REQUIRED_TAGS if tag not in ds]
    if missing:
        raise ConversionError(
            dicom_path,
            f"lacks the required DICOM tag(s) {', '.join(missing)} (a truncated file also shows this); "
            f"re-extract the file from CHAOS_Train_Sets.zip",
        )
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows < 1 or columns < 1:
        raise ConversionError(dicom_path, f"has an empty image ({rows} rows x {columns} columns)")
    pixel_spacing = _float_values(dicom_path, ds, "PixelSpacing", 2)
    if np.any(pixel_spacing <= 0):
        raise ConversionError(dicom_path, f"PixelSpacing must be positive, found {_numbers(pixel_spacing)}")
    return _DicomSlice(
        path=dicom_path,
        mask_path=mask_path,
        dataset=ds,
        series_uid=str(ds.SeriesInstanceUID),
        rows=rows,
        columns=columns,
        pixel_spacing=pixel_spacing,
        orientation=_float_values(dicom_path, ds, "ImageOrientationPatient", 6),
        position=_float_values(dicom_path, ds, "ImagePositionPatient", 3),
    )


def _check_single_series(slices: Sequence[_DicomSlice], dicom_dir: Path) -> None:
    by_uid: dict[str, list[Path]] = defaultdict(list)
    for s in slices:
        by_uid[s.series_uid].append(s.path)
    if len(by_uid) > 1:
        described = "; ".join(f"{uid} ({len(paths)} files, e.g. {paths[0].name})" for uid, paths in by_uid.items())
        raise ConversionError(
            dicom_dir,
            f"holds {len(by_uid)} DICOM series (SeriesInstanceUIDs: {described}); "
            f"a {T2SPIR_FOLDER} folder must hold exactly one series, move the other files out",
        )


def _check_consistent(slices: Sequence[_DicomSlice]) -> None:
    """Every slice must share the first slice's matrix size, pixel spacing and orientation."""
    ref = slices[0]
    for s in slices[1:]:
        if (s.rows, s.columns) != (ref.rows, ref.columns):
            raise ConversionError(
                s.path,
                f"has {s.rows} rows x {s.columns} columns but {ref.path.name} has {ref.rows} x {ref.columns}; "
                f"all slices of a series must have the same size, remove the foreign file",
            )
        if not np.allclose(s.pixel_spacing, ref.pixel_spacing, rtol=_PIXEL_SPACING_RTOL, atol=0.0):
            raise ConversionError(
                s.path,
                f"has PixelSpacing {_numbers(s.pixel_spacing)} but {ref.path.name} has "
                f"{_numbers(ref.pixel_spacing)}; "
                f"all slices of a series must share one pixel spacing, remove the foreign file",
            )
        if not np.allclose(s.orientation, ref.orientation, rtol=0.0, atol=_ORIENTATION_ATOL):
            raise ConversionError(
                s.path,
                f"has ImageOrientationPatient {_numbers(s.orientation)} but {ref.path.name} has "
                f"{_numbers(ref.orientation)}; all slices of a series must share one orientation, "
                f"remove the foreign file",
            )


def _in_plane_axes(orientation: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal (row direction, column direction, slice normal) from ImageOrientationPatient.

    The row direction is the direction of increasing column index (sitk x axis), the column direction that of
    increasing row index (sitk y axis); normal = row x column, so the three form a right-handed frame.
    """
    row, col = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row) - 1.0) > _ORTHONORMAL_ATOL
        or abs(np.linalg.norm(col) - 1.0) > _ORTHONORMAL_ATOL
        or abs(float(row @ col)) > _ORTHONORMAL_ATOL
    ):
        raise ConversionError(
            path,
            f"ImageOrientationPatient {_numbers(orientation)} is not two orthogonal unit vectors; "
            f"the header is corrupt",
        )
    # Headers store the cosines rounded to a few decimals; make the frame exactly orthonormal so that
    # NIfTI writers and DICOMOrient accept the direction matrix.
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _step_problem(step: float, median: float) -> str:
    ratio = step / median
    missing = round(ratio) - 1
    if missing >= 1 and abs(step - round(ratio) * median) <= max(_STEP_ATOL_MM, _STEP_RTOL * median):
        return f"{missing} slice(s) seem to be missing between them"
    return "the slice spacing is irregular"


def _sorted_along_normal(
    slices: Sequence[_DicomSlice], normal: np.ndarray, patient_dir: Path
) -> tuple[list[_DicomSlice], float]:
    """Sort slices by position along ``normal`` (ascending) and return them with the slice spacing in mm.

    Checks that the slices are evenly spaced, that no two share a position, and that the stack is not
    sheared (each slice lies on the line origin + t * normal, as it must when the third axis of the
    direction matrix is the normal).
    """
    if len(slices) < 2:
        raise ConversionError(
            patient_dir / DICOM_FOLDER,
            f"holds a single slice ({slices[0].path.name}); a 3D volume needs at least two, re-extract the series",
        )
    ordered = sorted(slices, key=lambda s: (float(s.position @ normal), s.path.name))
    heights = np.asarray([float(s.position @ normal) for s in ordered])
    steps = np.diff(heights)
    median = float(np.median(steps))
    tolerance = max(_STEP_ATOL_MM, _STEP_RTOL * median)

    for k, step in enumerate(steps):
        if step <= tolerance:
            raise ConversionError(
                ordered[k + 1].path,
                f"shares its slice position ({heights[k + 1]:.4f} mm along the slice normal) with "
                f"{ordered[k].path.name} in {patient_dir}; remove the duplicate slice",
            )
    for k, step in enumerate(steps):
        if abs(step - median) > tolerance:
            raise ConversionError(
                patient_dir,
                f"slices {ordered[k].path.name} and {ordered[k + 1].path.name} are {step:.4f} mm apart while "
                f"the usual step is {median:.4f} mm: {_step_problem(step, median)}; restore missing slices or "
                f"remove foreign DICOM files (each with its mask)",
            )

    origin = ordered[0].position
    for s in ordered[1:]:
        offset = s.position - origin
        along = float(offset @ normal)
        across = float(np.linalg.norm(offset - along * normal))
        if across > max(_STEP_ATOL_MM, _STEP_RTOL * along):
            raise ConversionError(
                s.path,
                f"is shifted {across:.4f} mm within the slice plane relative to {ordered[0].path.name} "
                f"(a sheared stack, e.g. gantry tilt); such series must be resampled before conversion, "
                f"which this reader does not do",
            )
    return ordered, median


# --------------------------------------------------------------------------------------------------------
# pixel data
# --------------------------------------------------------------------------------------------------------


def _pixels(s: _DicomSlice) -> np.ndarray:
    """Slice intensities as float32 (rows, columns), rescale slope and intercept applied."""
    try:
        stored = s.dataset.pixel_array
    except Exception as exc:  # decoding errors come as ValueError, AttributeError, RuntimeError, ...
        raise ConversionError(
            s.path,
            f"pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is truncated or damaged "
            f"(re-extract it), or compressed in a format pydicom cannot decode here (decompress it, e.g. "
            f"with `gdcmconv --raw`, or install pylibjpeg)",
        ) from exc
    if stored.shape != (s.rows, s.columns):
        raise ConversionError(
            s.path,
            f"pixel data has shape {stored.shape}, expected one grey-value frame of {s.rows} x {s.columns}; "
            f"only single-frame monochrome slices are supported",
        )
    # absent (or empty) tags mean the stored values are the intensities
    slope_value, intercept_value = s.dataset.get("RescaleSlope"), s.dataset.get("RescaleIntercept")
    try:
        slope = 1.0 if slope_value in (None, "") else float(slope_value)
        intercept = 0.0 if intercept_value in (None, "") else float(intercept_value)
    except (TypeError, ValueError):
        slope = intercept = math.nan
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0.0:
        raise ConversionError(
            s.path,
            f"RescaleSlope {slope_value!r} / RescaleIntercept {intercept_value!r} are not usable numbers "
            f"(a zero slope would erase the image); the header is corrupt",
        )
    # float64 arithmetic avoids rounding the product of large stored values before the final cast
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def _grey_channel(channels: np.ndarray, has_alpha: bool, path: Path, mode: str) -> np.ndarray:
    """The single grey channel of a (rows, cols, C) mask; colour and alpha must not carry information."""
    colour = channels[..., :-1] if has_alpha else channels
    grey = colour[..., 0]
    if np.any(colour != grey[..., None]):
        raise ConversionError(
            path,
            f"has PNG mode {mode!r} and its colour channels differ, so the label of a pixel is ambiguous; "
            f"save the mask as 8-bit greyscale",
        )
    if has_alpha:
        alpha = channels[..., -1]
        # an opaque alpha or an alpha that merely repeats the grey value adds no information
        if not (np.all(alpha == 255) or np.array_equal(alpha, grey)):
            raise ConversionError(
                path,
                f"has PNG mode {mode!r} with a transparency that differs from its grey values, so the label of a "
                f"pixel is ambiguous; save the mask as 8-bit greyscale",
            )
    return grey


def _read_mask(path: Path, rows: int, columns: int, dicom_path: Path) -> np.ndarray:
    """PNG mask as uint8 (rows, columns), values exactly as stored."""
    try:
        # verify() checks chunk CRCs and completeness regardless of Pillow's global LOAD_TRUNCATED_IMAGES
        with Image.open(path) as probe:
            probe.verify()
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA")
            array = np.asarray(img)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error for damaged files
        raise ConversionError(
            path, f"cannot be read as a PNG image ({type(exc).__name__}: {exc}); the file is damaged, re-extract it"
        ) from exc

    if mode == "L":
        mask = array
    elif mode in ("RGB", "RGBA", "LA", "P"):
        mask = _grey_channel(array, has_alpha=mode in ("RGBA", "LA", "P"), path=path, mode=mode)
    elif mode in ("I", "I;16", "I;16B", "I;16L") and array.size and 0 <= array.min() and array.max() <= 255:
        # a 16/32-bit greyscale PNG holding 8-bit values loses nothing when narrowed
        mask = array
    else:
        raise ConversionError(
            path,
            f"has PNG mode {mode!r}{' with values outside 0..255' if mode.startswith('I') else ''}; "
            f"CHAOS masks are 8-bit greyscale (mode 'L'), save the mask in that format",
        )
    if mask.shape != (rows, columns):
        raise ConversionError(
            path,
            f"is {mask.shape[0]} rows x {mask.shape[1]} columns but its DICOM {dicom_path.name} is "
            f"{rows} x {columns}; each mask must match its slice pixel for pixel",
        )
    return mask.astype(np.uint8)


# --------------------------------------------------------------------------------------------------------
# public reader
# --------------------------------------------------------------------------------------------------------


def load_chaos_t2spir(patient_dir: str | os.PathLike) -> tuple[sitk.Image, sitk.Image]:
    """Read one CHAOS T2-SPIR series and its masks as two 3D SimpleITK images with identical geometry.

    ``patient_dir`` is a ``.../MR/<id>/T2SPIR`` folder holding ``DICOM_anon/*.dcm`` (one single-frame slice
    per file) and ``Ground/*.png`` (one mask per DICOM file, same file stem).

    Returns ``(image, mask)``:

    * ``image``: float32, stored values with RescaleSlope/RescaleIntercept applied (MR arbitrary units).
    * ``mask``: uint8, PNG values exactly as stored (CHAOS uses 0 background and grey values around
      63 liver, 126 right kidney, 189 left kidney, 252 spleen; mapping them to labels happens elsewhere).

    Geometry, in the scanner's orientation (nothing is reoriented or resampled): index x = DICOM column,
    y = DICOM row, z = slice sorted by ascending position along the slice normal
    (normal = row cosine x column cosine). Spacing = (PixelSpacing[1], PixelSpacing[0], median slice step)
    in mm; origin = ImagePositionPatient of the first sorted slice; direction columns = row cosine, column
    cosine, slice normal (which equals the direction of the slice steps within tolerance, and keeps the
    matrix orthonormal).

    Raises :class:`ConversionError` naming the file or folder at fault for: missing ``DICOM_anon`` or
    ``Ground`` folders, an empty DICOM folder, DICOM files without a PNG and PNGs without a DICOM,
    unreadable or truncated files, missing geometry tags, several series in one folder, slices that differ
    in size, pixel spacing or orientation, duplicate slice positions, missing slices or irregular spacing,
    sheared stacks, and masks whose size differs from their slice. A Modality other than MR only warns.
    """
    patient_dir = Path(patient_dir)
    pairs = _paired_files(patient_dir)
    slices = [_read_slice(dicom_path, mask_path) for dicom_path, mask_path in pairs]
    _check_single_series(slices, patient_dir / DICOM_FOLDER)

    modalities = sorted({str(s.dataset.get("Modality", "")) for s in slices} - {"", "MR"})
    if modalities:
        warnings.warn(
            f"{patient_dir / DICOM_FOLDER}: Modality is {', '.join(modalities)}, expected MR for a CHAOS "
            f"T2-SPIR series; reading it anyway",
            stacklevel=2,
        )
    _check_consistent(slices)
    row_dir, col_dir, normal = _in_plane_axes(slices[0].orientation, slices[0].path)
    ordered, slice_spacing = _sorted_along_normal(slices, normal, patient_dir)

    rows, columns = ordered[0].rows, ordered[0].columns
    volume = np.empty((len(ordered), rows, columns), dtype=np.float32)
    masks = np.empty((len(ordered), rows, columns), dtype=np.uint8)
    for k, s in enumerate(ordered):
        volume[k] = _pixels(s)
        masks[k] = _read_mask(s.mask_path, rows, columns, s.path)

    image = sitk.GetImageFromArray(volume)  # numpy (z, row, column) -> sitk (x=column, y=row, z)
    row_spacing, column_spacing = ordered[0].pixel_spacing
    image.SetSpacing((float(column_spacing), float(row_spacing), slice_spacing))
    image.SetOrigin(tuple(float(v) for v in ordered[0].position))
    # sitk's direction is row-major with one column per image axis
    image.SetDirection(tuple(float(v) for v in np.column_stack([row_dir, col_dir, normal]).ravel()))
    mask = sitk.GetImageFromArray(masks)
    mask.CopyInformation(image)
    return image, mask


__all__ = ["list_chaos_patients", "load_chaos_t2spir", "T2SPIR_FOLDER", "DICOM_FOLDER", "MASK_FOLDER"]
