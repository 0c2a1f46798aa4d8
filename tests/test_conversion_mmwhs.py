"""MMWHS converter end to end on tiny synthetic volumes written in the public layout.

Every synthetic scan is built in the canonical LPS frame, then stored in another orientation. A correct
conversion gives back exactly the canonical label and an image whose structures (each one a constant intensity)
sit under exactly the right label voxels, which proves that image and label stay aligned voxel for voxel.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.labels import MMWHS_STANDARD, apply_label_map
from nnunet_glua.conversion.mmwhs import convert_mmwhs, main
from nnunet_glua.conversion.orientation import restore_orientation

REPO = Path(__file__).resolve().parents[1]
SHAPE = (10, 24, 20)  # numpy (z, y, x) in the canonical LPS frame
SPACING = (0.8, 0.9, 2.0)
ORIGIN = (10.0, -20.0, 30.0)
# raw MMWHS value -> box (numpy slices) and the constant intensity of the structure in CT and MR
STRUCTURES = {
    205: ((slice(2, 5), slice(6, 10), slice(4, 8)), 150, 120),
    420: ((slice(5, 8), slice(12, 15), slice(5, 9)), 260, 500),
    500: ((slice(3, 7), slice(8, 12), slice(11, 15)), 330, 560),
    820: ((slice(6, 9), slice(15, 18), slice(12, 14)), 420, 620),
    550: ((slice(1, 3), slice(14, 17), slice(9, 12)), 200, 450),
}
STORED_ORIENTATION = {
    ("CT", 1001): "LPS", ("CT", 1002): "RAI", ("CT", 1003): "PIR", ("CT", 1004): "ASL",
    ("MR", 1001): "RAS", ("MR", 1002): "LPI", ("MR", 1003): "SRA", ("MR", 1004): "LPS",
}


def torso(shape=SHAPE) -> np.ndarray:
    _, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    return (y / 0.85) ** 2 + (x / 0.9) ** 2 < 1


def canonical_scan(modality: str, seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(image, raw MMWHS label) in the canonical frame; structures have constant intensities, the rest noise."""
    rng = np.random.default_rng(seed)
    body = torso(shape)
    if modality == "CT":
        image = rng.normal(-1000, 5, shape)
        image[body] = rng.normal(40, 10, int(body.sum()))
    else:
        image = np.abs(rng.normal(0, 3, shape))
        image[body] = rng.normal(300, 15, int(body.sum()))
    label = np.zeros(shape, np.int16)
    if shape == SHAPE:
        for value, (box, ct_value, mr_value) in STRUCTURES.items():
            label[box] = value
            image[box] = ct_value if modality == "CT" else mr_value
    else:
        label[1:3, 4:7, 3:6] = 205
        image[1:3, 4:7, 3:6] = 150 if modality == "CT" else 500
    return image, label


def write_volume(array: np.ndarray, path: Path, orientation: str = "LPS", dtype=None) -> None:
    image = sitk.GetImageFromArray(array if dtype is None else array.astype(dtype))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.DICOMOrient(image, orientation), str(path), True)


def scan_paths(src: Path, modality: str, number: int) -> tuple[Path, Path]:
    prefix = modality.lower()
    folder = src / f"{prefix}_train"
    return folder / f"{prefix}_train_{number}_image.nii.gz", folder / f"{prefix}_train_{number}_label.nii.gz"


@dataclass
class Converted:
    raw: Path
    adaptation: Path
    upper: Path
    stdout: str
    expected: dict  # (modality, id) -> (canonical image, canonical raw label)


@pytest.fixture(scope="module")
def mmwhs_src(tmp_path_factory) -> tuple[Path, dict]:
    src = tmp_path_factory.mktemp("mmwhs")
    expected = {}
    for (modality, number), orientation in STORED_ORIENTATION.items():
        image, label = canonical_scan(modality, number + (0 if modality == "CT" else 100))
        if (modality, number) == ("MR", 1002):
            label[6, 12:15, 5] = 421  # stray value seen in real MMWHS label files
        image_path, label_path = scan_paths(src, modality, number)
        write_volume(image, image_path, orientation, np.int16 if modality == "CT" else np.float32)
        write_volume(label, label_path, orientation, np.float32 if number == 1003 else np.uint16)
        expected[(modality, number)] = (image, label)
    return src, expected


