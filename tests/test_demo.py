"""The main job's own logic (the job itself runs for minutes and is timed by hand, see README): its rows run through
the benchmark's runner, with a fake nnU-Net (tests/test_benchmark.py) standing in for training and prediction."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from test_benchmark import ADAPT, ADAPT_ID, UPPER, FakeNnUNet, refuse, write_plans, write_raw_dataset

from nnunet_glua import demo
from nnunet_glua.experiments.benchmark import run_benchmark
from nnunet_glua.experiments.rows import ADAPTED_ROW, LOWER_ROW, START_ROW, select_rows
from nnunet_glua.paths import EXT_TRAINER_ENV


def test_planning_works_with_no_augmentation_workers_set():
    # nnUNet_n_proc_DA=0 is the usual CPU setting; nnU-Net's planner would pass it to torch.set_num_threads
    env = {"nnUNet_n_proc_DA": "0", "nnUNet_raw": "/data/raw"}
    assert demo.planning_env(env) == {"nnUNet_raw": "/data/raw"}
    assert env["nnUNet_n_proc_DA"] == "0"  # the caller's mapping is left alone
    assert demo.planning_env({"nnUNet_n_proc_DA": "4"}) == {"nnUNet_n_proc_DA": "4"}
    assert demo.planning_env({}) == {}


def test_demo_rows_are_the_benchmark_rows_it_compares():
    # the printed table takes its lower bound by name: the demo's rows must carry the benchmark's labels
    assert [r.label for r in select_rows(demo.DEMO_ROWS)] == [START_ROW, LOWER_ROW, ADAPTED_ROW]
    assert demo.GLUA_ROW in demo.DEMO_ROWS
    # --self-train: each self-training row starts from a row the demo trains anyway, GLUA's from GLUA
    rows = select_rows(demo.DEMO_ROWS + demo.SELF_TRAINING_ROWS)
    assert [r.key for r in rows][:3] == ["source-only", "source-only-continued", "glua"]
    assert {r.key: r.starts_from for r in rows[3:]} == {"glua+st": "glua", "source-only+st": "source-only-continued"}
    assert all(r.pseudo_labels for r in rows[3:]) and demo.SELF_TRAINED_GLUA_ROW in demo.SELF_TRAINING_ROWS


def _final_names(command: dict) -> dict:
    # predictions are written into a temporary sibling folder that is renamed when complete; a dry run shows the
    # final name
    return {**command, "argv": [re.sub(r"/\.partial-[0-9a-f]{8}-", "/", a) for a in command["argv"]]}


def _without_mirroring(command: dict, mirrored_out: str, out: str) -> dict:
    argv = [a.replace(mirrored_out, out) for a in command["argv"]]
    if Path(argv[0]).name == "nnUNetv2_predict":
        argv.append("--disable_tta")
    return {"argv": argv, "env": {k: v.replace(mirrored_out, out) for k, v in command["env"].items()}}


def test_demo_runs_the_benchmark_rows_through_the_benchmark_runner(tmp_path, monkeypatch):
    write_raw_dataset(ADAPT, "adaptation", ["src_000", "src_001"], {"upper_bound_dataset": UPPER})
    write_plans(ADAPT)
    # the row trainings must not leave the plugin's trainer folder registered for the other test modules
    monkeypatch.setenv(EXT_TRAINER_ENV, os.environ.get(EXT_TRAINER_ENV, ""))
    seed = 2  # the fake predictions are defined for seeds 0-2
    # the benchmark's command line for the demo's rows, as the dry run prints it before anything exists
    benchmark = run_benchmark(ADAPT_ID, schedule="_Demo", fine_tune_schedule="_DemoFineTune",
                              rows=["source-only-continued", "glua"], seeds=(seed,), device="cpu", num_processes=1,
                              dry_run=True, runner=refuse, test_time_mirroring=False)
    mirrored = run_benchmark(ADAPT_ID, schedule="_Demo", fine_tune_schedule="_DemoFineTune",
                             rows=["source-only-continued", "glua"], seeds=(seed,), device="cpu", num_processes=1,
                             dry_run=True, runner=refuse)

    # data preparation, translator and pictures need real nnU-Net runs; they are replaced, the rows are not
    def prepare_data(workdir, task, direction, num_cases, seed, num_processes, configuration, runner, steps,
                     appearance="standard"):
        return demo.DemoData(Path(os.environ["nnUNet_raw"]) / ADAPT, tmp_path / "target")

    translator = tmp_path / "translator" / "checkpoint_final.pth"
    monkeypatch.setattr(demo, "prepare_data", prepare_data)
    monkeypatch.setattr(demo, "train_translator", lambda settings, seed, device: translator)
    monkeypatch.setattr(demo, "_write_figures", lambda out, settings, seed, translator: {})
    fake = FakeNnUNet(schedule="_Demo", fine_tune_schedule="_DemoFineTune")
    workers = []

    def runner(command):
        workers.append(os.environ.get("nnUNet_n_proc_DA"))
        fake(command)

    monkeypatch.setenv("nnUNet_n_proc_DA", "3")
    summary = demo.run_demo(tmp_path / "work", num_cases=2, seed=seed, num_processes=1, device="cpu",
                            configuration="3d_fullres", runner=runner)

    ran = [_final_names(c.to_dict()) for c in fake.calls]
    assert ran == benchmark["commands"]
    predicts = [c for c in fake.calls if c.program == "nnUNetv2_predict"]
    assert len(predicts) == 3 and all(c.argv[-1] == "--disable_tta" for c in predicts)
    # the benchmark's command line (which mirrors, into a folder of its own) gives the same commands but for that
    assert ran == [_without_mirroring(c, mirrored["out"], benchmark["out"]) for c in mirrored["commands"]]
    # augmentation workers only compete for the cores of a CPU run; the caller's setting comes back afterwards
    assert workers == ["0"] * len(fake.calls) and os.environ["nnUNet_n_proc_DA"] == "3"

    out = Path(benchmark["out"])
    assert out.name == "glua_benchmark_3d_fullres_Demo_then_DemoFineTune_no_mirroring"
    assert summary["benchmark"] == str(out) and summary["test_time_mirroring"] is False
    assert list(summary["evaluations"]) == [START_ROW, LOWER_ROW, ADAPTED_ROW]
    for label, path in summary["evaluations"].items():
        assert Path(path).is_file() and Path(path).parent.parent.parent == out / f"seed_{seed}"
    assert json.loads((out / "benchmark.json").read_text())["settings"]["test_time_mirroring"] is False
    assert json.loads((tmp_path / "work" / "demo_summary.json").read_text()) == summary
    # a second run resumes: every row is finished, nothing runs
    demo.run_demo(tmp_path / "work", num_cases=2, seed=seed, num_processes=1, device="cpu",
                  configuration="3d_fullres", runner=refuse)


def test_environment_changes_are_undone(monkeypatch):
    monkeypatch.setenv("nnUNet_n_proc_DA", "7")
    monkeypatch.delenv("GLUA_DEMO_UNSET", raising=False)
    with demo._environ({"nnUNet_n_proc_DA": None, "GLUA_DEMO_UNSET": "1"}):
        assert "nnUNet_n_proc_DA" not in os.environ and os.environ["GLUA_DEMO_UNSET"] == "1"
    assert os.environ["nnUNet_n_proc_DA"] == "7" and "GLUA_DEMO_UNSET" not in os.environ


def test_phantom_test_ids_keep_the_public_split_or_the_last_cases():
    assert demo.phantom_test_ids((1003, 1008, 1014, 1019), range(1001, 1021)) == [1003, 1008, 1014, 1019]
    assert demo.phantom_test_ids((1003, 1008, 1014, 1019), range(1001, 1013)) == [1011, 1012]
    assert demo.phantom_test_ids((1007, 1009, 1018, 1019), range(1001, 1007)) == [1006]
    assert demo.phantom_test_ids((1007, 1009, 1018, 1019), [1001]) == []


def test_a_phantom_with_fewer_cases_converts_with_test_cases_of_both_modalities(tmp_path, monkeypatch):
    from nnunet_glua.phantom import make_phantom

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    make_phantom("cardiac", tmp_path / "phantom", num_cases=6, seed=0, size=32)
    dataset_dir = demo.DEMO_TASKS["cardiac"].convert(tmp_path / "phantom", "CT2MR", 931, 932, 1)
    info = json.loads((dataset_dir / "dataset.json").read_text())
    assert len(list((dataset_dir / "imagesTs").glob("*.nii.gz"))) == 1
    assert len(list((dataset_dir / "labelsTr").glob("*.nii.gz"))) == 5
    assert info["numTraining"] == 5


def test_a_work_folder_holding_a_phantom_drawn_otherwise_is_refused(tmp_path, monkeypatch):
    from nnunet_glua.experiments.errors import BenchmarkError
    from nnunet_glua.phantom import make_phantom

    make_phantom("cardiac", tmp_path / "phantom_cardiac", num_cases=6, seed=0, size=32, progress=False)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    with pytest.raises(BenchmarkError, match=r"appearance standard \(asked: alt\)"):
        demo.prepare_data(tmp_path, demo.DEMO_TASKS["cardiac"], "CT2MR", 6, 0, 1, "2d", refuse, demo._Steps(4),
                          phantom_size=32, appearance="alt")
    assert not (tmp_path / "raw").exists()


def test_the_abdominal_task_converts_its_phantom_with_test_cases_of_both_modalities(tmp_path, monkeypatch):
    from nnunet_glua.phantom import make_phantom

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    make_phantom("abdominal", tmp_path / "phantom", num_cases=6, seed=0, size=32)
    dataset_dir = demo.DEMO_TASKS["abdominal"].convert(tmp_path / "phantom", "CT2MR", 935, 936, 1)
    info = json.loads((dataset_dir / "dataset.json").read_text())
    assert "liver" in info["labels"] and "spleen" in info["labels"]
    assert len(list((dataset_dir / "imagesTs").glob("*.nii.gz"))) >= 1
    assert len(list((dataset_dir / "imagesTr").glob("*.nii.gz"))) >= 4
    assert (tmp_path / "raw" / "Dataset936_Abdomen_CT2MR_TargetSupervised").is_dir()
