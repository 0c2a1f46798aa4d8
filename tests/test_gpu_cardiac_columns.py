"""The prepared GPU command for the cardiac columns (python -m nnunet_glua.evaluation.gpu_cardiac_columns): its
budget is ten times the CPU table's, its dry run prints the benchmark's commands for the GPU, and it runs on a
machine where nnU-Net and this package have no console scripts (an unpacked bundle, the checkout on PYTHONPATH)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_benchmark import ADAPT, ADAPT_ID, UPPER, UPPER_TRAIN_CASES, write_raw_dataset

from nnunet_glua.evaluation import gpu_cardiac_columns
from nnunet_glua.evaluation.gpu_training_check import ensure_console_scripts
from nnunet_glua.paths import EXT_TRAINER_ENV
from nnunet_glua.training.schedules import SCHEDULES
from nnunet_glua.training.variants import TRAINERS


def _steps(suffix: str) -> int:
    schedule = next(s for s in SCHEDULES if s.suffix == suffix)
    return schedule.epochs * schedule.iterations


def test_gpu_columns_train_ten_times_the_cpu_budget_with_the_same_translator():
    assert _steps(gpu_cardiac_columns.SCHEDULE) == 10 * _steps("_Demo")
    assert _steps(gpu_cardiac_columns.FINE_TUNE_SCHEDULE) == 10 * _steps("_DemoFineTune")
    cpu = TRAINERS["GLUATrainer_DemoFineTune"][0].translator_config()
    gpu = TRAINERS["GLUATrainer" + gpu_cardiac_columns.FINE_TUNE_SCHEDULE][0].translator_config()
    assert gpu.iterations == 10 * cpu.iterations
    # only the budget differs: same networks, learning rate and batch
    assert gpu.network == cpu.network and (gpu.lr, gpu.batch_size) == (cpu.lr, cpu.batch_size)


def _fake_prepare(work: Path, direction: str, num_processes: int) -> int:
    # the real one writes the phantom and runs nnU-Net's planning; the benchmark only needs the datasets and plans
    write_raw_dataset(ADAPT, "adaptation", ["src_000", "src_001"], {"upper_bound_dataset": UPPER})
    write_raw_dataset(UPPER, "target_supervised", UPPER_TRAIN_CASES, {"adaptation_dataset": ADAPT})
    plans = Path(os.environ["nnUNet_preprocessed"]) / ADAPT / "nnUNetPlans.json"
    plans.parent.mkdir(parents=True, exist_ok=True)
    plans.write_text(json.dumps({"dataset_name": ADAPT, "plans_name": "nnUNetPlans",
                                 "image_reader_writer": "SimpleITKIO",
                                 "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [16, 16],
                                                           "spacing": [0.8, 0.8], "batch_size": 2}}}))
    return ADAPT_ID


def _keep_environment(monkeypatch):
    # main() points nnU-Net's folders at its own, registers the trainer folder and may extend PATH and PYTHONPATH
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", EXT_TRAINER_ENV, "PYTHONUNBUFFERED", "PATH",
                 "PYTHONPATH", "nnUNet_def_n_proc"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


def test_the_data_is_the_cpu_tables(tmp_path, monkeypatch):
    from nnunet_glua import demo

    calls = []
    monkeypatch.setattr(demo, "prepare_data", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert gpu_cardiac_columns._prepare(tmp_path, "MR2CT", 3) == demo.DEMO_TASKS["cardiac"].dataset_ids["MR2CT"][0]
    (workdir, task, direction), options = calls[0]
    assert (workdir, task.phantom_kind, direction) == (tmp_path, "cardiac", "MR2CT")
    # the demo's phantom (its size, its default appearance), as in the CPU table
    assert {k: options[k] for k in ("num_cases", "seed", "configuration", "phantom_size")} == {
        "num_cases": 20, "seed": 0, "configuration": "2d", "phantom_size": demo.DEMO_PHANTOM_SIZE}
    assert "appearance" not in options


def test_the_gpu_training_checks_data_is_the_demos_phantom_at_the_size_asked_for(tmp_path, monkeypatch):
    from nnunet_glua import demo
    from nnunet_glua.evaluation.gpu_training_check import prepare_demo_data

    calls = []
    monkeypatch.setattr(demo, "prepare_data", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert prepare_demo_data(tmp_path, "CT2MR", "3d_fullres", 2, num_cases=6, phantom_size=48) == \
        demo.DEMO_TASKS["cardiac"].dataset_ids["CT2MR"][0]
    (_, task, direction), options = calls[0]
    assert (task.phantom_kind, direction) == ("cardiac", "CT2MR")
    assert {k: options[k] for k in ("num_cases", "seed", "configuration", "phantom_size")} == {
        "num_cases": 6, "seed": 0, "configuration": "3d_fullres", "phantom_size": 48}


def test_an_unknown_row_is_refused_before_any_data_is_prepared(tmp_path, monkeypatch, capsys):
    _keep_environment(monkeypatch)
    monkeypatch.setattr(gpu_cardiac_columns, "_prepare", lambda *a: pytest.fail("data prepared"))
    with pytest.raises(SystemExit) as exit_info:
        gpu_cardiac_columns.main(["--out", str(tmp_path), "--rows", "glua", "no-such-row", "--dry-run"])
    assert exit_info.value.code == 2 and "no-such-row" in capsys.readouterr().err


def test_dry_run_prints_the_gpu_benchmark_of_each_direction(tmp_path, monkeypatch, capsys):
    _keep_environment(monkeypatch)
    monkeypatch.setattr(gpu_cardiac_columns, "_prepare", _fake_prepare)

    assert gpu_cardiac_columns.main(["--out", str(tmp_path / "cols"), "--directions", "CT2MR", "--dry-run"]) == 0

    printed = capsys.readouterr().out
    trains = [line for line in printed.splitlines() if "nnUNetv2_train " in line]
    trainers = [line.split(" -tr ")[1].split()[0] for line in trains]
    assert trainers == ["SourceOnlyTrainer_Demo10x", "SourceOnlyTrainer_Demo10xFineTune",
                        "GLUATrainer_Demo10xFineTune", "SourceOnlyTrainer_Demo10xFineTune",
                        "GLUATrainer_SelfTrain_Demo10xFineTune"]
    assert all(" 2d 0 -tr " in line and " -device cuda" in line for line in trains)
    predicts = [line for line in printed.splitlines() if "nnUNetv2_predict " in line]
    assert len(predicts) == 5 and not any("--disable_tta" in line for line in predicts)  # mirroring, as on the CPU
    assert str(tmp_path / "cols" / "CT2MR" / "seed_0") in printed
    assert not (tmp_path / "cols" / "gpu_cardiac_columns.json").exists()  # a dry run writes no result


def test_launchers_are_written_for_missing_console_scripts(tmp_path, monkeypatch):
    # as on the GPU machine: nothing next to the interpreter, nothing on PATH; the interpreter is a wrapper, so that
    # a launcher only runs when its first line names this interpreter
    interpreter = tmp_path / "no_scripts" / "python"
    interpreter.parent.mkdir()
    interpreter.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    interpreter.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(interpreter))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    written = ensure_console_scripts(tmp_path / "bin", ("nnUNetv2_predict", "glua_pseudo_label"))

    assert written == ["nnUNetv2_predict", "glua_pseudo_label"]
    assert os.environ["PATH"].split(os.pathsep)[0] == str(tmp_path / "bin")
    env = {**os.environ, "PATH": os.defpath}
    for name, usage in (("glua_pseudo_label", "usage: glua_pseudo_label"), ("nnUNetv2_predict", "usage:")):
        run = subprocess.run([str(tmp_path / "bin" / name), "--help"], capture_output=True, text=True, env=env,
                             timeout=120)
        assert run.returncode == 0 and usage in run.stdout, run.stderr


def test_this_packages_programs_have_launchers_that_match_its_console_scripts():
    # a launcher is written from OWN_SCRIPTS where the checkout is not installed: it must start what
    # pip's console script starts, for every program of this package the benchmark calls
    import configparser

    from nnunet_glua.evaluation.gpu_training_check import OWN_SCRIPTS
    from nnunet_glua.experiments.commands import BENCHMARK_PROGRAMS

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    console_scripts = dict(line.split(" = ") for line in
                           config["options.entry_points"]["console_scripts"].strip().splitlines())
    assert {name: console_scripts[name] for name in OWN_SCRIPTS} == OWN_SCRIPTS
    assert {n for n, dist in BENCHMARK_PROGRAMS.items() if dist == "nnunet-glua"} <= set(OWN_SCRIPTS)
