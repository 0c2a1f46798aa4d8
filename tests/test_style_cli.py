"""The translator's commands on a hand-made planned nnU-Net dataset: glua_train_style (train, refuse to clobber,
continue), glua_translate (raw volumes -> translated NIfTI in the preprocessed grid), glua_style_report, the refusal
of a translator for re-planned data, and the test-case guard."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_glua.style.cli import report_main, train_main, translate_main
from nnunet_glua.style.integration import ensure_translator, load_translator_for, translator_output_folder
from nnunet_glua.style.synthetic import synthetic_case, tiny_config, write_synthetic_folder

SHAPE = (6, 32, 40)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _plans(name: str, spacing: list[float]) -> dict:
    resample = "resample_data_or_seg_to_shape"
    return {
        "dataset_name": name, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": list(SHAPE),
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {"mean": 1.0, "std": 1.0, "min": 0.0, "max": 3.0,
                                                              "median": 1.0, "percentile_00_5": 0.0,
                                                              "percentile_99_5": 3.0}},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [6, 32, 40], "median_image_size_in_voxels": list(SHAPE),
            "spacing": spacing, "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [True],
            "resampling_fn_data": resample, "resampling_fn_seg": resample, "resampling_fn_probabilities": resample,
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {}, "batch_dice": False}},
    }


def _make_dataset(dataset_id: int, test_cases: list[str]) -> dict[str, Path]:
    """Raw images + plans + preprocessed source cases for dataset ``dataset_id``; target cases in a side folder."""
    name = f"Dataset{dataset_id}_StyleCLI"
    raw = Path(os.environ["nnUNet_raw"]) / name
    pre = Path(os.environ["nnUNet_preprocessed"]) / name
    dataset_json = {"channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2, "c": 3},
                    "numTraining": 3, "file_ending": ".nii.gz"}
    for folder in (raw, pre):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dataset.json").write_text(json.dumps(dataset_json))
    (pre / "nnUNetPlans.json").write_text(json.dumps(_plans(name, [1.0, 1.0, 1.0])))
    write_synthetic_folder(pre / "nnUNetPlans_3d_fullres", "source", 3, SHAPE, seed=0, prefix="src")
    # outside nnUNet_preprocessed: a "DatasetXXX_..." folder there would be a second dataset with this id
    target = write_synthetic_folder(pre.parent.parent / "style_cli_targets" / name, "target", 3, SHAPE, seed=1,
                                    prefix="tgt")
    rng = np.random.default_rng(5)
    for i in range(2):  # raw source images in nnU-Net naming, un-normalised
        data, _ = synthetic_case(SHAPE, "source", rng)
        img = sitk.GetImageFromArray((data[0] * 50 + 200) * (data[0] != 0))
        (raw / "imagesTr").mkdir(exist_ok=True)
        sitk.WriteImage(img, str(raw / "imagesTr" / f"src_{i:03d}_0000.nii.gz"))
    (raw / "imagesTs").mkdir(exist_ok=True)
    for case in test_cases:
        sitk.WriteImage(sitk.GetImageFromArray(np.ones(SHAPE, np.float32)),
                        str(raw / "imagesTs" / f"{case}_0000.nii.gz"))
    return {"name": name, "raw": raw, "pre": pre, "target": target}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    ds = _make_dataset(971, ["tst_000"])
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.json"
    cfg.write_text(json.dumps(tiny_config().to_dict()))
    ds["config"] = cfg
    return ds


def _train_args(ds, *extra):
    return ["-d", "971", "-c", "3d_fullres", "--target-folder", str(ds["target"]), "--config-json", str(ds["config"]),
            "--device", "cpu", "--no-progress", *extra]


def test_help_of_every_command(capsys):
    for main, flag in ((train_main, "--continue"), (translate_main, "--input"), (report_main, "--max-slices")):
        with pytest.raises(SystemExit) as e:
            main(["--help"])
        assert e.value.code == 0
        assert flag in capsys.readouterr().out


def test_train_translate_report_end_to_end(dataset, tmp_path, capsys):
    train_main(_train_args(dataset))
    out = translator_output_folder(dataset["name"], "nnUNetPlans", "3d_fullres")
    assert out.name == "GLUATranslator__nnUNetPlans__3d_fullres"
    for f in ("checkpoint_final.pth", "checkpoint_latest.pth", "style_bank.json", "training_log.jsonl",
              "previews/latest.png"):
        assert (out / f).is_file(), f
    assert "trained for 4 iterations" in capsys.readouterr().out

    # a second run neither clobbers nor silently retrains; --continue on a finished run is a no-op
    with pytest.raises(SystemExit, match="--continue"):
        train_main(_train_args(dataset))
    train_main(_train_args(dataset, "--continue"))
    # the trainer-facing API reuses the finished translator
    assert ensure_translator(971, "3d_fullres", device="cpu") == out / "checkpoint_final.pth"
    translator, path = load_translator_for(971, "3d_fullres", forbidden_cases={"tst_000"})
    assert path == str(out / "checkpoint_final.pth") and translator.identity_dict()["run_id"]
    with pytest.raises(ValueError, match="test cases"):
        load_translator_for(971, "3d_fullres", forbidden_cases={"tgt_001"})

    translated = tmp_path / "translated"
    translate_main(["-d", "971", "-c", "3d_fullres", "-i", str(dataset["raw"] / "imagesTr"), "-o", str(translated),
                    "--device", "cpu", "--no-progress"])
    record = json.loads((translated / "translation.json").read_text())
    assert sorted(record["cases"]) == ["src_000", "src_001"]
    img = sitk.ReadImage(str(translated / "src_000_0000.nii.gz"))
    arr = sitk.GetArrayFromImage(img)
    assert arr.shape == tuple(record["cases"]["src_000"]["shape"]) and np.isfinite(arr).all()
    assert img.GetSpacing() == (1.0, 1.0, 1.0)
    assert abs(float(arr[arr != 0].mean())) < 3.0  # z-scored range, not raw intensities (~200)

    report_json = tmp_path / "report.json"
    report_main(["-d", "971", "-c", "3d_fullres", "--target-folder", str(dataset["target"]), "--max-slices", "10",
                 "--classifier-iterations", "5", "--device", "cpu", "--no-progress", "-o", str(report_json)])
    assert "How target-like" in capsys.readouterr().out
    assert set(json.loads(report_json.read_text())) >= {"target_likeness", "content_preservation"}

    # re-planning with another spacing invalidates the translator, with a retrain hint
    plans_file = dataset["pre"] / "nnUNetPlans.json"
    original = plans_file.read_text()
    try:
        plans_file.write_text(json.dumps(_plans(dataset["name"], [1.0, 1.0, 2.0])))
        with pytest.raises(SystemExit, match="glua_train_style -d Dataset971_StyleCLI -c 3d_fullres"):
            translate_main(["-d", "971", "-c", "3d_fullres", "-i", str(dataset["raw"] / "imagesTr"), "-o",
                            str(tmp_path / "x"), "--device", "cpu", "--no-progress"])
    finally:
        plans_file.write_text(original)


def test_training_refuses_target_test_cases(tmp_path):
    ds = _make_dataset(972, ["tgt_001"])  # a target training case that is also a test case
    with pytest.raises(SystemExit, match="test cases"):
        train_main(["-d", "972", "-c", "3d_fullres", "--target-folder", str(ds["target"]), "--iterations", "1",
                    "--device", "cpu", "--no-progress"])


def test_ensure_translator_trains_once_and_then_reuses(tmp_path):
    ds = _make_dataset(973, [])
    messages: list[str] = []
    path = ensure_translator(973, "3d_fullres", iterations=2, device="cpu", config=tiny_config(),
                             target_folder=ds["target"], log=messages.append, progress=False)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["iteration"] == 2 and ckpt["slice_size"] == [32, 40]  # in-plane patch size of the plans
    assert any("training into" in m for m in messages)
    messages.clear()
    # a second fold asking for more iterations reuses the finished translator instead of retraining
    assert ensure_translator(973, "3d_fullres", iterations=50, device="cpu", log=messages.append) == path
    assert torch.load(path, weights_only=True)["iteration"] == 2 and "using" in messages[0]
