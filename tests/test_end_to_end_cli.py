"""The user's workflow through the real command-line tools, on a small cardiac phantom:
glua_make_phantom -> glua_convert_mmwhs -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train ... all -tr GLUATrainer_Short
(nnU-Net's fold "all") -> nnUNetv2_predict -f all -> glua_evaluate, plus the source-only trainer found the same way."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_glua.paths import trainer_folder

DATASET_ID = 950
UPPER_BOUND_ID = 951
CONFIG = "3d_fullres"
# 9 volumes per modality: 2 test ids each leave 7 labelled source volumes for nnU-Net's 5-fold split
CT_TEST_IDS = ["1003", "1008"]
MR_TEST_IDS = ["1007", "1009"]


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(args: list[str], env: dict[str, str], timeout: int = 900) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def cli_env(session_root) -> dict[str, str]:
    env = dict(os.environ)
    env["nnUNet_extTrainer"] = str(trainer_folder())
    env["nnUNet_def_n_proc"] = "1"
    env.pop("nnUNet_n_proc_DA", None)
    return env


@pytest.fixture(scope="module")
def planned_phantom(cli_env, tmp_path_factory) -> Path:
    phantom = tmp_path_factory.mktemp("phantom") / "mmwhs"
    _run([_bin("glua_make_phantom"), "--kind", "cardiac", "--out", str(phantom), "--num-cases", "9", "--size", "32",
          "--seed", "3", "--quiet"], cli_env)
    _run([_bin("glua_convert_mmwhs"), "--src", str(phantom), "--direction", "MR2CT", "-d", str(DATASET_ID),
          "--ct-test-ids", *CT_TEST_IDS, "--mr-test-ids", *MR_TEST_IDS, "--upper-bound-id", str(UPPER_BOUND_ID),
          "-np", "1"], cli_env)
    _run([_bin("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIG, "-np", "1", "-npfp", "1",
          "--verify_dataset_integrity"], cli_env)
    return next(Path(cli_env["nnUNet_raw"]).glob(f"Dataset{DATASET_ID}_*"))


def test_glua_trainer_through_nnunet_cli(planned_phantom, cli_env, tmp_path):
    from nnunet_glua.style.integration import ensure_translator
    from nnunet_glua.style.synthetic import tiny_config

    # a tiny translator up front: the trainer reuses a finished translator instead of training its own
    ensure_translator(DATASET_ID, CONFIG, iterations=4, device="cpu", config=tiny_config(), progress=False)
    train_env = dict(cli_env, nnUNet_n_proc_DA="0", GLUA_SEED="0")
    out = _run([_bin("nnUNetv2_train"), str(DATASET_ID), CONFIG, "all", "-tr", "GLUATrainer_Short", "-device",
                "cpu"], train_env)
    assert "GLUA components" in out
    model = Path(cli_env["nnUNet_results"]) / planned_phantom.name / f"GLUATrainer_Short__nnUNetPlans__{CONFIG}"
    assert (model / "fold_all" / "checkpoint_final.pth").is_file()
    log = next((model / "fold_all").glob("training_log_*.txt")).read_text()
    assert "GLUA_SEED=0" in log
    translated = [float(v) for v in re.findall(r"GLUA: translated fraction ([0-9.]+)", log)]
    assert len(translated) == 2 and min(translated) > 0, "the source batches must really have been translated"

    pred = tmp_path / "pred"
    _run([_bin("nnUNetv2_predict"), "-i", str(planned_phantom / "imagesTs"), "-o", str(pred), "-d", str(DATASET_ID),
          "-c", CONFIG, "-tr", "GLUATrainer_Short", "-f", "all", "-device", "cpu", "-npp", "0", "-nps", "0"], cli_env)
    assert sorted(p.name for p in pred.glob("*.nii.gz")) == [f"ct_{i}.nii.gz" for i in CT_TEST_IDS]

    _run([_bin("glua_evaluate"), "-d", str(DATASET_ID), "-pred", str(pred), "-np", "1"], cli_env)
    evaluation = json.loads((pred / "evaluation.json").read_text())
    assert (pred / "evaluation.md").is_file() and (pred / "evaluation.csv").is_file()
    # the reported values are those of the files: Dice recomputed here from the prediction and the reference
    assert [c["case"] for c in evaluation["cases"]] == [f"ct_{i}" for i in CT_TEST_IDS]
    labels = evaluation["labels"]
    per_class = {name: [] for name in labels}
    for case in evaluation["cases"]:
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(planned_phantom / "labelsTs" / f"{case['case']}.nii.gz")))
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"{case['case']}.nii.gz")))
        for name, value in labels.items():
            ref, hit = reference == value, prediction == value
            reported = case["metrics"][name]
            assert reported["n_reference"] == int(ref.sum()) and reported["n_prediction"] == int(hit.sum())
            if ref.any():
                dice = 2 * np.logical_and(ref, hit).sum() / (ref.sum() + hit.sum())
                assert reported["dice"] == pytest.approx(dice, abs=1e-9), (case["case"], name)
                per_class[name].append(dice)
    summary = evaluation["summary"]
    assert summary["n_cases"] == len(CT_TEST_IDS)
    for name, values in per_class.items():
        if values:
            assert summary["classes"][name]["dice"]["mean"] == pytest.approx(np.mean(values), abs=1e-9), name


    # pseudo-labels of the unlabelled target training images with nnU-Net's predictor: unfiltered, each must be
    # exactly nnU-Net's own segmentation of that image (same array order and geometry)
    _run([_bin("glua_pseudo_label"), "-d", str(DATASET_ID), "-c", CONFIG, "-tr", "GLUATrainer_Short", "-f", "all",
          "-device", "cpu", "-np", "0", "-o", "unfiltered", "--min-confidence", "0", "--min-component-fraction", "0",
          "--volume-factor", "inf", "--max-dropped-fraction", "1", "--keep-probabilities"], cli_env)
    pseudo = planned_phantom / "pseudolabels" / "unfiltered"
    target_cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (planned_phantom / "imagesTargetTr").iterdir())
    assert sorted(p.name for p in (pseudo / "labels").iterdir()) == [f"{c}.nii.gz" for c in target_cases]
    for case in target_cases:
        label = sitk.ReadImage(str(pseudo / "labels" / f"{case}.nii.gz"))
        nnunet = sitk.ReadImage(str(pseudo / "fold_all" / f"{case}.nii.gz"))
        image = sitk.ReadImage(str(planned_phantom / "imagesTargetTr" / f"{case}_0000.nii.gz"))
        assert label.GetSize() == image.GetSize() and label.GetDirection() == image.GetDirection()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(nnunet))


def test_source_only_trainer_through_nnunet_cli(planned_phantom, cli_env):
    env = dict(cli_env, nnUNet_n_proc_DA="0")
    _run([_bin("nnUNetv2_train"), str(DATASET_ID), CONFIG, "1", "-tr", "SourceOnlyTrainer_Short", "-device", "cpu"],
         env)
    model = Path(cli_env["nnUNet_results"]) / planned_phantom.name / f"SourceOnlyTrainer_Short__nnUNetPlans__{CONFIG}"
    assert (model / "fold_1" / "checkpoint_final.pth").is_file()

    # the README's self-training recipe through nnU-Net's CLI: pseudo-labels from this model, then the self-training
    # trainer from its weights on that set, with an augmentation worker (the training set is pickled into it)
    _run([_bin("glua_pseudo_label"), "-d", str(DATASET_ID), "-c", CONFIG, "-tr", "SourceOnlyTrainer_Short", "-f", "1",
          "-device", "cpu", "-np", "0", "-o", "round1", "--min-confidence", "0.5", "--volume-factor", "inf",
          "--max-dropped-fraction", "1"], cli_env)
    st_env = dict(cli_env, nnUNet_n_proc_DA="1", GLUA_PSEUDO_LABELS="round1")
    _run([_bin("nnUNetv2_train"), str(DATASET_ID), CONFIG, "1", "-tr", "SourceOnlyTrainer_SelfTrain_Short",
          "-device", "cpu", "-pretrained_weights", str(model / "fold_1" / "checkpoint_final.pth")], st_env)
    st_model = model.parent / f"SourceOnlyTrainer_SelfTrain_Short__nnUNetPlans__{CONFIG}" / "fold_1"
    checkpoint = torch.load(st_model / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["glua_self_training"]["set"] == "round1" and checkpoint["glua_self_training"]["cases"]
    log = next(st_model.glob("training_log_*.txt")).read_text()
    assert "pseudo-label set round1" in log
    assert f"segmentation head: taken from {model / 'fold_1' / 'checkpoint_final.pth'}" in log
