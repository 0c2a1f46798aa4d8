"""The volume reader every command shares: truncated, corrupt and NaN-holding NIfTI files are refused by name."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_glua import volume_io
from nnunet_glua.errors import PathError
from nnunet_glua.volume_io import check_nifti_file, count_non_finite, read_volume


class StageError(PathError):
    """Stands for a command's own error type (ConversionError, EvaluationError, ...)."""


def _volume(dtype=np.float32) -> np.ndarray:
    return np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6).astype(dtype)


def _with_non_finite(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array[0, 0, :3] = np.nan
    array[1, 2, 3], array[3, 4, 5] = np.inf, -np.inf
    return array


def _write_sitk(array: np.ndarray, path: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), path.suffix == ".gz")
    return path


def test_a_clean_volume_is_read_as_stored(tmp_path: Path) -> None:
    path = _write_sitk(_volume(np.int16), tmp_path / "scan.nii.gz")
    image = read_volume(path, "scan", StageError)
    assert image.GetSize() == (6, 5, 4) and image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), _volume(np.int16))


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii"])
def test_truncated_nifti_is_refused_by_name(tmp_path: Path, name: str) -> None:
    path = _write_sitk(_volume(), tmp_path / name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StageError) as err:
        read_volume(path, "prediction", StageError)
    assert err.value.path == str(path) and "prediction file is truncated" in err.value.problem


def test_corrupt_gzip_stream_is_refused(tmp_path: Path) -> None:
    path = _write_sitk(_volume(), tmp_path / "scan.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StageError, match="truncated or corrupt"):
        check_nifti_file(path, "image", StageError)


def test_nan_voxels_of_a_nifti_are_counted_although_itk_reads_them_as_zero(tmp_path: Path) -> None:
    path = _write_sitk(_with_non_finite(_volume()), tmp_path / "scan.nii.gz")
    assert count_non_finite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))) == 0  # what ITK alone would see
    with pytest.raises(StageError) as err:
        read_volume(path, "image", StageError)
    assert err.value.path == str(path)
    assert "image holds 5 NaN or infinite voxels (of 120)" in err.value.problem


@pytest.mark.parametrize("header", [nib.Nifti1Header, nib.Nifti2Header])
@pytest.mark.parametrize("endianness", ["<", ">"])
def test_nan_voxels_are_found_in_nifti1_and_nifti2_of_either_byte_order(tmp_path: Path, header, endianness: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # chunks of 7 bytes split voxels between chunks
    monkeypatch.setattr(volume_io, "_CHUNK_BYTES", 7)
    image_class = nib.Nifti1Image if header is nib.Nifti1Header else nib.Nifti2Image
    array = _with_non_finite(_volume(np.float64))
    image = image_class(array, np.eye(4), header(endianness=endianness))
    image.set_data_dtype(np.float64)
    path = tmp_path / "scan.nii"
    nib.save(image, path)
    with pytest.raises(StageError, match="holds 5 NaN or infinite voxels"):
        check_nifti_file(path, "image", StageError)


def test_nan_voxels_of_other_formats_are_counted_after_reading(tmp_path: Path) -> None:
    path = _write_sitk(_with_non_finite(_volume()), tmp_path / "scan.mha")
    with pytest.raises(StageError, match="holds 5 NaN or infinite voxels"):
        read_volume(path, "scan", StageError)


@pytest.mark.parametrize("case, problem", [
    ("missing", "file does not exist"),
    ("2D", "a 3D volume is required"),
    ("vector", "2 components per voxel"),
    ("not an image", "cannot read"),
])
def test_other_bad_files_are_refused_by_name(tmp_path: Path, case: str, problem: str) -> None:
    path = tmp_path / "scan.nii.gz"
    if case == "2D":
        _write_sitk(np.zeros((5, 6), np.int16), path)
    elif case == "vector":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 2), np.float32), isVector=True), str(path))
    elif case == "not an image":
        path = tmp_path / "scan.mha"
        path.write_text("no image here")
    with pytest.raises(StageError) as err:
        read_volume(path, "scan", StageError)
    assert err.value.path == str(path) and problem in err.value.problem