@pytest.fixture(scope="module")
def converted(mmwhs_src, tmp_path_factory) -> Converted:
    src, expected = mmwhs_src
    root = tmp_path_factory.mktemp("nnunet")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            mp.setenv(name, str(root / name))
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            folder = convert_mmwhs(
                src, "MR2CT", 811, ct_test_ids=[1003], mr_test_ids=[1004], upper_bound_id=812, num_processes=2
            )
    raw = root / "nnUNet_raw"
    return Converted(raw, folder, raw / "Dataset812_MMWHS_MR2CT_TargetSupervised", stdout.getvalue(), expected)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_split_puts_each_scan_in_its_folder_and_no_target_training_label_anywhere(converted: Converted) -> None:
    d = converted.adaptation
    assert d == converted.raw / "Dataset811_MMWHS_MR2CT"
    assert _names(d / "imagesTr") == ["mr_1001_0000.nii.gz", "mr_1002_0000.nii.gz", "mr_1003_0000.nii.gz"]
    assert _names(d / "labelsTr") == ["mr_1001.nii.gz", "mr_1002.nii.gz", "mr_1003.nii.gz"]
    assert _names(d / "imagesTargetTr") == ["ct_1001_0000.nii.gz", "ct_1002_0000.nii.gz", "ct_1004_0000.nii.gz"]
    assert _names(d / "imagesTs") == ["ct_1003_0000.nii.gz"]
    assert _names(d / "labelsTs") == ["ct_1003.nii.gz"]
    every_file = [p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()]
    for case in ("ct_1001", "ct_1002", "ct_1004"):
        assert [f for f in every_file if case in f] == [f"imagesTargetTr/{case}_0000.nii.gz"]
    assert not [f for f in every_file if "mr_1004" in f]  # source test id: left out entirely
    assert not [p for p in converted.raw.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_dataset_json_records_channels_labels_and_the_split(converted: Converted) -> None:
    dj = json.loads((converted.adaptation / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "zscore"}
    assert dj["labels"] == {"background": 0, "MYO": 1, "LAC": 2, "LVC": 3, "AA": 4}
    assert dj["numTraining"] == 3 and dj["file_ending"] == ".nii.gz"
    g = dj["glua"]
    assert g["format_version"] == 1 and g["benchmark"] == "MMWHS" and g["direction"] == "MR2CT"
    assert (g["source_modality"], g["target_modality"], g["role"]) == ("MR", "CT", "adaptation")
    assert (g["unlabelled_target_folder"], g["target_test_images_folder"], g["target_test_labels_folder"]) == (
        "imagesTargetTr", "imagesTs", "labelsTs")
    assert g["source_training_cases"] == ["mr_1001", "mr_1002", "mr_1003"]
    assert g["excluded_source_test_cases"] == ["mr_1004"]
    assert g["target_training_cases"] == ["ct_1001", "ct_1002", "ct_1004"]
    assert g["target_test_cases"] == ["ct_1003"]
    assert g["canonical_orientation"] == "LPS"
    assert g["intensity"]["lower_percentile"] == 0.5 and g["intensity"]["output_max"] == 1000.0
    assert g["label_map"]["labels"] == dj["labels"]
    assert g["label_map"]["per_modality"]["MR"]["stray_values"] == {"421": 420}
    assert g["upper_bound_dataset"] == "Dataset812_MMWHS_MR2CT_TargetSupervised"


def test_every_scan_comes_out_canonical_with_image_and_label_aligned(converted: Converted) -> None:
    d = converted.adaptation
    written = {
        ("MR", 1001): ("imagesTr", "labelsTr"), ("MR", 1002): ("imagesTr", "labelsTr"),
        ("MR", 1003): ("imagesTr", "labelsTr"), ("CT", 1003): ("imagesTs", "labelsTs"),
        ("CT", 1001): ("imagesTargetTr", None),
    }
    for (modality, number), (image_folder, label_folder) in written.items():
        case = f"{modality.lower()}_{number}"
        image = sitk.ReadImage(str(d / image_folder / f"{case}_0000.nii.gz"))
        array = sitk.GetArrayFromImage(image)
        canonical_image, canonical_label = converted.expected[(modality, number)]
        np.testing.assert_allclose(image.GetSpacing(), SPACING, rtol=1e-6)
        np.testing.assert_allclose(image.GetOrigin(), ORIGIN, atol=1e-4)
        np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-9)
        body = torso()
        assert np.all(array[~body] == 0), case
        assert np.all(array[body] >= 1) and array.max() <= 1000, case
        assert np.corrcoef(array[body], canonical_image[body])[0, 1] > 0.95, case
        if label_folder is None:
            continue
        label_image = sitk.ReadImage(str(d / label_folder / f"{case}.nii.gz"))
        assert label_image.GetPixelID() == sitk.sitkUInt8
        assert label_image.GetSpacing() == image.GetSpacing() and label_image.GetOrigin() == image.GetOrigin()
        label = sitk.GetArrayFromImage(label_image)
        expected_label, _ = apply_label_map(canonical_label, MMWHS_STANDARD)
        np.testing.assert_array_equal(label, expected_label, err_msg=case)
        for structure in (1, 2, 3, 4):
            inside = array[label == structure]
            # each structure has one constant intensity: any misalignment would mix in body noise
            assert np.ptp(inside) == 0, (case, structure)
            assert np.all(array[(label != structure)] != inside[0]) or structure == 4, (case, structure)


def test_report_records_geometry_reorientation_and_the_stray_value(converted: Converted) -> None:
    report = json.loads((converted.adaptation / "conversion_report.json").read_text())
    assert set(report["cases"]) == {"mr_1001", "mr_1002", "mr_1003", "ct_1001", "ct_1002", "ct_1003", "ct_1004"}
    for case, record in report["cases"].items():
        modality, number = case[:2].upper(), int(case[3:])
        stored = STORED_ORIENTATION[(modality, number)]
        assert record["reorientation"]["original_orientation"] == stored
        assert record["reorientation"]["changed"] == (stored != "LPS")
        assert record["source_files"]["image"].endswith(f"{case[:2]}_train_{number}_image.nii.gz")
        assert 0.3 < record["intensity"]["body_fraction"] < 0.8
        # unlabelled target scans: their labels were read for the upper bound only and stay out of this report
        assert (record["labels"] is None) == (case in ("ct_1001", "ct_1002", "ct_1004"))
    stray = report["cases"]["mr_1002"]["labels"]["stray_values"]
    assert stray == {"421": {"voxels": 3, "treated_as": 420, "target": 2}}
    assert report["summary"]["stray_label_values"] == {"mr_1002": stray}
    assert "STRAY LABEL VALUE mr_1002: 421 (3 voxels) treated as 420" in converted.stdout
    assert "re-indexed to LPS" in converted.stdout


def test_recorded_orientation_maps_an_output_back_onto_the_original_file(converted: Converted, mmwhs_src) -> None:
    src, _ = mmwhs_src
    report = json.loads((converted.adaptation / "conversion_report.json").read_text())
    record = report["cases"]["mr_1003"]["reorientation"]
    output = sitk.ReadImage(str(converted.adaptation / "labelsTr" / "mr_1003.nii.gz"))
    restored = restore_orientation(output, record["original_orientation"])
    original = sitk.ReadImage(str(scan_paths(src, "MR", 1003)[1]))
    expected, _ = apply_label_map(sitk.GetArrayFromImage(original), MMWHS_STANDARD)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(restored), expected)
    np.testing.assert_allclose(restored.GetDirection(), record["original_geometry"]["direction"], atol=1e-9)
    np.testing.assert_allclose(restored.GetOrigin(), original.GetOrigin(), atol=1e-4)


