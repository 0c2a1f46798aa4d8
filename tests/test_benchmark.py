"""glua_benchmark (nnunet_glua.experiments): rows, seeds, medians, gap closed, resuming, dry-run command lines,
upper-bound preparation, test-time mirroring and provenance, with a fake command runner standing in for nnU-Net (no
training happens here).

The fake predictions are the test labels with the top ``k`` z-slices of every 4x4x4 structure removed, so each
row and seed has a known Dice: 2 (64 - 16 k) / (128 - 16 k).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import nnunet_glua
from nnunet_glua.evaluation.metrics import ClassSummary, Statistic, Summary
from nnunet_glua.experiments.benchmark import main, run_benchmark
from nnunet_glua.experiments.commands import BENCHMARK_PROGRAMS, Command, Executor
from nnunet_glua.experiments.datasets import read_dataset
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.medians import median_summary
from nnunet_glua.experiments.rows import ROWS, Row, _check_table, select_rows, trainer_name
from nnunet_glua.experiments.settings import default_out
from nnunet_glua.paths import EXT_TRAINER_ENV

DEFAULT_ROWS = [r for r in ROWS if not r.on_request]  # what glua_benchmark runs without --rows

ADAPT_ID, UPPER_ID, NO_UPPER_ID = 941, 942, 943
ADAPT = f"Dataset{ADAPT_ID}_BenchTiny"
UPPER = f"Dataset{UPPER_ID}_BenchTiny_TargetSupervised"
NO_UPPER = f"Dataset{NO_UPPER_ID}_BenchNoUpper"
LABELS = {"background": 0, "alpha": 1, "beta": 2}
TEST_CASES = ["tst_000", "tst_001"]
SOURCE_CASES = ["src_000", "src_001"]
UPPER_TRAIN_CASES = ["ub_000", "ub_001"]
SEEDS = (0, 1, 2)
# top z-slices removed from every structure, per row and seed
K = {
    "source-only": (3, 3, 2),
    "source-only-continued": (3, 2, 3),
    "glua": (1, 2, 1),
    "target-supervised": (0, 0, 1),
    "glua-no-local-mask": (2, 2, 2),
    "glua-style-only": (2, 3, 2),
    "glua-feature-only": (2, 1, 1),
    "glua-no-structure-shift": (3, 1, 2),
    "source-only-structure-shift": (3, 3, 2),
    "glua-late-translation": (2, 1, 2),
}
CUBES = {1: (2, 2, 2), 2: (9, 8, 6)}  # label -> (z, y, x) corner of its 4x4x4 cube


def dice_for(k: int) -> float:
    return 2 * (64 - 16 * k) / (128 - 16 * k)


def reference(case_index: int) -> np.ndarray:
    seg = np.zeros((16, 16, 16), np.uint8)
    for label, (z, y, x) in CUBES.items():
        seg[z:z + 4, y:y + 4, x + case_index:x + case_index + 4] = label
    return seg


def write_volume(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 1.5))
    image.SetOrigin((10.0, -4.0, 2.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_raw_dataset(name: str, role: str, training: list[str], glua_extra: dict) -> Path:
    folder = Path(os.environ["nnUNet_raw"]) / name
    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(0)
    for i, case in enumerate(training):
        write_volume(rng.normal(size=(16, 16, 16)).astype(np.float32), folder / "imagesTr" / f"{case}_0000.nii.gz")
        write_volume(reference(i), folder / "labelsTr" / f"{case}.nii.gz")
    for i, case in enumerate(TEST_CASES):
        write_volume(rng.normal(size=(16, 16, 16)).astype(np.float32), folder / "imagesTs" / f"{case}_0000.nii.gz")
        write_volume(reference(i), folder / "labelsTs" / f"{case}.nii.gz")
    dataset_json = {
        "name": name, "channel_names": {"0": "MR"}, "labels": LABELS, "numTraining": len(training),
        "file_ending": ".nii.gz",
        "glua": {"role": role, "source_modality": "MR", "target_modality": "CT", "direction": "MR2CT",
                 "target_test_images_folder": "imagesTs", "target_test_labels_folder": "labelsTs",
                 "target_test_cases": TEST_CASES, "source_training_cases": training, **glua_extra},
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder


def write_plans(dataset_name: str) -> Path:
    path = Path(os.environ["nnUNet_preprocessed"]) / dataset_name / "nnUNetPlans.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    plans = {"dataset_name": dataset_name, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
             "configurations": {"3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres",
                                               "patch_size": [16, 16, 16], "spacing": [1.5, 0.8, 0.8],
                                               "batch_size": 2}}}
    path.write_text(json.dumps(plans, indent=2))
    return path


@pytest.fixture(scope="module")
def datasets():
    write_raw_dataset(ADAPT, "adaptation", SOURCE_CASES, {"upper_bound_dataset": UPPER})
    write_raw_dataset(UPPER, "target_supervised", UPPER_TRAIN_CASES, {"adaptation_dataset": ADAPT})
    write_raw_dataset(NO_UPPER, "adaptation", SOURCE_CASES, {"upper_bound_dataset": None})
    for name in (ADAPT, NO_UPPER):
        write_plans(name)
    upper_pre = Path(os.environ["nnUNet_preprocessed"]) / UPPER
    if upper_pre.exists():
        shutil.rmtree(upper_pre)
    with pytest.MonkeyPatch.context() as mp:
        # run_benchmark registers the plugin's trainer folder; keep that out of the other test modules
        mp.setenv(EXT_TRAINER_ENV, os.environ.get(EXT_TRAINER_ENV, ""))
        yield


class FakeNnUNet:
    """Stands in for nnU-Net's commands: writes what each would write, and records every call. ``schedule`` and
    ``fine_tune_schedule`` are the trainer suffixes of the two stages it expects."""

    def __init__(self, schedule: str = "_Short", fine_tune_schedule: str = "_Short"):
        self.calls: list[Command] = []
        self.schedule, self.fine_tune_schedule = schedule, fine_tune_schedule

    @staticmethod
    def option(command: Command, flag: str) -> str:
        return command.argv[command.argv.index(flag) + 1]

    def __call__(self, command: Command) -> None:
        self.calls.append(command)
        pre = Path(os.environ["nnUNet_preprocessed"])
        name = command.program
        if name == "nnUNetv2_extract_fingerprint":
            (pre / UPPER).mkdir(parents=True, exist_ok=True)
            (pre / UPPER / "dataset_fingerprint.json").write_text("{}")
        elif name == "nnUNetv2_move_plans_between_datasets":
            plans = json.loads((pre / ADAPT / "nnUNetPlans.json").read_text())
            plans["dataset_name"] = UPPER
            (pre / UPPER / "nnUNetPlans.json").write_text(json.dumps(plans))
        elif name == "nnUNetv2_preprocess":
            data, gt = pre / UPPER / "nnUNetPlans_3d_fullres", pre / UPPER / "gt_segmentations"
            data.mkdir(parents=True, exist_ok=True)
            gt.mkdir(parents=True, exist_ok=True)
            for case in UPPER_TRAIN_CASES:
                (data / f"{case}.pkl").write_bytes(b"properties")
                (gt / f"{case}.nii.gz").write_bytes(b"label")
        elif name == "nnUNetv2_train":
            self.train(command)
        elif name == "nnUNetv2_predict":
            self.predict(command)
        else:
            raise AssertionError(f"unexpected command {command.shell()}")

    def train(self, command: Command) -> None:
        dataset_id, configuration, fold = command.argv[1:4]
        trainer, plans = self.option(command, "-tr"), self.option(command, "-p")
        results = Path(command.env["nnUNet_results"])
        dataset = ADAPT if dataset_id == str(ADAPT_ID) else UPPER
        folder = results / dataset / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        if "-pretrained_weights" in command.argv:
            # a second-stage row: its start model must have been trained already, in the same seed
            start = Path(self.option(command, "-pretrained_weights"))
            assert start.read_text() == f"SourceOnlyTrainer{self.schedule} seed {command.env['GLUA_SEED']}", start
        (folder / "checkpoint_final.pth").write_text(f"{trainer} seed {command.env['GLUA_SEED']}")
        if trainer.startswith("GLUATrainer") and "FeatureOnly" not in trainer:
            translator = results / dataset / f"GLUATranslator__{plans}__{configuration}" / "checkpoint_final.pth"
            if not translator.exists():
                translator.parent.mkdir(parents=True, exist_ok=True)
                translator.write_text(f"translator seed {command.env['GLUA_SEED']}")

    def predict(self, command: Command) -> None:
        trainer, dataset_id = self.option(command, "-tr"), self.option(command, "-d")
        seed = int(command.env["GLUA_SEED"])
        second_stage = "nnUNet_results_from_source-only" in command.env["nnUNet_results"]
        key = {(r.trainer + (self.schedule if r.first_stage else self.fine_tune_schedule), not r.first_stage): r.key
               for r in ROWS if not r.upper_bound}[(trainer, second_stage)]
        if dataset_id == str(UPPER_ID):
            key = "target-supervised"
        k = K[key][seed]
        images = Path(self.option(command, "-i"))
        labels = images.parent / "labelsTs"
        out = Path(self.option(command, "-o"))
        for case in TEST_CASES:
            ref = sitk.ReadImage(str(labels / f"{case}.nii.gz"))
            seg = sitk.GetArrayFromImage(ref)
            for label, (z, _, _) in CUBES.items():
                for dz in range(4 - k, 4):
                    plane = seg[z + dz]
                    plane[plane == label] = 0
            pred = sitk.GetImageFromArray(seg)
            pred.CopyInformation(ref)
            sitk.WriteImage(pred, str(out / f"{case}.nii.gz"))


def refuse(command: Command) -> None:
    raise AssertionError(f"nothing should run, but {command.shell()} was")


@pytest.fixture(scope="module")
def full_run(datasets, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    fake = FakeNnUNet()
    report = run_benchmark(ADAPT_ID, schedule="_Short", seeds=SEEDS, device="cpu", out=out,
                              num_processes=1, runner=fake)
    return report, fake, out


# ---------------------------------------------------------------------------------------------- full run
def test_medians_over_seeds_and_gap_closed_are_computed_on_known_values(full_run):
    report, _, out = full_run
    rows = report["rows"]
    assert list(rows) == ["source-only", "source-only, continued", "GLUA", "target-supervised",
                          "GLUA: no local mask", "GLUA: style only", "GLUA: feature only", "GLUA: no structure shift",
                          "source-only + structure shift", "GLUA: translation after augmentation"]
    labels = {r.key: r.label for r in ROWS}
    for key, ks in K.items():
        row = rows[labels[key]]
        for seed, k in zip(SEEDS, ks):
            assert row["seeds"][str(seed)]["dice"]["class_mean"] == pytest.approx(dice_for(k))
        expected = dice_for(int(np.median(ks)))  # Dice falls with k: the median Dice is Dice(median k)
        assert row["median"]["dice"]["classes"]["alpha"] == pytest.approx(expected)
        assert row["median"]["dice"]["class_mean"] == pytest.approx(expected)
        assd = [row["seeds"][str(s)]["assd_mm"]["class_mean"] for s in SEEDS]
        assert row["median"]["assd_mm"]["class_mean"] == pytest.approx(float(np.median(assd)))
    lower, glua, upper = dice_for(3), dice_for(1), dice_for(0)
    expected_gap = (glua - lower) / (upper - lower)  # 0.762; the mean over seeds would give another value
    assert report["comparison"]["gap_closed"]["GLUA"]["dice"]["class_mean"] == pytest.approx(expected_gap)
    assert report["comparison"]["gap_closed"]["GLUA"]["dice"]["classes"]["beta"] == pytest.approx(expected_gap)
    head = report["headline"]["GLUA"]
    assert head["dice_gain"] == pytest.approx(glua - lower)
    assert head["wide_margin"] is True
    # seed 1: GLUA == source-only, continued
    assert head["gap_closed_dice_per_seed"]["1"] == pytest.approx(0.0)
    assert report["headline"]["GLUA: style only"]["wide_margin"] is False
    # the model every row starts from is shown, but the gap is measured from source-only continued
    assert set(report["headline"]) == set(rows) - {"source-only", "source-only, continued", "target-supervised"}

    markdown = (out / "benchmark.md").read_text()
    assert f"{100 * expected_gap:.1f} %" in markdown
    for label in rows:
        assert f"| {label} |" in markdown
    stored = json.loads((out / "benchmark.json").read_text())
    assert stored["rows"]["GLUA"]["trainer"] == "GLUATrainer_Short"
    assert stored["settings"]["test_time_mirroring"] is True and "test-time mirroring on" in markdown


def test_every_row_and_seed_has_its_evaluation_and_wall_time(full_run):
    report, _, out = full_run
    for row in DEFAULT_ROWS:
        for seed in SEEDS:
            folder = out / f"seed_{seed}" / row.key / "evaluation"
            assert {"evaluation.json", "evaluation.csv", "evaluation.md", "row.json"} <= {
                p.name for p in folder.iterdir()}
            evaluation = json.loads((folder / "evaluation.json").read_text())
            assert sorted(c["case"] for c in evaluation["cases"]) == TEST_CASES
            # every row, the upper bound included, is scored against the adaptation dataset's labels
            assert evaluation["metadata"]["reference_folder"] == str(
                (Path(os.environ["nnUNet_raw"]) / ADAPT / "labelsTs").resolve())
            times = report["rows"][row.label]["seeds"][str(seed)]["wall_time_s"]
            assert all(isinstance(times[k], float) and times[k] >= 0
                       for k in ("train_s", "predict_s", "evaluate_s", "total_s"))


def test_commands_use_the_row_trainers_seeded_results_roots_and_moved_plans(full_run):
    _, fake, out = full_run
    programs = [c.program for c in fake.calls]
    # the upper bound is prepared once, before anything trains on it
    assert programs[:3] == ["nnUNetv2_extract_fingerprint", "nnUNetv2_move_plans_between_datasets",
                            "nnUNetv2_preprocess"]
    move = fake.calls[1]
    assert move.argv[1:] == ("-s", str(ADAPT_ID), "-t", str(UPPER_ID), "-sp", "nnUNetPlans", "-tp", "nnUNetPlans")
    assert fake.calls[2].argv[1:] == ("-d", str(UPPER_ID), "-c", "3d_fullres", "-plans_name", "nnUNetPlans",
                                      "-np", "1")
    trains = [c for c in fake.calls if c.program == "nnUNetv2_train"]
    predicts = [c for c in fake.calls if c.program == "nnUNetv2_predict"]
    assert len(trains) == len(predicts) == len(SEEDS) * len(DEFAULT_ROWS)
    expected = [(str(UPPER_ID) if r.upper_bound else str(ADAPT_ID), f"{r.trainer}_Short")
                for _ in SEEDS for r in DEFAULT_ROWS]
    assert [(c.argv[1], FakeNnUNet.option(c, "-tr")) for c in trains] == expected
    for command in trains:
        seed = int(command.env["GLUA_SEED"])
        seed_root = (out / f"seed_{seed}").resolve()
        if command.env["nnUNet_results"] == str(seed_root / "nnUNet_results"):  # the first stage: source-only
            assert "-pretrained_weights" not in command.argv and FakeNnUNet.option(command, "-tr") == \
                "SourceOnlyTrainer_Short" and command.argv[1] == str(ADAPT_ID)
        else:  # every other row starts from that seed's source-only model, in a root of its own
            assert command.env["nnUNet_results"] == str(seed_root / "nnUNet_results_from_source-only")
            assert FakeNnUNet.option(command, "-pretrained_weights") == str(
                seed_root / "nnUNet_results" / ADAPT / "SourceOnlyTrainer_Short__nnUNetPlans__3d_fullres" / "fold_0"
                / "checkpoint_final.pth")
    for command in trains + predicts:
        assert EXT_TRAINER_ENV in command.env
        assert FakeNnUNet.option(command, "-device") == "cpu"
    for command in trains:
        assert command.argv[2:4] == ("3d_fullres", "0") and FakeNnUNet.option(command, "-p") == "nnUNetPlans"
    for command in predicts:
        # every row predicts the adaptation dataset's test images
        assert FakeNnUNet.option(command, "-i") == str(Path(os.environ["nnUNet_raw"]) / ADAPT / "imagesTs")
        assert FakeNnUNet.option(command, "-f") == "0"
        assert "--disable_tta" not in command.argv  # the benchmark mirrors, nnU-Net's default


def test_provenance_hashes_commit_and_machine(full_run):
    report, _, out = full_run
    plans = Path(os.environ["nnUNet_preprocessed"]) / ADAPT / "nnUNetPlans.json"
    assert report["hashes"]["plans"]["sha256"] == hashlib.sha256(plans.read_bytes()).hexdigest()[:16]
    assert "upper_bound_plans" in report["hashes"]
    for seed in SEEDS:
        translators = report["hashes"]["translators"][str(seed)]
        assert list(translators) == [
            f"nnUNet_results_from_source-only/{ADAPT}/GLUATranslator__nnUNetPlans__3d_fullres/checkpoint_final.pth"]
        digest = hashlib.sha256(f"translator seed {seed}".encode()).hexdigest()[:16]
        assert translators[list(translators)[0]] == digest
    machine = report["machine"]
    assert machine["hostname"] and machine["cpu"] and machine["torch"] and machine["nnunetv2"] == "2.8.1"
    assert "gpu" in machine
    package_root = Path(nnunet_glua.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package_root, capture_output=True, text=True)
        expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    except OSError:
        expected = "unknown"
    assert report["project"]["commit"] == expected
    markdown = (out / "benchmark.md").read_text()
    assert report["hashes"]["plans"]["sha256"] in markdown and machine["hostname"] in markdown


# ---------------------------------------------------------------------------------------------- resuming
def test_second_run_skips_finished_rows_and_reuses_trained_folds(full_run, tmp_path):
    report, _, out = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    evaluations = sorted(copy.glob("seed_*/*/evaluation/evaluation.json"))
    assert len(evaluations) == len(SEEDS) * len(DEFAULT_ROWS)
    stamps = [p.stat().st_mtime_ns for p in evaluations]
    again = run_benchmark(ADAPT_ID, schedule="_Short", seeds=SEEDS, device="cpu", out=copy, num_processes=1,
                             runner=refuse)
    assert again["rows"]["GLUA"]["median"] == report["rows"]["GLUA"]["median"]
    assert [p.stat().st_mtime_ns for p in evaluations] == stamps  # finished rows are not evaluated again

    # a row recorded before test-time mirroring was a setting was predicted with mirroring, so it is kept
    record_file = copy / "seed_0" / "glua" / "evaluation" / "row.json"
    record = json.loads(record_file.read_text())
    del record["identity"]["test_time_mirroring"]
    record_file.write_text(json.dumps(record))
    run_benchmark(ADAPT_ID, schedule="_Short", seeds=SEEDS, device="cpu", out=copy, num_processes=1, runner=refuse)
    with pytest.raises(BenchmarkError, match="other settings"):
        run_benchmark(ADAPT_ID, schedule="_Short", seeds=SEEDS, device="cpu", out=copy, num_processes=1,
                      runner=refuse, test_time_mirroring=False)

    # a row whose evaluation is missing is predicted and evaluated again, but its trained fold is kept
    shutil.rmtree(copy / "seed_1" / "glua" / "evaluation")
    shutil.rmtree(copy / "seed_1" / "glua" / "predictions")
    fake = FakeNnUNet()
    run_benchmark(ADAPT_ID, schedule="_Short", seeds=SEEDS, device="cpu", out=copy, num_processes=1,
                     runner=fake)
    assert [c.program for c in fake.calls] == ["nnUNetv2_predict"]
    assert fake.calls[0].env["GLUA_SEED"] == "1"
    record = json.loads((copy / "seed_1" / "glua" / "evaluation" / "row.json").read_text())
    assert record["trained_by_this_benchmark"] is True  # the training time recorded before is kept


def test_a_benchmark_run_in_several_commands_reports_every_finished_row_and_seed(full_run, tmp_path):
    report, _, out = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    # one seed of one row, as a user finishing a benchmark piece by piece would run it
    part = run_benchmark(ADAPT_ID, schedule="_Short", seeds=[0], rows=["source-only-continued"], device="cpu",
                         out=copy, num_processes=1, runner=refuse)
    assert list(part["rows"]) == list(report["rows"]) and part["settings"]["seeds"] == list(SEEDS)
    assert part["settings"]["this_run"] == {"seeds": [0], "rows": ["source-only", "source-only-continued"]}
    for label, row in report["rows"].items():
        assert part["rows"][label]["median"] == row["median"], label
    assert part["comparison"]["gap_closed"] == report["comparison"]["gap_closed"]

    # a row missing for one seed: its median is over the others; a row made with other settings is left out
    shutil.rmtree(copy / "seed_2" / "glua")
    record_file = copy / "seed_1" / "glua-style-only" / "evaluation" / "row.json"
    record = json.loads(record_file.read_text())
    record["identity"]["trainer"] = "GLUATrainer_StyleOnly_Demo"
    record_file.write_text(json.dumps(record))
    part = run_benchmark(ADAPT_ID, schedule="_Short", seeds=[0], rows=["source-only-continued"], device="cpu",
                         out=copy, num_processes=1, runner=refuse)
    glua = part["rows"]["GLUA"]
    assert glua["seeds"]["2"] is None and glua["median"]["dice"]["class_mean"] == pytest.approx(
        float(np.median([dice_for(k) for k in K["glua"][:2]])))
    assert part["headline"]["GLUA"]["gap_closed_dice_per_seed"]["2"] is None
    assert part["rows"]["GLUA: style only"]["seeds"]["1"] is None
    markdown = (copy / "benchmark.md").read_text()
    assert "has not been run for that seed" in markdown
    assert "Rows finished at: " in markdown and "GLUA seed 0, 1" in markdown


def test_rerun_with_other_settings_into_the_same_folder_is_refused(full_run, tmp_path):
    _, _, out = full_run
    with pytest.raises(BenchmarkError, match="other settings"):
        run_benchmark(ADAPT_ID, schedule="", seeds=SEEDS, device="cpu", out=out, num_processes=1,
                         runner=refuse)


# ----------------------------------------------------------------------------------------------- dry run
def test_dry_run_prints_commands_and_writes_nothing(datasets, tmp_path, capsys):
    out = tmp_path / "dry"
    # an interrupted training of seed 0's GLUA row: the benchmark must continue it, not restart it
    fold = (out / "seed_0" / "nnUNet_results_from_source-only" / ADAPT / "GLUATrainer_Short__nnUNetPlans__3d_fullres"
            / "fold_0")
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pth").write_text("x")
    upper_pre = Path(os.environ["nnUNet_preprocessed"]) / UPPER
    if upper_pre.exists():
        shutil.rmtree(upper_pre)
    result = run_benchmark(ADAPT_ID, schedule="Short", seeds=(0, 5), device="cpu", out=out, ablations=False,
                              dry_run=True, runner=refuse)
    commands = [Command(tuple(c["argv"]), c["env"]) for c in result["commands"]]
    programs = [c.program for c in commands]
    assert programs[:3] == ["nnUNetv2_extract_fingerprint", "nnUNetv2_move_plans_between_datasets",
                            "nnUNetv2_preprocess"]
    trains = [c for c in commands if c.program == "nnUNetv2_train"]
    assert [(c.env["GLUA_SEED"], FakeNnUNet.option(c, "-tr")) for c in trains] == [
        (seed, trainer) for seed in ("0", "5")
        for trainer in ("SourceOnlyTrainer_Short", "SourceOnlyTrainer_Short", "GLUATrainer_Short",
                        "SourceOnlyTrainer_Short")]
    assert [c.argv[1] for c in trains] == [str(ADAPT_ID), str(ADAPT_ID), str(ADAPT_ID), str(UPPER_ID)] * 2
    # the interrupted training continues from its own checkpoint instead of starting from source-only again
    assert [("--c" in c.argv) for c in trains] == [False, False, True, False] * 1 + [False] * 4
    assert [("-pretrained_weights" in c.argv) for c in trains] == [False, True, False, True] + [False, True, True, True]
    printed = capsys.readouterr().out
    assert printed.count("nnUNetv2_predict") == 8
    assert "GLUA_SEED=5" in printed and "-tr GLUATrainer_Short" in printed
    assert not (out / "benchmark.json").exists() and not (out / "seed_5").exists()
    assert not upper_pre.exists()


def test_cli_dry_run_and_error_exit(datasets, tmp_path, capsys):
    code = main(["-d", str(NO_UPPER_ID), "--schedule", "_Short", "--rows", "source-only", "glua",
                    "--seeds", "3", "-device", "cpu", "--out", str(tmp_path / "o"), "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "GLUA_SEED=3" in printed and "-tr SourceOnlyTrainer_Short" in printed and "-tr GLUATrainer_Short" in printed
    assert "move_plans" not in printed
    assert "--disable_tta" not in printed  # the command line mirrors unless told not to
    code = main(["-d", str(NO_UPPER_ID), "--schedule", "_Short", "--rows", "glua", "--seeds", "3", "-device", "cpu",
                 "--disable-tta", "--dry-run"])
    printed = capsys.readouterr().out
    assert code == 0 and printed.count("--disable_tta") == 2  # both rows' predictions
    assert "glua_benchmark_3d_fullres_Short_no_mirroring" in printed
    code = main(["-d", str(NO_UPPER_ID), "--schedule", "_Short", "--seeds", "0", "-device", "cpu",
                    "--out", str(tmp_path / "o"), "--dry-run"])
    assert code == 1
    assert "--upper-bound-id" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- bad input
def test_missing_upper_bound_dataset_is_an_error_with_advice(datasets, tmp_path):
    with pytest.raises(BenchmarkError, match="--upper-bound-id"):
        run_benchmark(NO_UPPER_ID, schedule="_Short", device="cpu", out=tmp_path, dry_run=True, runner=refuse)
    # named in dataset.json but never converted
    folder = Path(os.environ["nnUNet_raw"]) / NO_UPPER
    dataset_json = json.loads((folder / "dataset.json").read_text())
    try:
        dataset_json["glua"]["upper_bound_dataset"] = "Dataset944_Missing"
        (folder / "dataset.json").write_text(json.dumps(dataset_json))
        with pytest.raises(BenchmarkError, match="Dataset944_Missing"):
            run_benchmark(NO_UPPER_ID, schedule="_Short", device="cpu", out=tmp_path, dry_run=True, runner=refuse)
        # a path instead of a dataset folder name must not reach outside nnUNet_raw
        for bad in (f"../{UPPER}", str(folder.parent / UPPER), "not_a_dataset"):
            dataset_json["glua"]["upper_bound_dataset"] = bad
            (folder / "dataset.json").write_text(json.dumps(dataset_json))
            with pytest.raises(BenchmarkError, match="must be the name of a dataset folder"):
                run_benchmark(NO_UPPER_ID, schedule="_Short", device="cpu", out=tmp_path, dry_run=True,
                                 runner=refuse)
    finally:
        dataset_json["glua"]["upper_bound_dataset"] = None
        (folder / "dataset.json").write_text(json.dumps(dataset_json))


def test_upper_bound_with_other_plans_is_refused(datasets, tmp_path):
    upper_pre = Path(os.environ["nnUNet_preprocessed"]) / UPPER
    if upper_pre.exists():
        shutil.rmtree(upper_pre)
    plans = write_plans(UPPER)
    content = json.loads(plans.read_text())
    content["configurations"]["3d_fullres"]["patch_size"] = [8, 16, 16]
    plans.write_text(json.dumps(content))
    (upper_pre / "dataset_fingerprint.json").write_text("{}")
    try:
        with pytest.raises(BenchmarkError, match="differs from"):
            run_benchmark(ADAPT_ID, schedule="_Short", device="cpu", out=tmp_path, dry_run=True, runner=refuse)
    finally:
        shutil.rmtree(upper_pre)


def test_bad_rows_seeds_and_unknown_trainer(datasets, tmp_path):
    with pytest.raises(BenchmarkError, match="unknown row"):
        run_benchmark(ADAPT_ID, rows=["glua", "oracle"], dry_run=True, out=tmp_path, runner=refuse)
    with pytest.raises(BenchmarkError, match="distinct"):
        run_benchmark(ADAPT_ID, seeds=(1, 1), dry_run=True, out=tmp_path, runner=refuse)
    with pytest.raises(BenchmarkError, match="GLUATrainer_Tiny not found"):
        run_benchmark(ADAPT_ID, schedule="_Tiny", rows=["glua"], dry_run=True, out=tmp_path, runner=refuse)


# ------------------------------------------------------------------------------------------------- units
def test_row_selection_and_schedule_names():
    assert [r.key for r in select_rows(None, ablations=False)] == ["source-only", "source-only-continued", "glua",
                                                                       "target-supervised"]
    assert [r.key for r in select_rows(["GLUA", "source-only"])] == ["source-only", "glua"]
    # a second-stage row brings the row it starts from
    assert [r.key for r in select_rows(["glua"])] == ["source-only", "glua"]
    assert trainer_name(select_rows(["glua-no-local-mask"])[-1], "Short") == "GLUATrainer_NoLocalMask_Short"
    assert trainer_name(select_rows(["target-supervised"])[-1], "") == "SourceOnlyTrainer"


def _summary(dice: float, assd: float | None) -> Summary:
    stat = Statistic(dice, 0.1, 2)
    assd_stat = Statistic(assd, 0.0, 2 if assd is not None else 0)
    cls = ClassSummary(label=1, dice=stat, assd_mm=assd_stat, assd_voxel=assd_stat, n_ok=2 if assd else 0,
                       n_missed=0 if assd else 2, n_false_positive=0, n_absent=0)
    n = 1 if assd is not None else 0
    return Summary(n_cases=2, classes={"alpha": cls},
                   class_mean={"dice": Statistic(dice, None, 1), "assd_mm": Statistic(assd, None, n),
                               "assd_voxel": Statistic(assd, None, n)})


def test_median_summary_takes_the_median_over_seeds_where_defined():
    median = median_summary([_summary(0.2, 3.0), _summary(0.9, None), _summary(0.5, 5.0)])
    alpha = median.classes["alpha"]
    assert alpha.dice.mean == pytest.approx(0.5) and alpha.dice.std is None and alpha.dice.n == 3
    assert alpha.assd_mm.mean == pytest.approx(4.0) and alpha.assd_mm.n == 2  # the seed that missed it is left out
    assert median.class_mean["dice"].mean == pytest.approx(0.5)
    assert median.class_mean["assd_mm"].mean == pytest.approx(4.0) and median.class_mean["assd_mm"].n == 1
    with pytest.raises(ValueError):
        median_summary([])


def test_second_stage_rows_take_the_fine_tune_schedule(datasets, tmp_path):
    result = run_benchmark(ADAPT_ID, configuration="3d_fullres", schedule="_Demo",
                              fine_tune_schedule="DemoFineTune", rows=["source-only-continued", "glua"], seeds=(0,),
                              device="cpu", out=tmp_path / "o", dry_run=True, runner=refuse)
    trains = [Command(tuple(c["argv"]), c["env"]) for c in result["commands"] if "nnUNetv2_train" in c["argv"][0]]
    assert [FakeNnUNet.option(c, "-tr") for c in trains] == ["SourceOnlyTrainer_Demo", "SourceOnlyTrainer_DemoFineTune",
                                                             "GLUATrainer_DemoFineTune"]
    assert default_out(read_dataset(Path(os.environ["nnUNet_raw"]) / ADAPT), "2d", "nnUNetPlans", "0", "_Demo",
                           "_DemoFineTune").name == "glua_benchmark_2d_Demo_then_DemoFineTune"


def test_prediction_without_test_time_mirroring_is_a_setting_with_a_folder_of_its_own(datasets):
    result = run_benchmark(ADAPT_ID, schedule="_Short", rows=["glua"], seeds=(0,), device="cpu", dry_run=True,
                           runner=refuse, test_time_mirroring=False)
    predicts = [Command(tuple(c["argv"]), c["env"]) for c in result["commands"] if "nnUNetv2_predict" in c["argv"][0]]
    assert len(predicts) == 2 and all(c.argv[-1] == "--disable_tta" for c in predicts)
    assert Path(result["out"]) == (Path(os.environ["nnUNet_results"]) / ADAPT
                                   / "glua_benchmark_3d_fullres_Short_no_mirroring").resolve()


def test_row_table_rows_start_from_an_earlier_row():
    start = Row("a", "A", "SourceOnlyTrainer", "from scratch")
    later = Row("b", "B", "GLUATrainer", "from a", starts_from="a")
    assert list(_check_table([start, later])) == ["a", "b"]
    with pytest.raises(ValueError, match="not listed before it"):
        _check_table([later, start])
    with pytest.raises(ValueError, match="used twice"):
        _check_table([start, start])


def test_a_missing_start_model_is_an_error_naming_the_row_to_run(full_run, tmp_path):
    _, _, out = full_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "seed_1" / "glua")
    shutil.rmtree(copy / "seed_1" / "nnUNet_results_from_source-only" / ADAPT
                  / "GLUATrainer_Short__nnUNetPlans__3d_fullres")
    (copy / "seed_1" / "nnUNet_results" / ADAPT / "SourceOnlyTrainer_Short__nnUNetPlans__3d_fullres" / "fold_0"
     / "checkpoint_final.pth").unlink()
    with pytest.raises(BenchmarkError, match="run row 'source-only' of seed 1 first"):
        run_benchmark(ADAPT_ID, schedule="_Short", seeds=SEEDS, device="cpu", out=copy, num_processes=1,
                         runner=refuse)


def test_self_training_rows_pseudo_label_with_their_start_model_and_train_on_that_set(datasets, tmp_path):
    result = run_benchmark(ADAPT_ID, schedule="_Short", rows=["glua+st2", "source-only+st"], seeds=(0,), device="cpu",
                           out=tmp_path / "o", dry_run=True, runner=refuse, test_time_mirroring=False)
    commands = [Command(tuple(c["argv"]), c["env"]) for c in result["commands"]]
    steps = [(c.program, FakeNnUNet.option(c, "-tr")) for c in commands
             if c.program in ("glua_pseudo_label", "nnUNetv2_train")]
    assert steps == [("nnUNetv2_train", "SourceOnlyTrainer_Short"), ("nnUNetv2_train", "SourceOnlyTrainer_Short"),
                     ("nnUNetv2_train", "GLUATrainer_Short"),
                     ("glua_pseudo_label", "GLUATrainer_Short"), ("nnUNetv2_train", "GLUATrainer_SelfTrain_Short"),
                     ("glua_pseudo_label", "SourceOnlyTrainer_Short"),
                     ("nnUNetv2_train", "SourceOnlyTrainer_SelfTrain_Short"),
                     ("glua_pseudo_label", "GLUATrainer_SelfTrain_Short"),
                     ("nnUNetv2_train", "GLUATrainer_SelfTrain_Short")]
    seed_root = Path(result["out"]) / "seed_0"
    labelling = [c for c in commands if c.program == "glua_pseudo_label"]
    training = [c for c in commands if c.program == "nnUNetv2_train"][3:]
    starts = ["nnUNet_results_from_source-only", "nnUNet_results_from_source-only", "nnUNet_results_from_glua"]
    roots = ["nnUNet_results_from_glua", "nnUNet_results_from_source-only-continued", "nnUNet_results_from_glua+st"]
    names = set()
    for label, train, start, root in zip(labelling, training, starts, roots):
        # the start row's model, from its own results root, labels the set the row then trains on
        assert label.env["nnUNet_results"] == str(seed_root / start)
        assert FakeNnUNet.option(label, "-f") == "0" and label.argv[-1] == "--disable-tta"
        name = FakeNnUNet.option(label, "-o")
        assert train.env["GLUA_PSEUDO_LABELS"] == name and train.env["nnUNet_results"] == str(seed_root / root)
        assert FakeNnUNet.option(train, "-pretrained_weights").startswith(str(seed_root / start))
        names.add(name)
    assert len(names) == 3  # one set per start model


def test_every_program_the_benchmark_starts_is_one_of_the_programs_machines_are_set_up_for(datasets, tmp_path):
    # the GPU checks write launchers for BENCHMARK_PROGRAMS only: a program outside it would be missing there
    result = run_benchmark(ADAPT_ID, schedule="_Short", rows=[r.key for r in ROWS], seeds=(0,),
                           device="cpu", out=tmp_path / "o", dry_run=True, runner=refuse)
    started = {Command(tuple(c["argv"]), c["env"]).program for c in result["commands"]}
    assert started == set(BENCHMARK_PROGRAMS)
    with pytest.raises(ValueError, match="BENCHMARK_PROGRAMS"):
        Executor(refuse, dry_run=True).program("nnUNetv2_plan_and_preprocess")


class FakeNnUNetDroppingEveryCase(FakeNnUNet):
    """As :class:`FakeNnUNet`, and ``glua_pseudo_label`` writes a complete set whose filter dropped every case."""

    def __call__(self, command: Command) -> None:
        if command.program != "glua_pseudo_label":
            return super().__call__(command)
        self.calls.append(command)
        folder = Path(os.environ["nnUNet_raw"]) / ADAPT / "pseudolabels" / self.option(command, "-o")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pseudo_label_set.json").write_text(json.dumps(
            {"complete": True, "cases": {"t_000": {"status": "dropped: 3 of 4 structures dropped"}}}))


def test_a_row_whose_pseudo_labels_keep_no_case_is_reported_not_trained_and_the_others_run(datasets, tmp_path):
    out, labels = tmp_path / "o", {r.key: r.label for r in ROWS}
    fake = FakeNnUNetDroppingEveryCase()
    report = run_benchmark(ADAPT_ID, schedule="_Short", rows=["source-only-continued", "source-only+st",
                                                              "source-only+st2", "glua"],
                           seeds=(0,), device="cpu", out=out, num_processes=1, runner=fake)
    # the rows after the untrainable ones still ran and were evaluated
    assert set(report["rows"]) == {labels["source-only"], labels["source-only-continued"], labels["glua"]}
    reasons = report["not_trained"]
    assert "keeps no case" in reasons[labels["source-only+st"]]["0"]
    assert "'source-only+st', which was not trained" in reasons[labels["source-only+st2"]]["0"]
    trained = [FakeNnUNet.option(c, "-tr") for c in fake.calls if c.program == "nnUNetv2_train"]
    assert not any("SelfTrain" in t for t in trained) and "GLUATrainer_Short" in trained
    markdown = (out / "benchmark.md").read_text()
    assert "### Not trained" in markdown and "| " + labels["source-only+st"] + " | 0 | " in markdown
    # a later run of another row keeps reporting why, without trying the row again
    later = run_benchmark(ADAPT_ID, schedule="_Short", rows=["source-only-continued"], seeds=(0,), device="cpu",
                          out=out, num_processes=1, runner=FakeNnUNet())
    assert set(later["not_trained"]) == {labels["source-only+st"], labels["source-only+st2"]}


def test_a_self_training_row_with_filter_options_labels_a_set_of_its_own(datasets, tmp_path):
    result = run_benchmark(ADAPT_ID, schedule="_Short", rows=["glua+st", "glua+st-steered", "glua+st-balanced"],
                           seeds=(0,), device="cpu", out=tmp_path / "o", dry_run=True, runner=refuse)
    commands = [Command(tuple(c["argv"]), c["env"]) for c in result["commands"]]
    labelling = [c for c in commands if c.program == "glua_pseudo_label"]
    training = {FakeNnUNet.option(c, "-tr"): c.env.get("GLUA_PSEUDO_LABELS") for c in commands
                if c.program == "nnUNetv2_train"}
    # the plain and the balanced row train the same trainer from the same GLUA model: each into its own results
    # folder, or the second would report the first one's model
    roots = [c.env["nnUNet_results"] for c in commands
             if c.program == "nnUNetv2_train" and FakeNnUNet.option(c, "-tr") == "GLUATrainer_SelfTrain_Short"]
    assert len(roots) == 2 and len(set(roots)) == 2
    assert [FakeNnUNet.option(c, "--keep-most-confident") if "--keep-most-confident" in c.argv else None
            for c in labelling] == [None, None, "0.5"]
    plain, steered, balanced = (FakeNnUNet.option(c, "-o") for c in labelling)
    assert plain == steered != balanced  # the same filter shares a set; other options get their own
    assert training["GLUATrainer_SelfTrainSteered_Short"] == steered
