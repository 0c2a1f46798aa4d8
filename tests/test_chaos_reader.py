"""CHAOS T2-SPIR reader: slice order, mask pairing, geometry and every bad-input error.

Each test writes a tiny DICOM series (5 slices of 12 rows x 16 columns) with pydicom. Every stored pixel
encodes (slice, row, column), and every mask pixel encodes the slice, so a slice or mask that lands in the
wrong place shows up as a wrong value.
"""
from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from nnunet_glua.conversion.chaos import list_chaos_patients, load_chaos_t2spir
from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.io_utils import write_image

ROWS, COLS = 12, 16
PIXEL_SPACING = (0.8, 0.6)  # DICOM order: (row spacing = between rows, column spacing = between columns)
SLICE_STEP = 2.5
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
PUBLIC_PATIENT_IDS = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39)


def _oblique_orientation() -> tuple[float, ...]:
    """Direction cosines of a frame rotated 30 degrees about (1, 2, 3), rounded as a scanner would store them."""
    axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
    angle = np.deg2rad(30.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    return tuple(np.round(np.concatenate([rotation[:, 0], rotation[:, 1]]), 8))


OBLIQUE = _oblique_orientation()


def _stored_pixels(slice_index: int) -> np.ndarray:
    """Stored value = 1000 * slice + 16 * row + column: unique per voxel."""
    r, c = np.mgrid[0:ROWS, 0:COLS]
    return (1000 * slice_index + 16 * r + c).astype(np.uint16)


def _mask_pixels(slice_index: int) -> np.ndarray:
    """Mask value = 40 * (slice + 1) on a checkerboard, 0 elsewhere: tells which slice a mask came from."""
    r, c = np.mgrid[0:ROWS, 0:COLS]
    return np.where((r + c) % 2 == 0, 40 * (slice_index + 1), 0).astype(np.uint8)


def _save(ds: Dataset, path: Path) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _ds_numbers(values) -> list[str]:
    # DS values are limited to 16 characters
    return [f"{float(v):.8g}" for v in values]


def _write_dicom(
    path: Path,
    *,
    position,
    orientation,
    pixels: np.ndarray,
    series_uid: str,
    instance_number: int,
    pixel_spacing=PIXEL_SPACING,
    slope: float | None = None,
    intercept: float | None = None,
    modality: str = "MR",
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = _ds_numbers(position)
    ds.ImageOrientationPatient = _ds_numbers(orientation)
    ds.PixelSpacing = _ds_numbers(pixel_spacing)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if slope is not None:
        ds.RescaleSlope = _ds_numbers([slope])[0]
    if intercept is not None:
        ds.RescaleIntercept = _ds_numbers([intercept])[0]
    ds.PixelData = pixels.astype("<u2").tobytes()
    _save(ds, path)


def _edit_dicom(path: Path, **changes) -> None:
    """Rewrite a DICOM file with some attributes changed (value ``None`` deletes the attribute)."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    _save(ds, path)


@dataclass
class Series:
    """A written T2SPIR folder; lists are indexed by true slice index (position order along ``step``)."""

    folder: Path
    dicoms: list[Path] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)

    @property
    def dicom_dir(self) -> Path:
        return self.folder / "DICOM_anon"

    @property
    def ground_dir(self) -> Path:
        return self.folder / "Ground"


def make_series(
    folder: Path,
    *,
    n: int = 5,
    orientation=AXIAL,
    origin=(-12.5, 30.25, 100.0),
    step: float = SLICE_STEP,
    numbers: list[int] | None = None,
    slope: float | None = None,
    intercept: float | None = None,
) -> Series:
    """Write ``n`` slices at ``origin + k * step * normal``; slice k is named ``IMG-0004-<numbers[k]>``.

    A negative ``step`` puts later files further down the normal, so file order runs against slice order.
    """
    numbers = numbers if numbers is not None else list(range(1, n + 1))
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    series = Series(folder)
    series.dicom_dir.mkdir(parents=True)
    series.ground_dir.mkdir(parents=True)
    uid = generate_uid()
    for k in range(n):
        stem = f"IMG-0004-{numbers[k]:05d}"
        position = np.asarray(origin) + k * step * normal
        dicom_path, mask_path = series.dicom_dir / f"{stem}.dcm", series.ground_dir / f"{stem}.png"
        _write_dicom(
            dicom_path,
            position=position,
            orientation=orientation,
            pixels=_stored_pixels(k),
            series_uid=uid,
            instance_number=numbers[k],
            slope=slope,
            intercept=intercept,
        )
        Image.fromarray(_mask_pixels(k), mode="L").save(mask_path)
        series.dicoms.append(dicom_path)
        series.masks.append(mask_path)
        series.positions.append(position)
    return series


def _raises(expected_path: Path, *args, call=load_chaos_t2spir) -> ConversionError:
    """Run ``call(*args)``, check it raises ConversionError naming ``expected_path``, and return the error."""
    with pytest.raises(ConversionError) as info:
        call(*args)
    error = info.value
    assert error.path == str(expected_path), f"error names {error.path}, expected {expected_path}: {error}"
    assert str(expected_path) in str(error)
    return error


@pytest.fixture
def series(tmp_path: Path) -> Series:
    return make_series(tmp_path / "MR" / "4" / "T2SPIR")


# --------------------------------------------------------------------------------------------------------
# geometry and slice order
# --------------------------------------------------------------------------------------------------------


def _expected_volume(n: int, order: list[int]) -> np.ndarray:
    return np.stack([_stored_pixels(k) for k in order]).astype(np.float32)


@pytest.mark.parametrize(
    "orientation, step",
    [(AXIAL, SLICE_STEP), (CORONAL, SLICE_STEP), (SAGITTAL, -SLICE_STEP), (OBLIQUE, SLICE_STEP), (OBLIQUE, -3.0)],
    ids=["axial", "coronal", "sagittal-descending", "oblique", "oblique-descending"],
)
def test_geometry_matches_dicom_positions(tmp_path: Path, orientation, step: float) -> None:
    series = make_series(tmp_path / "T2SPIR", orientation=orientation, step=step)
    image, mask = load_chaos_t2spir(series.folder)

    assert image.GetPixelID() == sitk.sitkFloat32 and mask.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == (COLS, ROWS, 5)
    np.testing.assert_allclose(image.GetSpacing(), (PIXEL_SPACING[1], PIXEL_SPACING[0], abs(step)), atol=1e-6)
    for prop in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(mask, prop)() == getattr(image, prop)()

    # slices sorted along +normal: with a negative step the last written slice comes first
    order = list(range(5)) if step > 0 else list(range(4, -1, -1))
    np.testing.assert_allclose(image.GetOrigin(), series.positions[order[0]], atol=1e-5)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], orientation[:3], atol=1e-6)
    np.testing.assert_allclose(direction[:, 1], orientation[3:], atol=1e-6)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-9)
    assert np.linalg.det(direction) == pytest.approx(1.0)

    # every voxel sits where the DICOM header of its source file puts that pixel, and holds its value
    volume = sitk.GetArrayFromImage(image)
    for z, k in enumerate(order):
        header = pydicom.dcmread(series.dicoms[k])
        ipp = np.asarray(header.ImagePositionPatient, dtype=float)
        iop = np.asarray(header.ImageOrientationPatient, dtype=float)
        row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
        for r, c in [(0, 0), (ROWS - 1, 0), (0, COLS - 1), (5, 7), (ROWS - 1, COLS - 1)]:
            expected = ipp + c * column_spacing * iop[:3] + r * row_spacing * iop[3:]
            np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((c, r, z)), expected, atol=1e-4)
            assert volume[z, r, c] == header.pixel_array[r, c]


@pytest.mark.parametrize(
    "orientation, step", [(AXIAL, -SLICE_STEP), (OBLIQUE, 3.0)], ids=["axial-descending", "oblique"]
)
def test_geometry_agrees_with_simpleitk_series_reader(tmp_path: Path, orientation, step: float) -> None:
    """An independent reader (GDCM through SimpleITK) sees the same geometry and the same voxels."""
    series = make_series(tmp_path / "T2SPIR", orientation=orientation, step=step, numbers=[3, 5, 1, 4, 2])
    image, _ = load_chaos_t2spir(series.folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series.dicom_dir)))
    reference = reader.Execute()
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference).astype(np.float32))


def test_geometry_survives_nifti_round_trip_and_reorientation(tmp_path: Path) -> None:
    """The direction matrix must be orthonormal: NIfTI and DICOMOrient otherwise distort or reject it."""
    series = make_series(tmp_path / "T2SPIR", orientation=OBLIQUE, step=-3.0)
    image, mask = load_chaos_t2spir(series.folder)
    path = tmp_path / "img.nii.gz"
    write_image(image, path)
    back = sitk.ReadImage(str(path))
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-5)

    lps = sitk.DICOMOrient(mask, "LPS")
    probe = mask.TransformIndexToPhysicalPoint((3, 4, 2))
    assert lps[lps.TransformPhysicalPointToIndex(probe)] == mask[3, 4, 2]


@pytest.mark.parametrize("naming", ["backwards", "shuffled"])
def test_slices_sorted_by_position_not_by_name_or_instance_number(tmp_path: Path, naming: str) -> None:
    numbers = [5, 4, 3, 2, 1] if naming == "backwards" else [3, 5, 1, 4, 2]
    series = make_series(tmp_path / "T2SPIR", numbers=numbers)
    image, mask = load_chaos_t2spir(series.folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), _expected_volume(5, list(range(5))))
    # each mask travels with the DICOM of the same stem, so it lands on that DICOM's slice
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), np.stack([_mask_pixels(k) for k in range(5)]))
    np.testing.assert_allclose(image.GetOrigin(), series.positions[0], atol=1e-6)


def test_masks_follow_their_dicom_when_names_and_positions_disagree(tmp_path: Path) -> None:
    """Names ascending but positions descending: z order follows positions and masks stay with their slice."""
    series = make_series(tmp_path / "T2SPIR", step=-SLICE_STEP)
    image, mask = load_chaos_t2spir(series.folder)
    volume, masks = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask)
    for z in range(5):
        k = int(volume[z, 0, 0]) // 1000  # the source slice encoded in the stored pixels
        assert k == 4 - z
        np.testing.assert_array_equal(masks[z], _mask_pixels(k))


def test_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    series = make_series(tmp_path / "T2SPIR", slope=2.5, intercept=-100.0)
    image, _ = load_chaos_t2spir(series.folder)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), _expected_volume(5, list(range(5))) * 2.5 - 100.0)


def test_mask_values_are_kept_exactly(series: Series) -> None:
    values = np.array([0, 1, 55, 63, 70, 126, 189, 200, 252, 255], dtype=np.uint8)
    pattern = np.resize(values, (ROWS, COLS))
    Image.fromarray(pattern, mode="L").save(series.masks[2])
    _, mask = load_chaos_t2spir(series.folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask)[2], pattern)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "I;16", "P"])
def test_grey_masks_in_other_png_modes_are_accepted(series: Series, mode: str) -> None:
    grey = _mask_pixels(1)
    if mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16))
    elif mode == "P":
        img = Image.fromarray(grey, mode="L").convert("P")
    else:
        channels = {"RGB": [grey] * 3, "RGBA": [grey] * 3 + [np.full_like(grey, 255)], "LA": [grey, grey]}[mode]
        img = Image.fromarray(np.stack(channels, axis=-1), mode=mode)
    img.save(series.masks[1])
    _, mask = load_chaos_t2spir(series.folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask)[1], grey)


def test_non_mr_modality_warns_but_reads(series: Series) -> None:
    for path in series.dicoms:
        _edit_dicom(path, Modality="CT")
    with pytest.warns(UserWarning, match="Modality is CT"):
        image, _ = load_chaos_t2spir(series.folder)
    assert image.GetSize() == (COLS, ROWS, 5)


def test_hidden_files_are_ignored(series: Series) -> None:
    """macOS archive tools leave ``._name`` shadow files next to every real file."""
    (series.dicom_dir / "._IMG-0004-00001.dcm").write_bytes(b"\x00\x05\x16\x07 apple double")
    (series.ground_dir / "._IMG-0004-00001.png").write_bytes(b"\x00\x05\x16\x07 apple double")
    image, _ = load_chaos_t2spir(series.folder)
    assert image.GetSize() == (COLS, ROWS, 5)


# --------------------------------------------------------------------------------------------------------
# folder and pairing errors
# --------------------------------------------------------------------------------------------------------


def test_missing_t2spir_folder(tmp_path: Path) -> None:
    _raises(tmp_path / "nope", tmp_path / "nope")


def test_patient_folder_instead_of_t2spir_gets_a_hint(series: Series) -> None:
    error = _raises(series.folder.parent / "DICOM_anon", series.folder.parent)
    assert "T2SPIR" in error.problem


def test_missing_dicom_folder(series: Series) -> None:
    shutil.rmtree(series.dicom_dir)
    _raises(series.dicom_dir, series.folder)


def test_missing_ground_folder(series: Series) -> None:
    shutil.rmtree(series.ground_dir)
    _raises(series.ground_dir, series.folder)


def test_empty_dicom_folder(series: Series) -> None:
    for path in series.dicoms:
        path.unlink()
    _raises(series.dicom_dir, series.folder)


def test_dicom_without_png(series: Series) -> None:
    series.masks[2].unlink()
    error = _raises(series.dicoms[2], series.folder)
    assert series.masks[2].name in error.problem


def test_png_without_dicom(series: Series) -> None:
    stray = series.ground_dir / "IMG-0004-00099.png"
    Image.fromarray(_mask_pixels(0), mode="L").save(stray)
    _raises(stray, series.folder)


def test_several_series_in_one_folder(series: Series) -> None:
    _edit_dicom(series.dicoms[3], SeriesInstanceUID=generate_uid())
    error = _raises(series.dicom_dir, series.folder)
    assert "2 DICOM series" in error.problem and series.dicoms[3].name in error.problem


# --------------------------------------------------------------------------------------------------------
# damaged files and headers
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["pixels-truncated", "header-truncated", "not-dicom"])
def test_damaged_dicom(series: Series, damage: str) -> None:
    path = series.dicoms[1]
    data = path.read_bytes()
    damaged = {"pixels-truncated": data[:-40], "header-truncated": data[:250], "not-dicom": b"no dicom here" * 20}
    path.write_bytes(damaged[damage])
    _raises(path, series.folder)


REQUIRED_TAGS = [
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SeriesInstanceUID", "Rows", "PixelData"
]


@pytest.mark.parametrize("tag", REQUIRED_TAGS)
def test_missing_required_tag(series: Series, tag: str) -> None:
    _edit_dicom(series.dicoms[3], **{tag: None})
    error = _raises(series.dicoms[3], series.folder)
    assert tag in error.problem


@pytest.mark.parametrize(
    "change, word",
    [
        ({"Rows": 10, "PixelData": _stored_pixels(0)[:10].astype("<u2").tobytes()}, "rows"),
        ({"PixelSpacing": ["0.8", "0.7"]}, "PixelSpacing"),
        ({"ImageOrientationPatient": _ds_numbers(OBLIQUE)}, "ImageOrientationPatient"),
    ],
    ids=["size", "pixel-spacing", "orientation"],
)
def test_inconsistent_slices(series: Series, change: dict, word: str) -> None:
    _edit_dicom(series.dicoms[2], **change)
    error = _raises(series.dicoms[2], series.folder)
    assert word in error.problem


def test_corrupt_orientation(series: Series) -> None:
    for path in series.dicoms:
        _edit_dicom(path, ImageOrientationPatient=["1", "0", "0", "0.5", "0.5", "0"])
    _raises(series.dicoms[0], series.folder)


def test_zero_rescale_slope(series: Series) -> None:
    _edit_dicom(series.dicoms[4], RescaleSlope="0")
    _raises(series.dicoms[4], series.folder)


@pytest.mark.parametrize("damage", ["truncated", "truncated-tolerant-pillow", "not-png"])
def test_damaged_png(series: Series, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if damage == "truncated-tolerant-pillow":
        # another library in the same process may have told Pillow to accept truncated images
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = series.masks[3]
    data = path.read_bytes()
    path.write_bytes(b"not a png" * 10 if damage == "not-png" else data[:-20])  # cuts into the pixel data
    _raises(path, series.folder)


def test_png_size_differs_from_dicom(series: Series) -> None:
    Image.fromarray(np.zeros((COLS, ROWS), np.uint8), mode="L").save(series.masks[0])  # transposed
    error = _raises(series.masks[0], series.folder)
    assert series.dicoms[0].name in error.problem


@pytest.mark.parametrize("mode", ["RGB", "RGBA-transparent", "1"])
def test_ambiguous_png_modes(series: Series, mode: str) -> None:
    grey = _mask_pixels(1)
    if mode == "RGB":
        img = Image.fromarray(np.stack([grey, grey, 255 - grey], axis=-1), mode="RGB")
    elif mode == "RGBA-transparent":
        alpha = np.where(grey > 0, 128, 0).astype(np.uint8)
        img = Image.fromarray(np.stack([grey, grey, grey, alpha], axis=-1), mode="RGBA")
    else:
        img = Image.fromarray(grey > 0)
    img.save(series.masks[1])
    _raises(series.masks[1], series.folder)


# --------------------------------------------------------------------------------------------------------
# slice position errors
# --------------------------------------------------------------------------------------------------------


def test_missing_slice(series: Series) -> None:
    series.dicoms[2].unlink()
    series.masks[2].unlink()
    error = _raises(series.folder, series.folder)
    assert "1 slice(s) seem to be missing" in error.problem
    assert series.dicoms[1].name in error.problem and series.dicoms[3].name in error.problem


def test_irregular_spacing(series: Series) -> None:
    _edit_dicom(series.dicoms[2], ImagePositionPatient=_ds_numbers(series.positions[2] + [0, 0, 0.8]))
    error = _raises(series.folder, series.folder)
    assert "irregular" in error.problem


def test_duplicate_position(series: Series) -> None:
    _edit_dicom(series.dicoms[3], ImagePositionPatient=_ds_numbers(series.positions[2]))
    error = _raises(series.dicoms[3], series.folder)
    assert "shares its slice position" in error.problem and series.dicoms[2].name in error.problem


def test_sheared_stack_is_rejected(tmp_path: Path) -> None:
    series = make_series(tmp_path / "T2SPIR")
    for k, path in enumerate(series.dicoms):
        _edit_dicom(path, ImagePositionPatient=_ds_numbers(series.positions[k] + [0, 0.5 * k, 0]))
    _raises(series.dicoms[1], series.folder)


def test_single_slice_is_rejected(tmp_path: Path) -> None:
    series = make_series(tmp_path / "T2SPIR", n=1)
    _raises(series.dicom_dir, series.folder)


def test_small_header_rounding_is_tolerated(series: Series) -> None:
    _edit_dicom(series.dicoms[2], ImagePositionPatient=_ds_numbers(series.positions[2] + [0.002, -0.003, 0.004]))
    image, _ = load_chaos_t2spir(series.folder)
    assert image.GetSpacing()[2] == pytest.approx(SLICE_STEP, abs=1e-6)


# --------------------------------------------------------------------------------------------------------
# patient discovery
# --------------------------------------------------------------------------------------------------------


def _public_layout(root: Path) -> Path:
    """The verbatim CHAOS_Train_Sets tree (folders only), with T1DUAL series and a CT folder alongside."""
    chaos = root / "CHAOS_Train_Sets"
    for pid in PUBLIC_PATIENT_IDS:
        for sub in ("T2SPIR/DICOM_anon", "T2SPIR/Ground", "T1DUAL/DICOM_anon/InPhase", "T1DUAL/Ground"):
            (chaos / "Train_Sets" / "MR" / str(pid) / sub).mkdir(parents=True)
    (chaos / "Train_Sets" / "CT" / "1" / "DICOM_anon").mkdir(parents=True)
    return chaos


def test_list_patients_accepts_every_root_level(tmp_path: Path) -> None:
    chaos = _public_layout(tmp_path)
    mr = chaos / "Train_Sets" / "MR"
    expected = {pid: mr / str(pid) / "T2SPIR" for pid in PUBLIC_PATIENT_IDS}
    for root in (chaos, chaos / "Train_Sets", mr, str(mr), tmp_path):
        found = list_chaos_patients(root)
        assert found == expected
        assert list(found) == sorted(PUBLIC_PATIENT_IDS)


def test_list_patients_skips_patient_without_t2spir(tmp_path: Path) -> None:
    chaos = _public_layout(tmp_path)
    shutil.rmtree(chaos / "Train_Sets" / "MR" / "13" / "T2SPIR")
    with pytest.warns(UserWarning, match="no T2SPIR"):
        found = list_chaos_patients(chaos)
    assert 13 not in found and len(found) == len(PUBLIC_PATIENT_IDS) - 1


def test_list_patients_errors(tmp_path: Path) -> None:
    _raises(tmp_path / "missing", tmp_path / "missing", call=list_chaos_patients)
    (tmp_path / "empty" / "Train_Sets" / "MR").mkdir(parents=True)
    _raises(tmp_path / "empty", tmp_path / "empty", call=list_chaos_patients)


def test_public_layout_end_to_end(tmp_path: Path) -> None:
    """Discovery plus reading, on the verbatim layout, with backwards file names as in some CHAOS patients."""
    mr = tmp_path / "CHAOS_Train_Sets" / "Train_Sets" / "MR"
    make_series(mr / "1" / "T2SPIR", numbers=[5, 4, 3, 2, 1])
    make_series(mr / "38" / "T2SPIR", orientation=OBLIQUE, n=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-formed tree reads without any warning
        patients = list_chaos_patients(tmp_path / "CHAOS_Train_Sets")
        assert sorted(patients) == [1, 38]
        sizes = {pid: load_chaos_t2spir(folder)[1].GetSize() for pid, folder in patients.items()}
    assert sizes == {1: (COLS, ROWS, 5), 38: (COLS, ROWS, 4)}