def test_upper_bound_dataset_trains_on_target_labels_and_tests_on_the_same_set(converted: Converted) -> None:
    u = converted.upper
    dj = json.loads((u / "dataset.json").read_text())
    assert dj["glua"]["role"] == "target_supervised" and dj["numTraining"] == 3
    assert dj["glua"]["source_modality"] == "CT" and dj["glua"]["adaptation_dataset"] == "Dataset811_MMWHS_MR2CT"
    assert _names(u / "imagesTr") == ["ct_1001_0000.nii.gz", "ct_1002_0000.nii.gz", "ct_1004_0000.nii.gz"]
    assert _names(u / "labelsTr") == ["ct_1001.nii.gz", "ct_1002.nii.gz", "ct_1004.nii.gz"]
    assert not (u / "imagesTargetTr").exists()
    for folder, name in (("imagesTs", "ct_1003_0000.nii.gz"), ("labelsTs", "ct_1003.nii.gz")):
        assert _names(u / folder) == [name]
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(sitk.ReadImage(str(u / folder / name))),
            sitk.GetArrayFromImage(sitk.ReadImage(str(converted.adaptation / folder / name))),
        )
    assert dj["glua"]["target_test_cases"] == ["ct_1003"]


def test_both_datasets_pass_nnunet_verify_dataset_integrity(converted: Converted) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(converted.adaptation), 2)
    verify_dataset_integrity(str(converted.upper), 2)


