"""Synthetic phantom: public on-disk layouts, label values, geometry, domain gap, determinism, safe output."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage

from nnunet_glua.phantom import cli, generator, tissues
from nnunet_glua.phantom import (
    BTCV_IDS,
    CHAOS_IDS,
    MANIFEST_NAME,
    MMWHS_IDS,
    PhantomCase,
    make_phantom,
    planned_cases,
    render_case,
)
from nnunet_glua.phantom.tissues import Tissue

SIZE = 32  # small, but every MMWHS structure and the four CHAOS organs stay visible
MMWHS_VALUES = {0, 205, 420, 500, 550, 600, 820, 850}
CHAOS_VALUES = {0, 63, 126, 189, 252}
BTCV_VALUES = set(range(14))


@pytest.fixture(scope="module")
def cardiac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom("cardiac", tmp_path_factory.mktemp("cardiac") / "mmwhs", num_cases=3, seed=7, size=SIZE,
                        progress=False)


@pytest.fixture(scope="module")
def abdominal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom("abdominal", tmp_path_factory.mktemp("abdominal") / "abdomen", num_cases=4, seed=7,
                        size=SIZE, progress=False)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _nifti_pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs = [(p, p.with_name(p.name.replace("_image", "_label"))) for p in sorted(root.glob("*_train/*_image.nii.gz"))]
    pairs += [(p, p.parent.parent / "label" / p.name.replace("img", "label"))
              for p in sorted(root.glob("BTCV/RawData/Training/img/*.nii.gz"))]
    return pairs


def _chaos_slices(t2spir: Path) -> list[tuple[str, pydicom.Dataset, np.ndarray]]:
    """(stem, DICOM dataset, PNG mask) per file, in file-name order."""
    out = []
    for dcm in sorted((t2spir / "DICOM_anon").glob("*.dcm")):
        mask = np.asarray(Image.open(t2spir / "Ground" / f"{dcm.stem}.png"))
        out.append((dcm.stem, pydicom.dcmread(dcm), mask))
    return out


def _physical_centroid(label: sitk.Image, value: int) -> np.ndarray:
    indices = np.argwhere(sitk.GetArrayFromImage(label) == value)[:, ::-1]  # (x, y, z) index order
    assert len(indices), f"label {value} is missing"
    return np.array(label.TransformContinuousIndexToPhysicalPoint(indices.mean(axis=0).tolist()))


# --------------------------------------------------------------------------------------------------------
# layouts and label values
# --------------------------------------------------------------------------------------------------------


def test_default_cases_are_the_public_ids_including_the_standard_test_ids() -> None:
    cardiac = planned_cases("cardiac")
    assert [c.case_id for c in cardiac if c.protocol == "mmwhs_ct"] == list(range(1001, 1021))
    assert [c.case_id for c in cardiac if c.protocol == "mmwhs_mr"] == list(range(1001, 1021))
    abdominal = planned_cases("abdominal")
    chaos = [c.case_id for c in abdominal if c.protocol == "chaos_t2spir"]
    btcv = [c.case_id for c in abdominal if c.protocol == "btcv_ct"]
    assert chaos == list(CHAOS_IDS) and len(chaos) == 20
    assert btcv == list(BTCV_IDS) == list(range(1, 11)) + list(range(21, 41))
    assert {1, 9, 30, 32, 33, 39} <= set(btcv) and {1, 13, 32, 38} <= set(chaos)
    # num_cases takes the first public ids of each dataset, capped at the dataset's size
    capped = planned_cases("abdominal", 25)
    assert sum(c.protocol == "chaos_t2spir" for c in capped) == 20
    assert [c.case_id for c in capped if c.protocol == "btcv_ct"] == list(BTCV_IDS[:25])
    assert [c.case_id for c in planned_cases("cardiac", 2)] == [1001, 1002, 1001, 1002]
    assert MMWHS_IDS[0] == 1001


def test_cardiac_layout_is_mmwhs(cardiac: Path) -> None:
    expected = {MANIFEST_NAME}
    for modality in ("ct", "mr"):
        for case_id in (1001, 1002, 1003):
            expected |= {f"{modality}_train/{modality}_train_{case_id}_{part}.nii.gz" for part in ("image", "label")}
    assert _files(cardiac) == expected


def test_abdominal_layout_is_chaos_and_btcv(abdominal: Path) -> None:
    files = _files(abdominal)
    btcv = {f for f in files if f.startswith("BTCV/")}
    assert btcv == {f"BTCV/RawData/Training/{kind}/{kind}{i:04d}.nii.gz"
                    for kind in ("img", "label") for i in (1, 2, 3, 4)}
    mr = abdominal / "CHAOS" / "Train_Sets" / "MR"
    assert sorted(int(p.name) for p in mr.iterdir()) == [1, 2, 3, 5]
    for patient in mr.iterdir():
        assert sorted(p.name for p in patient.iterdir()) == ["T2SPIR"]
        assert sorted(p.name for p in (patient / "T2SPIR").iterdir()) == ["DICOM_anon", "Ground"]
        dicoms = sorted(p.stem for p in (patient / "T2SPIR" / "DICOM_anon").iterdir())
        pngs = sorted(p.stem for p in (patient / "T2SPIR" / "Ground").iterdir())
        assert dicoms == pngs and len(dicoms) >= 8
        assert all(p.suffix == ".dcm" for p in (patient / "T2SPIR" / "DICOM_anon").iterdir())
        assert all(p.suffix == ".png" for p in (patient / "T2SPIR" / "Ground").iterdir())
        assert all(re.fullmatch(r"IMG-\d{4}-\d{5}", stem) for stem in dicoms)
    assert files - btcv - {f for f in files if f.startswith("CHAOS/")} == {MANIFEST_NAME}


def test_label_values_are_the_public_ones(cardiac: Path, abdominal: Path) -> None:
    for image_path, label_path in _nifti_pairs(cardiac):
        values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))).tolist())
        assert values == MMWHS_VALUES, label_path.name  # every structure of the 7-class set is present
    for image_path, label_path in _nifti_pairs(abdominal):
        values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))).tolist())
        assert values <= BTCV_VALUES, label_path.name
        assert {1, 2, 3, 6, 7, 8} <= values, label_path.name  # spleen, kidneys, liver, stomach, aorta
    for t2spir in (abdominal / "CHAOS" / "Train_Sets" / "MR").glob("*/T2SPIR"):
        values: set[int] = set()
        for _, ds, mask in _chaos_slices(t2spir):
            assert mask.dtype == np.uint8 and mask.shape == ds.pixel_array.shape
            values |= set(np.unique(mask).tolist())
        assert values == CHAOS_VALUES, t2spir


# --------------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------------


def test_image_and_label_share_geometry_and_use_real_data_types(cardiac: Path, abdominal: Path) -> None:
    for image_path, label_path in _nifti_pairs(cardiac) + _nifti_pairs(abdominal):
        image, label = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(label_path))
        assert image.GetSize() == label.GetSize()
        assert image.GetSpacing() == label.GetSpacing()
        assert image.GetOrigin() == label.GetOrigin()
        assert image.GetDirection() == label.GetDirection()
        assert image.GetPixelID() == sitk.sitkInt16, image_path.name
        assert label.GetPixelID() in (sitk.sitkUInt8, sitk.sitkUInt16), label_path.name


def _chaos_direction(ds: pydicom.Dataset) -> tuple[float, ...]:
    row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    return tuple(np.stack([row, col, np.cross(row, col)], axis=1).ravel().round(6))


def test_orientations_and_spacings_differ_between_modalities(cardiac: Path, abdominal: Path) -> None:
    def directions(paths: list[Path]) -> set[tuple[float, ...]]:
        return {tuple(np.round(sitk.ReadImage(str(p)).GetDirection(), 6)) for p in paths}

    ct = directions(sorted(cardiac.glob("ct_train/*_image.nii.gz")))
    mr = directions(sorted(cardiac.glob("mr_train/*_image.nii.gz")))
    assert ct and mr and not ct & mr
    btcv = directions(sorted(abdominal.glob("BTCV/RawData/Training/img/*.nii.gz")))
    chaos = {_chaos_direction(_chaos_slices(t)[0][1]) for t in (abdominal / "CHAOS/Train_Sets/MR").glob("*/T2SPIR")}
    assert btcv and chaos and not btcv & chaos
    identity = tuple(np.eye(3).ravel())
    assert any(d != identity for d in ct | mr | btcv)  # stored with flipped and/or permuted axes

    ct_spacing = {sitk.ReadImage(str(p)).GetSpacing() for p in cardiac.glob("ct_train/*_image.nii.gz")}
    mr_spacing = {sitk.ReadImage(str(p)).GetSpacing() for p in cardiac.glob("mr_train/*_image.nii.gz")}
    assert len(ct_spacing) == 3 and not ct_spacing & mr_spacing  # per scan and per modality


def test_reoriented_anatomy_is_on_the_correct_side(cardiac: Path, abdominal: Path) -> None:
    # LPS: +x is the patient's left, +y posterior
    for _, label_path in _nifti_pairs(abdominal):
        label = sitk.DICOMOrient(sitk.ReadImage(str(label_path)), "LPS")
        liver, spleen = _physical_centroid(label, 6), _physical_centroid(label, 1)
        right_kidney, left_kidney = _physical_centroid(label, 2), _physical_centroid(label, 3)
        assert liver[0] < 0 < spleen[0] and right_kidney[0] < 0 < left_kidney[0]
        assert min(right_kidney[1], left_kidney[1]) > liver[1]  # kidneys lie posterior to the liver
        assert _physical_centroid(label, 8)[0] > _physical_centroid(label, 9)[0]  # aorta left of the IVC
    for _, label_path in _nifti_pairs(cardiac):
        label = sitk.DICOMOrient(sitk.ReadImage(str(label_path)), "LPS")
        lv, ra = _physical_centroid(label, 500), _physical_centroid(label, 550)
        la, rv = _physical_centroid(label, 420), _physical_centroid(label, 600)
        assert lv[0] > ra[0] and la[1] > rv[1] and la[2] > lv[2]  # LV left of RA, LA behind the RV, above the LV
    for t2spir in (abdominal / "CHAOS" / "Train_Sets" / "MR").glob("*/T2SPIR"):
        xs: dict[int, list[float]] = {126: [], 189: []}
        for _, ds, mask in _chaos_slices(t2spir):
            column_spacing = float(ds.PixelSpacing[1])
            row_direction = np.array(ds.ImageOrientationPatient[:3], float)
            for value in xs:
                cols = np.nonzero(mask == value)[1]
                xs[value] += list(float(ds.ImagePositionPatient[0]) + row_direction[0] * column_spacing * cols)
        assert np.mean(xs[126]) < 0 < np.mean(xs[189]), t2spir  # right kidney right, left kidney left


def test_files_reorient_back_to_the_simulated_patient_grid(cardiac: Path) -> None:
    scan = render_case(PhantomCase("mmwhs_mr", 1002), seed=7, size=SIZE)
    stored = sitk.ReadImage(str(cardiac / "mr_train" / "mr_train_1002_image.nii.gz"))
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(stored.GetDirection()) == \
        scan.acquisition.orientation
    canonical = sitk.DICOMOrient(stored, "LPS")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(canonical), scan.image)
    np.testing.assert_allclose(canonical.GetSpacing(), scan.acquisition.grid.spacing, rtol=1e-6)
    np.testing.assert_allclose(canonical.GetOrigin(), scan.acquisition.grid.origin, atol=1e-3)


# --------------------------------------------------------------------------------------------------------
# CHAOS DICOM specifics
# --------------------------------------------------------------------------------------------------------


def test_chaos_dicom_files_are_valid_single_frame_mr(abdominal: Path) -> None:
    series_uids = set()
    for t2spir in sorted((abdominal / "CHAOS" / "Train_Sets" / "MR").glob("*/T2SPIR")):
        slices = _chaos_slices(t2spir)
        sop_uids = {ds.SOPInstanceUID for _, ds, _ in slices}
        assert len(sop_uids) == len(slices)
        assert len({ds.SeriesInstanceUID for _, ds, _ in slices}) == 1
        series_uids.add(slices[0][1].SeriesInstanceUID)
        for stem, ds, mask in slices:
            assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.MRImageStorage == ds.SOPClassUID
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.Modality == "MR" and ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation == "MONOCHROME2"
            assert stem == f"IMG-{int(ds.SeriesNumber):04d}-{int(ds.InstanceNumber):05d}"
            pixels = ds.pixel_array
            assert pixels.dtype == np.uint16 and pixels.shape == (ds.Rows, ds.Columns) == mask.shape
            assert pixels.max() <= 4095 and float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == 0.0
            assert len(ds.ImagePositionPatient) == 3 and len(ds.PixelSpacing) == 2
            assert float(ds.SliceThickness) > 0
        with open(t2spir / "DICOM_anon" / f"{slices[0][0]}.dcm", "rb") as f:
            assert f.read(132)[128:] == b"DICM"  # a conformant Part 10 file with preamble
    assert len(series_uids) == 4


def test_chaos_file_names_do_not_follow_slice_position(abdominal: Path) -> None:
    orders = []
    for t2spir in sorted((abdominal / "CHAOS" / "Train_Sets" / "MR").glob("*/T2SPIR")):
        z = np.array([float(ds.ImagePositionPatient[2]) for _, ds, _ in _chaos_slices(t2spir)])
        steps = np.diff(z)
        orders.append("ascending" if np.all(steps > 0) else "descending" if np.all(steps < 0) else "mixed")
        assert len(np.unique(z)) == len(z)  # one file per slice position
    assert "mixed" in orders and "descending" in orders and "ascending" in orders


# --------------------------------------------------------------------------------------------------------
# the cross-modality gap
# --------------------------------------------------------------------------------------------------------


def test_contrast_inverts_between_ct_and_mr_in_the_files(abdominal: Path) -> None:
    btcv_liver_minus_spleen = []
    for image_path, label_path in _nifti_pairs(abdominal):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path)))
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
        btcv_liver_minus_spleen.append(np.median(image[label == 6]) - np.median(image[label == 1]))
    chaos_liver_minus_spleen = []
    for t2spir in (abdominal / "CHAOS" / "Train_Sets" / "MR").glob("*/T2SPIR"):
        slices = _chaos_slices(t2spir)
        pixels = np.stack([ds.pixel_array for _, ds, _ in slices]).astype(float)
        masks = np.stack([m for _, _, m in slices])
        chaos_liver_minus_spleen.append(np.median(pixels[masks == 63]) - np.median(pixels[masks == 252]))
    # portal-venous CT: liver denser than spleen; T2-SPIR: liver darker than spleen
    assert all(d > 0 for d in btcv_liver_minus_spleen)
    assert all(d < 0 for d in chaos_liver_minus_spleen)


def test_tissue_contrasts_follow_each_modalitys_physics() -> None:
    def medians(protocol: str, case_id: int, size: int = 64) -> dict[Tissue, float]:
        scan = render_case(PhantomCase(protocol, case_id), seed=3, size=size)
        image = scan.image.astype(np.float64)
        found = {}
        for tissue in Tissue:
            # interior voxels only: at this resolution, vessels and thin layers are mostly partial-volume voxels
            core = ndimage.binary_erosion(scan.tissues == tissue)
            if core.sum() >= 5:
                found[tissue] = float(np.median(image[core]))
        return found

    ct, mr = medians("mmwhs_ct", 1005), medians("mmwhs_mr", 1005, size=96)  # MR: thick myocardium voxels
    assert ct[Tissue.FAT] < ct[Tissue.MYOCARDIUM] < ct[Tissue.ARTERIAL_BLOOD]
    assert mr[Tissue.MYOCARDIUM] < mr[Tissue.FAT] and mr[Tissue.MYOCARDIUM] < mr[Tissue.ARTERIAL_BLOOD]
    assert ct[Tissue.BONE] > ct[Tissue.ARTERIAL_BLOOD] and mr[Tissue.BONE] < mr[Tissue.ARTERIAL_BLOOD]
    assert -1010 < ct[Tissue.AIR] < -990 and ct[Tissue.LUNG] < -600
    btcv, chaos = medians("btcv_ct", 5), medians("chaos_t2spir", 5, size=96)  # CHAOS: 0.75 x size in-plane
    assert btcv[Tissue.ARTERIAL_BLOOD] > btcv[Tissue.LIVER] and chaos[Tissue.ARTERIAL_BLOOD] < chaos[Tissue.LIVER]
    # water-like fluid (gastric content): darker than liver in CT, far brighter in T2
    assert btcv[Tissue.GASTRIC_CONTENT] < btcv[Tissue.LIVER] and chaos[Tissue.GASTRIC_CONTENT] > chaos[Tissue.LIVER]
    assert chaos[Tissue.FAT] < chaos[Tissue.MUSCLE]  # fat suppression


def test_mr_has_noisy_background_and_bias_ct_is_in_hounsfield_units(cardiac: Path) -> None:
    for path in sorted(cardiac.glob("mr_train/*_image.nii.gz")):
        mr = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)
        corner = mr[:3, :3, :3]
        assert mr.min() >= 0 and 0 < corner.std() and np.median(corner) < 0.1 * np.percentile(mr, 99)
    for path in sorted(cardiac.glob("ct_train/*_image.nii.gz")):
        ct = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert ct.min() >= -1024 and -1030 <= np.median(ct[:2, :2, :2]) <= -960  # air (or padding) at the corners
    scan = render_case(PhantomCase("chaos_t2spir", 1), seed=3, size=48)
    liver = scan.image[scan.labels == 63].astype(np.float64)
    # the multiplicative bias field and noise spread a homogeneous organ well beyond its texture
    assert liver.std() / liver.mean() > 0.05


def test_subjects_vary_with_the_case_and_the_seed() -> None:
    a = render_case(PhantomCase("btcv_ct", 1), seed=0, size=24)
    b = render_case(PhantomCase("btcv_ct", 2), seed=0, size=24)
    c = render_case(PhantomCase("btcv_ct", 1), seed=1, size=24)
    volume = {k: {v: int((s.labels == v).sum() * np.prod(s.acquisition.grid.spacing)) for v in (1, 2, 3, 6)}
              for k, s in (("a", a), ("b", b), ("c", c))}
    assert volume["a"] != volume["b"] and volume["a"] != volume["c"]
    # anatomy does not depend on the matrix size: the same subject at two resolutions has similar organ volumes
    fine = render_case(PhantomCase("btcv_ct", 1), seed=0, size=48)
    liver_fine = (fine.labels == 6).sum() * np.prod(fine.acquisition.grid.spacing)
    assert abs(liver_fine - volume["a"][6]) / liver_fine < 0.2


# --------------------------------------------------------------------------------------------------------
# determinism and safe output
# --------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_a_subset_of_a_larger_run(tmp_path: Path, abdominal: Path) -> None:
    first = make_phantom("abdominal", tmp_path / "a", num_cases=1, seed=7, size=SIZE, progress=False)
    second = make_phantom("abdominal", tmp_path / "b", num_cases=1, seed=7, size=SIZE, progress=False)
    digests = _digests(first)
    assert digests == _digests(second)
    larger = _digests(abdominal)  # same seed and size, four cases
    shared = {k: v for k, v in digests.items() if k != MANIFEST_NAME}
    assert shared and all(larger[k] == v for k, v in shared.items())
    other = _digests(make_phantom("abdominal", tmp_path / "c", num_cases=1, seed=8, size=SIZE, progress=False))
    assert other["BTCV/RawData/Training/img/img0001.nii.gz"] != digests["BTCV/RawData/Training/img/img0001.nii.gz"]


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "phantom"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        make_phantom("cardiac", out, num_cases=1, size=16, progress=False)
    assert _files(out) == {"keep.txt"}
    make_phantom("cardiac", out, num_cases=1, size=16, overwrite=True, progress=False)
    assert "keep.txt" not in _files(out) and "ct_train/ct_train_1001_image.nii.gz" in _files(out)


def test_interrupted_run_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = generator.render_case
    calls = []

    def failing_render(case: PhantomCase, seed: int = 0, size: int = 80, appearance: str = "standard"):
        calls.append(case)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_render(case, seed=seed, size=size, appearance=appearance)

    monkeypatch.setattr(generator, "render_case", failing_render)
    with pytest.raises(KeyboardInterrupt):
        make_phantom("cardiac", tmp_path / "phantom", num_cases=2, size=16, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "brain"}, "unknown phantom kind"),
    ({"size": 8}, "size must be"),
    ({"num_cases": 0}, "num_cases must be between 1 and 20"),
    ({"num_cases": 21}, "num_cases must be between 1 and 20"),
    ({"seed": -1}, "seed must be"),
])
def test_bad_arguments_are_rejected_before_writing(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"kind": "cardiac", "out_dir": tmp_path / "out", "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_phantom(**arguments)
    assert not (tmp_path / "out").exists()


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        cli.main(["--help"])
    assert help_exit.value.code == 0 and "--num-cases" in capsys.readouterr().out
    out = tmp_path / "cli"
    cli.main(["--kind", "abdominal", "--out", str(out), "--num-cases", "1", "--size", "16", "--seed", "3",
                  "--quiet"])
    assert (out / "BTCV/RawData/Training/img/img0001.nii.gz").is_file()
    assert (out / "CHAOS/Train_Sets/MR/1/T2SPIR/DICOM_anon").is_dir()
    with pytest.raises(SystemExit) as exists_exit:
        cli.main(["--kind", "abdominal", "--out", str(out), "--num-cases", "1", "--size", "16", "--quiet"])
    assert exists_exit.value.code == 2 and "already exists" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------
# documentation
# --------------------------------------------------------------------------------------------------------


def test_documented_tissue_table_matches_the_values_used() -> None:
    doc = tissues.__doc__ or ""
    protocols = ("mmwhs_ct", "mmwhs_mr", "btcv_ct", "chaos_t2spir")
    cell = r"(-?\d+) ± (\d+) \((\d+)\)"
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(r"^(\w+)\s+" + r"\s+".join([cell] * 4) + r"\s*$", doc,
                                                               re.MULTILINE)}
    assert set(rows) == {t.name.lower() for t in Tissue}
    for tissue in Tissue:
        numbers = [float(v) for v in rows[tissue.name.lower()]]
        for i, protocol in enumerate(protocols):
            value = tissues.PROTOCOL_INTENSITIES[protocol][tissue]
            assert (value.mean, value.jitter, value.texture) == tuple(numbers[3 * i:3 * i + 3]), (tissue, protocol)


def test_the_alt_appearance_changes_intensities_not_anatomy_and_keeps_the_contrast_flips(tmp_path: Path) -> None:
    for protocol, case_id in (("mmwhs_ct", 1002), ("mmwhs_mr", 1002), ("btcv_ct", 2), ("chaos_t2spir", 2)):
        standard = render_case(PhantomCase(protocol, case_id), seed=5, size=32)
        alt = render_case(PhantomCase(protocol, case_id), seed=5, size=32, appearance="alt")
        np.testing.assert_array_equal(alt.labels, standard.labels)
        np.testing.assert_array_equal(alt.tissues, standard.tissues)
        assert alt.acquisition.grid == standard.acquisition.grid
        assert not np.array_equal(alt.image, standard.image), protocol
    for tissue in Tissue:  # every tissue has an alt value, and the documented contrast flips still hold
        assert tissue in tissues.ALT_PROTOCOL_INTENSITIES["mmwhs_mr"]
    alt_ct, alt_mr = tissues.ALT_PROTOCOL_INTENSITIES["mmwhs_ct"], tissues.ALT_PROTOCOL_INTENSITIES["mmwhs_mr"]
    assert alt_ct[Tissue.FAT].mean < alt_ct[Tissue.MYOCARDIUM].mean < alt_ct[Tissue.ARTERIAL_BLOOD].mean
    assert alt_mr[Tissue.MYOCARDIUM].mean < alt_mr[Tissue.FAT].mean < alt_mr[Tissue.ARTERIAL_BLOOD].mean
    alt_btcv, alt_chaos = tissues.ALT_PROTOCOL_INTENSITIES["btcv_ct"], tissues.ALT_PROTOCOL_INTENSITIES["chaos_t2spir"]
    assert alt_btcv[Tissue.ARTERIAL_BLOOD].mean > alt_btcv[Tissue.LIVER].mean
    assert alt_chaos[Tissue.ARTERIAL_BLOOD].mean < alt_chaos[Tissue.LIVER].mean
    out = make_phantom("cardiac", tmp_path / "alt", num_cases=1, seed=5, size=16, progress=False, appearance="alt")
    assert json.loads((out / "phantom_manifest.json").read_text())["appearance"] == "alt"
    with pytest.raises(ValueError, match="appearance"):
        make_phantom("cardiac", tmp_path / "bad", num_cases=1, size=16, progress=False, appearance="vendor_b")
    assert not (tmp_path / "bad").exists()
