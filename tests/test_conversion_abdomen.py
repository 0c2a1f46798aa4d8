"""CHAOS (MR) + BTCV (CT) converter on the abdominal phantom, which is written in the exact public layouts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_glua.conversion.abdomen import ABDOMEN_CT_TEST_IDS, ABDOMEN_MR_TEST_IDS, convert_abdomen, main
from nnunet_glua.conversion.chaos import load_chaos_t2spir
from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.labels import CHAOS_ABDOMEN, apply_label_map
from nnunet_glua.conversion.orientation import to_canonical
from nnunet_glua.phantom import BTCV_IDS, CHAOS_IDS, make_phantom

LIVER, RIGHT_KIDNEY, LEFT_KIDNEY, SPLEEN = 1, 2, 3, 4


def _env(mp: pytest.MonkeyPatch, root: Path) -> Path:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        mp.setenv(name, str(root / name))
    return root / "nnUNet_raw"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """All 20 CHAOS patients and 30 BTCV volumes, tiny (16-voxel CT matrix)."""
    return make_phantom("abdominal", tmp_path_factory.mktemp("abdomen") / "phantom", size=16, progress=False)


@pytest.fixture(scope="module")
def converted(phantom, tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, tmp_path_factory.mktemp("nnunet"))
        return convert_abdomen(phantom / "CHAOS", phantom / "BTCV", "MR2CT", 831, upper_bound_id=832,
                               num_processes=2)


def _cases(folder: Path, suffix: str = "_0000.nii.gz") -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir())


def test_default_split_and_case_names(converted: Path) -> None:
    assert converted.name == "Dataset831_Abdomen_MR2CT"
    mr_train = [f"mr_{i:04d}" for i in CHAOS_IDS if i not in ABDOMEN_MR_TEST_IDS]
    ct_train = [f"ct_{i:04d}" for i in BTCV_IDS if i not in ABDOMEN_CT_TEST_IDS]
    ct_test = [f"ct_{i:04d}" for i in ABDOMEN_CT_TEST_IDS]
    assert _cases(converted / "imagesTr") == mr_train
    assert _cases(converted / "labelsTr", ".nii.gz") == mr_train
    assert _cases(converted / "imagesTargetTr") == ct_train
    assert _cases(converted / "imagesTs") == ct_test
    assert _cases(converted / "labelsTs", ".nii.gz") == ct_test
    dj = json.loads((converted / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
    assert dj["channel_names"] == {"0": "zscore"} and dj["numTraining"] == 16
    g = dj["glua"]
    assert (g["benchmark"], g["source_modality"], g["target_modality"]) == ("Abdomen", "MR", "CT")
    assert g["excluded_source_test_cases"] == [f"mr_{i:04d}" for i in ABDOMEN_MR_TEST_IDS]
    assert g["target_training_cases"] == ct_train and g["target_test_cases"] == ct_test
    assert set(g["label_map"]["per_modality"]) == {"MR", "CT"}
    assert g["label_map"]["per_modality"]["MR"]["name"] == "chaos_abdomen"
    upper = json.loads((converted.parent / "Dataset832_Abdomen_MR2CT_TargetSupervised" / "dataset.json").read_text())
    assert upper["numTraining"] == 24 and upper["glua"]["target_test_cases"] == ct_test


def test_anatomy_is_in_the_same_place_in_both_modalities_and_inside_the_body(converted: Path) -> None:
    """Canonical LPS: array x grows toward the patient's left, so the left kidney and the spleen lie at larger x
    than the right kidney and the liver in every scan of either modality; no organ voxel lies outside the body."""
    labelled = [(converted / "imagesTr", converted / "labelsTr"), (converted / "imagesTs", converted / "labelsTs")]
    checked = 0
    for image_folder, label_folder in labelled:
        for label_path in sorted(label_folder.iterdir()):
            case = label_path.name[: -len(".nii.gz")]
            label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
            image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_folder / f"{case}_0000.nii.gz")))
            assert set(np.unique(label)) <= {0, 1, 2, 3, 4}, case
            assert not np.any((label > 0) & (image == 0)), case

            def centre_x(value: int) -> float:
                return float(np.argwhere(label == value)[:, 2].mean())

            assert centre_x(LEFT_KIDNEY) > centre_x(RIGHT_KIDNEY), case
            assert centre_x(SPLEEN) > centre_x(LIVER), case
            checked += 1
    assert checked == 16 + 6


def test_chaos_case_matches_the_reader_output_reoriented(converted: Path, phantom: Path) -> None:
    image, mask = load_chaos_t2spir(phantom / "CHAOS" / "Train_Sets" / "MR" / "2" / "T2SPIR")
    mapped, _ = apply_label_map(sitk.GetArrayFromImage(mask), CHAOS_ABDOMEN)
    expected = sitk.GetImageFromArray(mapped)
    expected.CopyInformation(image)
    expected, _ = to_canonical(expected)
    written = sitk.ReadImage(str(converted / "labelsTr" / "mr_0002.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected))
    np.testing.assert_allclose(written.GetSpacing(), expected.GetSpacing(), rtol=1e-6)
    report = json.loads((converted / "conversion_report.json").read_text())
    record = report["cases"]["mr_0002"]
    assert record["source_files"]["series"].endswith("MR/2/T2SPIR")
    assert record["intensity"]["body_mask_method"] == "log_otsu"
    assert record["labels"]["mapping"] == {"0": 0, "63": 1, "126": 2, "189": 3, "252": 4}


def test_adaptation_dataset_passes_nnunet_verify_dataset_integrity(converted: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(converted), 2)


def test_cli_converts_ct2mr(phantom: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    raw = _env(monkeypatch, tmp_path)
    main(["--chaos", str(phantom / "CHAOS"), "--btcv", str(phantom / "BTCV" / "RawData"), "--direction", "CT2MR",
          "-d", "833", "-np", "1", "--ct-test-ids", "1", "--mr-test-ids", "1", "2"])
    folder = raw / "Dataset833_Abdomen_CT2MR"
    dj = json.loads((folder / "dataset.json").read_text())
    assert (dj["glua"]["source_modality"], dj["glua"]["target_modality"]) == ("CT", "MR")
    assert dj["numTraining"] == 29
    assert _cases(folder / "imagesTs") == ["mr_0001", "mr_0002"]
    assert len(_cases(folder / "imagesTargetTr")) == 18
    assert "Dataset833_Abdomen_CT2MR (adaptation, CT2MR)" in capsys.readouterr().out


# --- bad input -------------------------------------------------------------------------------------------------

@pytest.fixture
def small(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """CHAOS patients 1, 2 and BTCV 1, 2; returns (phantom folder, nnUNet_raw)."""
    raw = _env(monkeypatch, tmp_path / "nnunet")
    return make_phantom("abdominal", tmp_path / "phantom", num_cases=2, size=16, progress=False), raw


def _convert_small(phantom: Path, **kwargs) -> Path:
    options = dict(ct_test_ids=[2], mr_test_ids=[2], num_processes=1, upper_bound_id=835)
    options.update(kwargs)
    return convert_abdomen(phantom / "CHAOS", phantom / "BTCV", "MR2CT", 834, **options)


def _set_value(path: Path, value: int) -> None:
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = value
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def test_unknown_btcv_label_value_names_the_file(small) -> None:
    phantom, raw = small
    label = phantom / "BTCV" / "RawData" / "Training" / "label" / "label0001.nii.gz"
    _set_value(label, 14)
    with pytest.raises(ConversionError) as err:
        _convert_small(phantom)
    assert err.value.path == str(label) and "[14]" in err.value.problem
    assert list(raw.iterdir()) == []


def test_unknown_chaos_mask_value_names_the_mask_folder(small) -> None:
    phantom, raw = small
    ground = phantom / "CHAOS" / "Train_Sets" / "MR" / "1" / "T2SPIR" / "Ground"
    png = sorted(ground.iterdir())[0]
    mask = np.array(Image.open(png))
    mask[0, 0] = 100
    Image.fromarray(mask).save(png)
    with pytest.raises(ConversionError) as err:
        _convert_small(phantom)
    assert err.value.path == str(ground) and "[100]" in err.value.problem
    assert list(raw.iterdir()) == []


def test_missing_btcv_label_and_unknown_test_id_are_errors(small) -> None:
    phantom, raw = small
    with pytest.raises(ConversionError) as err:
        _convert_small(phantom, mr_test_ids=[13])
    assert err.value.path == str(phantom / "CHAOS") and "[13]" in err.value.problem
    image = phantom / "BTCV" / "RawData" / "Training" / "img" / "img0002.nii.gz"
    (image.parent.parent / "label" / "label0002.nii.gz").unlink()
    with pytest.raises(ConversionError) as err:
        _convert_small(phantom)
    assert err.value.path == str(image) and "label0002.nii.gz is missing" in err.value.problem
    assert list(raw.iterdir()) == []


def test_non_finite_btcv_voxels_are_reported_by_the_command(small, capsys) -> None:
    # ITK reads NaN voxels of a NIfTI file as 0: the converter must see them in the file itself
    phantom, raw = small
    image = phantom / "BTCV" / "RawData" / "Training" / "img" / "img0001.nii.gz"
    stored = sitk.ReadImage(str(image))
    array = sitk.GetArrayFromImage(stored).astype(np.float32)
    array[0, 0, :3], array[1, 1, 1], array[2, 2, 2] = np.nan, np.inf, -np.inf
    floats = sitk.GetImageFromArray(array)
    floats.CopyInformation(stored)
    sitk.WriteImage(floats, str(image))
    with pytest.raises(SystemExit) as exit_info:
        main(["--chaos", str(phantom / "CHAOS"), "--btcv", str(phantom / "BTCV"), "--direction", "MR2CT",
              "-d", "834", "-np", "2", "--ct-test-ids", "2", "--mr-test-ids", "2"])
    assert exit_info.value.code == 1
    assert f"{image}: image holds 5 NaN or infinite voxels" in capsys.readouterr().err
    assert list(raw.iterdir()) == []


def test_missing_btcv_folder_is_an_error(small, tmp_path: Path) -> None:
    phantom, _ = small
    with pytest.raises(ConversionError, match="no BTCV training data found"):
        convert_abdomen(phantom / "CHAOS", tmp_path, "MR2CT", 836, ct_test_ids=[], mr_test_ids=[])