# --- bad input -------------------------------------------------------------------------------------------------

SMALL = (6, 14, 12)


@pytest.fixture
def raw(tmp_path, monkeypatch) -> Path:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    return tmp_path / "nnUNet_raw"


@pytest.fixture
def small_src(tmp_path) -> Path:
    """CT and MR ids 1001, 1002 of shape (6, 14, 12); converted with CT test id 1002 and no MR test id."""
    src = tmp_path / "MMWHS"
    for modality in ("CT", "MR"):
        for number in (1001, 1002):
            image, label = canonical_scan(modality, number, SMALL)
            image_path, label_path = scan_paths(src, modality, number)
            write_volume(image, image_path)
            write_volume(label, label_path, dtype=np.uint16)
    return src


def _convert_small(src: Path, **kwargs) -> Path:
    options = dict(ct_test_ids=[1002], mr_test_ids=[], num_processes=1)
    options.update(kwargs)
    return convert_mmwhs(src, "MR2CT", 821, **options)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite(path: Path, change) -> None:
    image = sitk.ReadImage(str(path))
    image = change(image)
    sitk.WriteImage(image, str(path))


def _with_shape(image: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.zeros((6, 14, 11), np.uint16))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    return out


def _shifted(image: sitk.Image) -> sitk.Image:
    image.SetOrigin(tuple(o + 5 for o in image.GetOrigin()))
    return image


def _respaced(image: sitk.Image) -> sitk.Image:
    image.SetSpacing((0.8, 0.9, 2.5))
    return image


