"""The user's workflow through the real command-line tools, on a small cardiac phantom:
glua_make_phantom -> glua_convert_mmwhs -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train -tr GLUATrainer_Short
-> nnUNetv2_predict -tr GLUATrainer_Short -> glua_evaluate, plus the source-only trainer found the same way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    out = _run([_bin("nnUNetv2_train"), str(DATASET_ID), CONFIG, "0", "-tr", "GLUATrainer_Short", "-device", "cpu"],
               train_env)
    assert "GLUA components" in out and "translator:" in out
    model = Path(cli_env["nnUNet_results"]) / planned_phantom.name / f"GLUATrainer_Short__nnUNetPlans__{CONFIG}"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    log = next((model / "fold_0").glob("training_log_*.txt")).read_text()
    assert "GLUA: align weight" in log

    pred = tmp_path / "pred"
    _run([_bin("nnUNetv2_predict"), "-i", str(planned_phantom / "imagesTs"), "-o", str(pred), "-d", str(DATASET_ID),
          "-c", CONFIG, "-tr", "GLUATrainer_Short", "-f", "0", "-device", "cpu", "-npp", "0", "-nps", "0"], cli_env)
    assert sorted(p.name for p in pred.glob("*.nii.gz")) == [f"ct_{i}.nii.gz" for i in CT_TEST_IDS]

    _run([_bin("glua_evaluate"), "-d", str(DATASET_ID), "-pred", str(pred), "-np", "1"], cli_env)
    evaluation = json.loads((pred / "evaluation.json").read_text())
    assert evaluation["summary"]  # per-class summaries on the target test set
    assert (pred / "evaluation.md").is_file() and (pred / "evaluation.csv").is_file()


def test_source_only_trainer_through_nnunet_cli(planned_phantom, cli_env):
    env = dict(cli_env, nnUNet_n_proc_DA="0")
    _run([_bin("nnUNetv2_train"), str(DATASET_ID), CONFIG, "1", "-tr", "SourceOnlyTrainer_Short", "-device", "cpu"],
         env)
    model = Path(cli_env["nnUNet_results"]) / planned_phantom.name / f"SourceOnlyTrainer_Short__nnUNetPlans__{CONFIG}"
    assert (model / "fold_1" / "checkpoint_final.pth").is_file()
