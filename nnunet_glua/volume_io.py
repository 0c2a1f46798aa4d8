"""Reading and checking volume files: the one volume reader of every command (converters, prediction, evaluation).

ITK reads two kinds of damaged NIfTI file without a word: a truncated ``.nii.gz`` comes back with its missing
voxels set to 0, and the NaN voxels of a float NIfTI come back as 0 too. Either would change a result silently (a
wrong Dice, a shifted intensity normalisation), so every NIfTI file is checked from its own bytes before ITK reads
it; volumes of other formats keep their NaN voxels through ITK and are checked after reading.

Every function raises ``error(path, problem)``, a :class:`~nnunet_glua.errors.PathError` subclass chosen by the
caller, so each command keeps its own error type (``ConversionError``, ``EvaluationError``, ...). ``what`` names
the file's role in the messages ("image", "label", "prediction", ...).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

from nnunet_glua.errors import PathError

__all__ = ["NIFTI_ENDINGS", "check_nifti_file", "count_non_finite", "read_volume", "require_finite"]

NIFTI_ENDINGS = (".nii", ".nii.gz")
# NIfTI-2's header is 540 bytes, NIfTI-1's 348: reading 540 covers both
_HEADER_BYTES = 540
_CHUNK_BYTES = 1 << 22
# NIfTI datatype codes of the float types ITK reads (complex types are not scalar volumes and are refused anyway)
_FLOAT_DATATYPES = {16: "f4", 64: "f8"}
_FIX_ADVICE = "re-download or re-export it"


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a NIfTI file's voxels are: ``data_offset`` bytes into the (decompressed) file, ``data_bytes`` long;
    ``float_dtype`` is set when they are floats, which may be NaN or infinite."""

    data_offset: int
    data_bytes: int
    voxels: int
    float_dtype: "np.dtype | None"

    @property
    def expected_bytes(self) -> int:
        return self.data_offset + self.data_bytes


def _nifti_layout(header: bytes) -> _NiftiLayout | None:
    """The voxel layout announced by a NIfTI-1/-2 header (either byte order); ``None`` if it is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1 : dims[0] + 1]]))
    code = _FLOAT_DATATYPES.get(int(datatype))
    float_dtype = np.dtype(endian + code) if code is not None and bitpix == 8 * np.dtype(code).itemsize else None
    return _NiftiLayout(int(offset), voxels * int(bitpix) // 8, voxels, float_dtype)


class _NonFiniteCounter:
    """Counts NaN and infinite float voxels of a NIfTI file fed to it in consecutive chunks of its bytes."""

    def __init__(self, layout: _NiftiLayout):
        self._layout = layout
        self._dtype = layout.float_dtype
        self._carry = b""  # bytes of a voxel split between two chunks
        self.count = 0

    def feed(self, chunk: bytes, start: int) -> None:
        """Take ``chunk``, the file's bytes from position ``start`` on (chunks must come in file order)."""
        begin = max(self._layout.data_offset - start, 0)
        end = min(self._layout.expected_bytes - start, len(chunk))
        if end <= begin:
            return
        data = self._carry + chunk[begin:end]
        whole = len(data) - len(data) % self._dtype.itemsize
        self._carry = data[whole:]
        self.count += count_non_finite(np.frombuffer(data, self._dtype, whole // self._dtype.itemsize))


def _open_nifti(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_ENDINGS)


def count_non_finite(array: np.ndarray) -> int:
    """Number of NaN or infinite values in ``array`` (0 for integer and boolean arrays)."""
    if not np.issubdtype(array.dtype, np.inexact):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def require_finite(array: np.ndarray, path: "str | os.PathLike | None", what: str = "image",
                   error: type[PathError] = PathError) -> None:
    """Raise ``error`` naming ``path`` and how many voxels of ``array`` are NaN or infinite, if any are."""
    bad = count_non_finite(array)
    if bad:
        raise error(path, _non_finite_problem(what, bad, array.size))


def _non_finite_problem(what: str, bad: int, total: int) -> str:
    return (f"{what} holds {bad} NaN or infinite voxel{'s' if bad != 1 else ''} (of {total}); replace them with a "
            f"valid value (e.g. the background intensity) and re-export the file")


def check_nifti_file(path: "str | os.PathLike", what: str = "image", error: type[PathError] = PathError) -> None:
    """Raise ``error`` if a ``.nii``/``.nii.gz`` file is truncated, its gzip stream is corrupt, or it holds NaN or
    infinite voxels; files of other formats are not looked at.

    The file is decompressed once and its length compared with what its header announces; float voxels are
    counted on the way.
    """
    path = Path(path)
    if not _is_nifti(path):
        return
    try:
        with _open_nifti(path) as stream:
            header = stream.read(_HEADER_BYTES)
            layout = _nifti_layout(header)
            counter = _NonFiniteCounter(layout) if layout is not None and layout.float_dtype is not None else None
            total = 0
            chunk = header
            while chunk:
                if counter is not None:
                    counter.feed(chunk, total)
                total += len(chunk)
                chunk = stream.read(_CHUNK_BYTES)
    except (OSError, EOFError, zlib.error) as err:
        raise error(path, f"{what} file is truncated or corrupt ({err}); {_FIX_ADVICE}") from None
    if layout is None:
        return
    if total < layout.expected_bytes:
        raise error(
            path, f"{what} file is truncated: its header announces {layout.expected_bytes} bytes of header and "
            f"voxels, the file holds {total}; {_FIX_ADVICE}"
        )
    if counter is not None and counter.count:
        raise error(path, _non_finite_problem(what, counter.count, layout.voxels))


def read_volume(path: "str | os.PathLike", what: str = "image", error: type[PathError] = PathError) -> sitk.Image:
    """Read one 3D scalar volume from ``path`` (any format SimpleITK reads; NIfTI checked with
    :func:`check_nifti_file` first).

    Returns the image as stored (no reorientation, original pixel type). Raises ``error`` naming ``path`` if the
    file is missing, truncated, unreadable, not 3D, has several components per voxel, or holds NaN or infinite
    voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise error(path, f"{what} file does not exist")
    check_nifti_file(path, what, error)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        detail = " ".join(str(err).split())[-300:]
        raise error(path, f"cannot read {what} file (truncated or corrupt? {_FIX_ADVICE}): {detail}") from None
    if image.GetDimension() != 3:
        raise error(path, f"{what} is {image.GetDimension()}D with size {image.GetSize()}; a 3D volume is required")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise error(
            path, f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume "
            "is required"
        )
    if not _is_nifti(path):
        require_finite(sitk.GetArrayViewFromImage(image), path, what, error)
    return image