def _with_value(value: float):
    def change(image: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        array[0, 0, 0] = value
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        return out
    return change


def _non_finite(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[0, 0, :2], array[-1, -1, -1] = np.nan, np.inf
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


def _two_d(path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((14, 12), np.int16)), str(path))


BAD_INPUTS = {
    # name: (how to break the small source, file (relative) the error must name, words of the problem, processes)
    "truncated image": (lambda s: _truncate(scan_paths(s, "MR", 1001)[0]), "mr_train/mr_train_1001_image.nii.gz",
                        "truncated", 1),
    "truncated target test label": (lambda s: _truncate(scan_paths(s, "CT", 1002)[1]),
                                    "ct_train/ct_train_1002_label.nii.gz", "truncated", 2),
    "label of another size": (lambda s: _rewrite(scan_paths(s, "MR", 1002)[1], _with_shape),
                              "mr_train/mr_train_1002_label.nii.gz", "size", 1),
    "label with another origin": (lambda s: _rewrite(scan_paths(s, "CT", 1002)[1], _shifted),
                                  "ct_train/ct_train_1002_label.nii.gz", "origin", 1),
    "label with another spacing": (lambda s: _rewrite(scan_paths(s, "MR", 1001)[1], _respaced),
                                   "mr_train/mr_train_1001_label.nii.gz", "spacing", 1),
    "unknown label value": (lambda s: _rewrite(scan_paths(s, "MR", 1002)[1], _with_value(300)),
                            "mr_train/mr_train_1002_label.nii.gz", "unknown label values [300]", 2),
    "non-integer label value": (lambda s: _rewrite(scan_paths(s, "CT", 1002)[1], _with_value(204.5)),
                                "ct_train/ct_train_1002_label.nii.gz", "non-integer", 1),
    # ITK reads NaN voxels of a NIfTI file as 0; the converter must count them in the file itself
    "NaN and infinite image voxels": (lambda s: _rewrite(scan_paths(s, "MR", 1001)[0], _non_finite),
                                      "mr_train/mr_train_1001_image.nii.gz", "holds 3 NaN or infinite voxels", 2),
    "NaN label voxels": (lambda s: _rewrite(scan_paths(s, "CT", 1002)[1], _non_finite),
                         "ct_train/ct_train_1002_label.nii.gz", "label holds 3 NaN or infinite voxels", 1),
    "2D image": (lambda s: _two_d(scan_paths(s, "MR", 1001)[0]), "mr_train/mr_train_1001_image.nii.gz", "3D", 1),
    "missing label": (lambda s: scan_paths(s, "MR", 1002)[1].unlink(), "mr_train/mr_train_1002_image.nii.gz",
                      "mr_train_1002_label.nii.gz is missing", 1),
    "missing image": (lambda s: scan_paths(s, "CT", 1001)[0].unlink(), "ct_train/ct_train_1001_label.nii.gz",
                      "ct_train_1001_image.nii.gz is missing", 1),
    "empty modality": (lambda s: _empty(s / "ct_train"), "ct_train", "no CT scans", 1),
    "missing modality folder": (lambda s: shutil.rmtree(s / "mr_train"), "mr_train", "folder missing", 1),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_an_error_naming_the_file_and_writes_nothing(name: str, small_src: Path, raw: Path) -> None:
    breaker, culprit, problem, processes = BAD_INPUTS[name]
    breaker(small_src)
    with pytest.raises(ConversionError) as err:
        _convert_small(small_src, upper_bound_id=822, num_processes=processes)
    assert err.value.path == str(small_src / culprit), str(err.value)
    assert problem in err.value.problem, str(err.value)
    assert list(raw.iterdir()) == []  # neither dataset, nor a staging folder


def test_staging_folder_of_a_killed_conversion_is_removed_by_the_next_one(small_src: Path, raw: Path,
                                                                          capsys) -> None:
    stale = raw / ".partial-0badc0de-Dataset821_MMWHS_MR2CT"
    (stale / "imagesTr").mkdir(parents=True)
    (stale / "imagesTr" / "mr_1001_0000.nii.gz").write_bytes(b"half a volume")
    folder = _convert_small(small_src)
    assert sorted(p.name for p in raw.iterdir()) == [folder.name]
    assert f"removed {stale}" in capsys.readouterr().err


def test_requested_test_id_that_is_not_present_is_an_error(small_src: Path, raw: Path) -> None:
    with pytest.raises(ConversionError) as err:
        _convert_small(small_src, ct_test_ids=[1002, 1019])
    assert err.value.path == str(small_src / "ct_train")
    assert "[1019]" in err.value.problem and "available ids: [1001, 1002]" in err.value.problem
    with pytest.raises(ConversionError, match="no unlabelled target scan"):
        _convert_small(small_src, ct_test_ids=[1001, 1002])
    assert list(raw.iterdir()) == []


def test_target_training_labels_are_not_even_opened_without_an_upper_bound(small_src: Path, raw: Path) -> None:
    _truncate(scan_paths(small_src, "CT", 1001)[1])  # a target training label: the adaptation never needs it
    folder = _convert_small(small_src)
    assert _names(folder / "imagesTargetTr") == ["ct_1001_0000.nii.gz"]
    with pytest.raises(ConversionError) as err:
        _convert_small(small_src, upper_bound_id=822, overwrite=True)
    assert err.value.path == str(scan_paths(small_src, "CT", 1001)[1])


def test_destination_problems_are_errors_and_overwrite_replaces_the_old_dataset(
    small_src: Path, raw: Path, monkeypatch
) -> None:
    folder = _convert_small(small_src)
    (folder / "stale.txt").write_text("from an earlier run")
    with pytest.raises(ConversionError, match="already exists"):
        _convert_small(small_src)
    assert (folder / "stale.txt").exists()
    assert _convert_small(small_src, overwrite=True) == folder
    assert not (folder / "stale.txt").exists() and (folder / "dataset.json").is_file()

    with pytest.raises(ConversionError) as err:
        _convert_small(small_src, dataset_name="Other", overwrite=True)
    assert err.value.path == str(folder) and "already used" in err.value.problem
    assert not (raw / "Dataset821_Other").exists()

    monkeypatch.delenv("nnUNet_raw")
    with pytest.raises(ConversionError, match="nnUNet_raw is not set"):
        _convert_small(small_src, dataset_name="Again")


def test_cli_converts_ct2mr_with_all_labels(small_src: Path, raw: Path, capsys) -> None:
    main(["--src", str(small_src), "--direction", "ct2mr", "-d", "823", "--labels", "all", "--ct-test-ids",
          "--mr-test-ids", "1002", "-np", "1", "--clip-percentiles", "1", "99", "--name", "Heart"])
    folder = raw / "Dataset823_Heart"
    dj = json.loads((folder / "dataset.json").read_text())
    assert (dj["glua"]["source_modality"], dj["glua"]["target_modality"]) == ("CT", "MR")
    assert dj["labels"]["PA"] == 7 and dj["numTraining"] == 2
    assert dj["glua"]["intensity"]["lower_percentile"] == 1.0
    assert _names(folder / "imagesTargetTr") == ["mr_1001_0000.nii.gz"]
    assert _names(folder / "labelsTs") == ["mr_1002.nii.gz"]
    assert "Dataset823_Heart (adaptation, CT2MR)" in capsys.readouterr().out


def test_cli_reports_bad_input_on_stderr_with_exit_code_1(small_src: Path, raw: Path, capsys) -> None:
    _truncate(scan_paths(small_src, "MR", 1002)[0])
    with pytest.raises(SystemExit) as exit_info:
        main(["--src", str(small_src), "--direction", "MR2CT", "-d", "824", "--ct-test-ids", "1002",
              "--mr-test-ids", "-np", "1"])
    assert exit_info.value.code == 1
    assert "mr_train_1002_image.nii.gz: image file is truncated" in capsys.readouterr().err


def test_thin_script_exposes_the_same_command_line() -> None:
    result = subprocess.run([sys.executable, str(REPO / "dataset_conversion" / "convert_mmwhs.py"), "--help"],
                            capture_output=True, text=True, check=True)
    assert "--direction" in result.stdout and "--upper-bound-id" in result.stdout


def test_truncated_uncompressed_nifti_is_caught_from_its_header(small_src: Path, raw: Path) -> None:
    image_path = scan_paths(small_src, "MR", 1001)[0]
    uncompressed = image_path.with_name("mr_train_1001_image.nii")
    sitk.WriteImage(sitk.ReadImage(str(image_path)), str(uncompressed), False)
    image_path.unlink()
    uncompressed.write_bytes(uncompressed.read_bytes()[:-10])
    with pytest.raises(ConversionError) as err:
        _convert_small(small_src)
    assert err.value.path == str(uncompressed) and "header announces" in err.value.problem


def test_cardiac_phantom_converts_with_the_default_sifa_split(tmp_path: Path, raw: Path) -> None:
    from nnunet_glua.phantom import make_phantom

    phantom = make_phantom("cardiac", tmp_path / "phantom", size=16, progress=False)
    main(["--src", str(phantom), "--direction", "MR2CT", "-d", "825", "-np", "2"])
    folder = raw / "Dataset825_MMWHS_MR2CT"
    g = json.loads((folder / "dataset.json").read_text())["glua"]
    assert g["target_test_cases"] == ["ct_1003", "ct_1008", "ct_1014", "ct_1019"]
    assert g["excluded_source_test_cases"] == ["mr_1007", "mr_1009", "mr_1018", "mr_1019"]
    assert len(g["source_training_cases"]) == 16 and len(g["target_training_cases"]) == 16
    for image_folder, label_folder in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        for label_path in sorted((folder / label_folder).iterdir()):
            case = label_path.name[: -len(".nii.gz")]
            label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
            image = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / image_folder / f"{case}_0000.nii.gz")))
            assert set(np.unique(label)) <= {0, 1, 2, 3, 4}, case
            # the label-free body mask never cuts into the anatomy
            assert not np.any((label > 0) & (image == 0)), case
            assert image.min() == 0 and 1 <= image[image > 0].min() and image.max() <= 1000, case
