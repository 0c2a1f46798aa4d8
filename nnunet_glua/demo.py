"""The main job on the built-in phantom, end to end, with nothing to download.

Steps (each is skipped when its output already exists, so an interrupted run resumes where it stopped):
  1. write a cardiac phantom in the public MMWHS layout (``glua_make_phantom``)
  2. convert it into a UDA dataset and a target-supervised upper-bound dataset (``glua_convert_mmwhs``)
  3. plan and preprocess the source domain with plain nnU-Net (``nnUNetv2_plan_and_preprocess``)
  4. preprocess the unlabelled target images with the source plans (``glua_preprocess_target``)
  5. train the translator, CPU-sized (what ``GLUATrainer_DemoFineTune`` would otherwise do itself)
  6. the rows of ``glua_benchmark -d ID -c 2d --schedule _Demo --fine-tune-schedule _DemoFineTune --rows
     source-only-continued glua --seeds SEED``, run by the benchmark's own runner
     (:mod:`nnunet_glua.experiments`): source-only nnU-Net from scratch, fold 0; then, both starting from that model
     (``-pretrained_weights``) with the same second-stage schedule, source-only nnU-Net continued and GLUA, so that
     GLUA is compared with a source-only model trained for exactly as many steps; each row is predicted on the target
     test set and evaluated. Unlike the benchmark's command line, the demo predicts without test-time mirroring
     (``--disable_tta``) to save time, the same for every row. ``--self-train`` adds the rows ``glua+st`` and
     ``source-only+st``: each model pseudo-labels the unlabelled target training images (``glua_pseudo_label``) and
     trains on from them with its self-training trainer.
  7. draw pictures (target test predictions, the local gap mask, the translator's preview; with ``--self-train`` the
     GLUA model's pseudo-labels and their report) and print the rows (Dice, ASSD) on the target test set

All nnU-Net folders live under ``--workdir`` unless ``--use-env-paths`` is given, so the demo never touches a
user's own nnU-Net data. The rows' models, predictions and evaluations are in the benchmark's output folder,
``$nnUNet_results/<dataset>/glua_benchmark_<configuration>_Demo_then_DemoFineTune_no_mirroring/seed_<seed>/``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from nnunet_glua.experiments.commands import Command, CommandRunner, Executor, nnunet_program, subprocess_runner
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.settings import ExperimentSettings
from nnunet_glua.json_io import write_json
from nnunet_glua.nnunet_io import dataset_folders_with_id


def phantom_test_ids(default: Sequence[int], available: Sequence[int]) -> list[int]:
    """The test ids of a phantom with ``available`` case ids: the public split's ``default`` ids when the phantom has
    all of them (20 cases per modality), otherwise its last ids, as many as keep the public split's share of test
    cases (at least one), so that a smaller phantom (``--num-cases``) still converts."""
    available = sorted(available)
    if set(default) <= set(available):
        return list(default)
    share = max(1, round(len(default) * len(available) / 20))
    return available[-share:] if len(available) > share else []


def _convert_cardiac(phantom: Path, direction: str, dataset_id: int, upper_bound_id: int, num_processes: int) -> Path:
    from nnunet_glua.conversion.mmwhs import MMWHS_CT_TEST_IDS, MMWHS_MR_TEST_IDS, convert_mmwhs

    def ids(modality: str) -> list[int]:
        images = (phantom / f"{modality}_train").glob(f"{modality}_train_*_image.nii.gz")
        return [int(f.name.split("_")[2]) for f in images]

    return convert_mmwhs(phantom, direction, dataset_id, upper_bound_id=upper_bound_id, num_processes=num_processes,
                         ct_test_ids=phantom_test_ids(MMWHS_CT_TEST_IDS, ids("ct")),
                         mr_test_ids=phantom_test_ids(MMWHS_MR_TEST_IDS, ids("mr")))


def _convert_abdominal(phantom: Path, direction: str, dataset_id: int, upper_bound_id: int,
                       num_processes: int) -> Path:
    from nnunet_glua.conversion.abdomen import (ABDOMEN_CT_TEST_IDS, ABDOMEN_MR_TEST_IDS, convert_abdomen,
                                                find_chaos_scans)
    from nnunet_glua.conversion.btcv import find_btcv_scans

    chaos, btcv = phantom / "CHAOS", phantom / "BTCV"
    return convert_abdomen(chaos, btcv, direction, dataset_id, upper_bound_id=upper_bound_id,
                           num_processes=num_processes,
                           ct_test_ids=phantom_test_ids(ABDOMEN_CT_TEST_IDS, sorted(find_btcv_scans(btcv))),
                           mr_test_ids=phantom_test_ids(ABDOMEN_MR_TEST_IDS, sorted(find_chaos_scans(chaos))))


@dataclass(frozen=True)
class DemoTask:
    """A phantom kind and how the demo turns it into an adaptation dataset.

    ``dataset_ids`` maps a direction (``"CT2MR"``: CT labelled, MR unlabelled) to the ids of the adaptation and the
    target-supervised upper-bound dataset; ``convert(phantom folder, direction, id, upper-bound id, processes)``
    writes both and returns the adaptation dataset's raw folder.
    """

    phantom_kind: str
    dataset_ids: Mapping[str, tuple[int, int]]
    convert: Callable[[Path, str, int, int, int], Path]


# one entry per phantom the demo can run on (the paper's two tasks)
DEMO_TASKS: dict[str, DemoTask] = {
    "cardiac": DemoTask("cardiac", {"CT2MR": (903, 904), "MR2CT": (901, 902)}, _convert_cardiac),
    "abdominal": DemoTask("abdominal", {"CT2MR": (907, 908), "MR2CT": (905, 906)}, _convert_abdominal),
}
DEMO_TASK = "cardiac"
# CT source, MR target: on the phantom at this budget nnU-Net learns the MR heart (blood pools far brighter than
# the myocardium) quickly enough for the comparison to mean something; with a CT target even target-supervised
# nnU-Net trained from scratch reached only 0.35 Dice in the demo's 750 first-stage steps (docs/benchmarks.md).
# --direction MR2CT runs the other way.
DEMO_DIRECTION = "CT2MR"
# 2D: on this phantom (heart structures 4-7 voxels across at the demo's size) nnU-Net's 2D U-Net reached a source
# validation Dice of 0.06 after 250 steps and 0.79 after 750 steps of about 0.26 s on 2 CPU cores, where 250 steps of
# the 3D U-Net (about 1 s each) still predicted nothing (measured, docs/benchmarks.md); -c 3d_fullres runs the same job
# in 3D given more time
DEMO_CONFIGURATION = "2d"
# in-plane matrix of the phantom's CT scans: small enough that two short trainings fit a 2-core CPU budget
DEMO_PHANTOM_SIZE = 64
# benchmark rows the demo trains (each brings the source-only row it starts from); --self-train appends the
# self-training stage after GLUA and after source-only continued, run by the same runner
DEMO_ROWS: tuple[str, ...] = ("source-only-continued", "glua")
SELF_TRAINING_ROWS: tuple[str, ...] = ("glua+st", "source-only+st")
SELF_TRAINED_GLUA_ROW = "glua+st"
DEMO_SCHEDULE = "_Demo"
DEMO_FINE_TUNE_SCHEDULE = "_DemoFineTune"
GLUA_ROW = "glua"


def planning_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for ``nnUNetv2_plan_and_preprocess``: without ``nnUNet_n_proc_DA`` when it asks for no augmentation
    workers (0, the usual CPU setting), because nnU-Net's planner passes that value to ``torch.set_num_threads``,
    which rejects 0; the planner then falls back to nnU-Net's own default."""
    env = dict(env)
    value = env.get("nnUNet_n_proc_DA", "").strip()
    if value and value.lstrip("-").isdigit() and int(value) < 1:
        del env["nnUNet_n_proc_DA"]
    return env


@contextlib.contextmanager
def _environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` applied for the block (``None`` removes a variable), restored afterwards:
    the runner's commands inherit this process's environment."""
    def apply(values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    before = {name: os.environ.get(name) for name in changes}
    try:
        apply(changes)
        yield
    finally:
        apply(before)


class _Steps:
    """Prints each step's header and records its wall time under a name."""

    def __init__(self, total: int):
        self.total = total
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, number: int, title: str, key: str) -> Iterator[None]:
        print(f"\n=== {number}/{self.total} {title} ===", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[key] = round(time.perf_counter() - start, 1)


def _dataset_folder(root: Path, dataset_id: int) -> Path | None:
    matches = dataset_folders_with_id(root, dataset_id)
    return matches[0] if matches else None


class DemoData(NamedTuple):
    """What the demo's data preparation produced."""

    dataset_dir: Path  # the adaptation dataset's raw folder
    target_dir: Path  # its unlabelled target images, preprocessed with the source plans


def _check_existing_phantom(phantom_dir: Path, **expected: Any) -> None:
    """Refuse a phantom folder whose manifest was drawn with other settings than ``expected`` (a manifest without
    an ``appearance`` entry was drawn with the standard one)."""
    from nnunet_glua.json_io import read_json
    from nnunet_glua.phantom import MANIFEST_NAME

    manifest = read_json(phantom_dir / MANIFEST_NAME, BenchmarkError)
    found = {key: manifest.get(key, "standard" if key == "appearance" else None) for key in expected}
    if found != expected:
        differ = ", ".join(f"{k} {found[k]} (asked: {v})" for k, v in expected.items() if found[k] != v)
        raise BenchmarkError(phantom_dir, f"this work folder holds a phantom drawn with {differ}; use another "
                                          "--workdir for these settings")


def prepare_data(workdir: Path, task: DemoTask, direction: str, num_cases: int, seed: int, num_processes: int,
                 configuration: str, runner: CommandRunner, steps: _Steps,
                 phantom_size: int = DEMO_PHANTOM_SIZE, appearance: str = "standard") -> DemoData:
    """Steps 1-4: phantom (``phantom_size``: in-plane matrix of its CT scans; ``appearance``: its tissue values,
    ``"standard"`` or ``"alt"``), conversion, nnU-Net planning and preprocessing of the source domain, preprocessing
    of the target images with the source plans; each skipped when its output exists. A phantom already in
    ``workdir`` drawn with another seed, size, number of cases or appearance is refused: everything after it would
    mix two data sets."""
    from nnunet_glua.data.target_preprocessing import preprocess_target
    from nnunet_glua.phantom import make_phantom

    dataset_id, upper_bound_id = task.dataset_ids[direction]
    raw, preprocessed = Path(os.environ["nnUNet_raw"]), Path(os.environ["nnUNet_preprocessed"])
    with steps.step(1, f"phantom ({task.phantom_kind})", "phantom"):
        phantom_dir = workdir / f"phantom_{task.phantom_kind}"
        if not phantom_dir.exists():
            make_phantom(task.phantom_kind, phantom_dir, num_cases=num_cases, seed=seed, size=phantom_size,
                         appearance=appearance)
        else:
            _check_existing_phantom(phantom_dir, seed=seed, size=phantom_size, appearance=appearance,
                                    num_cases=num_cases)
            print(f"exists: {phantom_dir}")
    with steps.step(2, f"convert to a UDA dataset ({direction[:2]} -> {direction[3:]})", "convert"):
        dataset_dir = _dataset_folder(raw, dataset_id)
        if dataset_dir is None:
            dataset_dir = task.convert(phantom_dir, direction, dataset_id, upper_bound_id, num_processes)
        else:
            print(f"exists: {dataset_dir}")
    with steps.step(3, "nnU-Net planning and preprocessing (source domain)", "plan_and_preprocess"):
        plans_file = preprocessed / dataset_dir.name / "nnUNetPlans.json"
        if not (plans_file.exists() and (preprocessed / dataset_dir.name / f"nnUNetPlans_{configuration}").is_dir()):
            removed = os.environ.keys() - planning_env(os.environ).keys()
            with _environ(dict.fromkeys(removed)):
                Executor(runner).execute(Command((
                    nnunet_program("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration,
                    "-np", str(num_processes), "-npfp", str(num_processes), "--verify_dataset_integrity")))
        else:
            print(f"exists: {plans_file}")
    with steps.step(4, "target preprocessing with the source plans", "target_preprocessing"):
        target_dir = preprocess_target(dataset_id, configuration, include_test=True, num_processes=num_processes)
    return DemoData(dataset_dir, Path(target_dir))


def demo_settings(dataset: "int | str | os.PathLike", seed: int, device: str, configuration: str,
                  num_processes: int, self_train: bool = False) -> ExperimentSettings:
    """The benchmark settings of the demo's rows: :data:`DEMO_ROWS` (plus :data:`SELF_TRAINING_ROWS` with
    ``self_train``) with the demo schedules, one seed, fold 0, the benchmark's default output folder, prediction
    without test-time mirroring."""
    from nnunet_glua.experiments.settings import build_settings

    return build_settings(dataset, configuration=configuration, fold=0, schedule=DEMO_SCHEDULE,
                          fine_tune_schedule=DEMO_FINE_TUNE_SCHEDULE, seeds=(seed,),
                          rows=DEMO_ROWS + (SELF_TRAINING_ROWS if self_train else ()), device=device,
                          num_processes=num_processes, test_time_mirroring=False)


def train_translator(settings: ExperimentSettings, seed: int, device: str) -> Path:
    """Step 5: the GLUA row's style translator, with the settings its trainer would use, in the results root where
    that trainer looks for it, and the translator seed that trainer derives from GLUA_SEED=seed. Returns its final
    checkpoint."""
    from nnunet_glua.style.integration import ensure_translator
    from nnunet_glua.training.random_streams import shared_stream_seed
    from nnunet_glua.training.variants import GLUATrainer_DemoFineTune

    root = settings.results_root(seed, settings.row(GLUA_ROW))
    with _environ({"nnUNet_results": str(root)}):
        return Path(ensure_translator(settings.adaptation.id, settings.configuration, settings.plans, device=device,
                                      seed=shared_stream_seed(seed, "translator"), log=print,
                                      config=GLUATrainer_DemoFineTune.translator_config()))


def _write_figures(out: Path, settings: ExperimentSettings, seed: int, translator_checkpoint: Path) -> dict[str, Path]:
    """Target test slices (image, ground truth, each row's prediction), the local gap mask of the GLUA model on
    an unlabelled target patch, the translator's last preview grid and, with self-training, the GLUA model's
    pseudo-labels (picture and report)."""
    from nnunet_glua.data.target_preprocessing import target_folder
    from nnunet_glua.evaluation.figures import prediction_figure
    from nnunet_glua.evaluation.gap_figure import gap_mask_figure

    dataset = settings.adaptation
    predictions = {row.label: settings.prediction_folder(seed, row) for row in settings.rows
                   if settings.is_finished(seed, row)}  # a row the benchmark could not train has none
    figures = {"predictions": prediction_figure(
        dataset.images_ts, dataset.labels_ts, predictions, out / "target_test_predictions.png",
        title=f"{dataset.name}: target test set, fold 0 ({settings.configuration})")}
    glua_fold = settings.fold_folder(seed, settings.row(GLUA_ROW))
    figures["gap_mask"] = Path(gap_mask_figure(glua_fold, target_folder(dataset.id, settings.configuration),
                                               out / "local_gap_mask.png")["png"])
    preview = translator_checkpoint.parent / "previews" / "latest.png"
    if preview.is_file():
        shutil.copyfile(preview, out / "translator_preview.png")
        figures["translator_preview"] = out / "translator_preview.png"
    if any(row.key == SELF_TRAINED_GLUA_ROW and settings.is_finished(seed, row) for row in settings.rows):
        from nnunet_glua.data.pseudo_labels import pseudo_label_set_folder
        from nnunet_glua.data.uda_dataset_info import load_uda_info
        from nnunet_glua.evaluation.pseudo_label_figure import pseudo_label_figure

        set_name = settings.pseudo_label_set(seed, settings.row(SELF_TRAINED_GLUA_ROW))
        set_folder = pseudo_label_set_folder(load_uda_info(dataset.id), set_name)
        figures["pseudo_labels"] = pseudo_label_figure(set_folder, dataset.folder / "imagesTargetTr",
                                                       out / "pseudo_labels.png", file_ending=dataset.file_ending)
        shutil.copyfile(set_folder / "report.md", out / "pseudo_label_report.md")
        figures["pseudo_label_report"] = out / "pseudo_label_report.md"
    for name, path in figures.items():
        print(f"{name}: {path}")
    return figures


def set_nnunet_paths(workdir: Path) -> dict[str, str]:
    """Point nnU-Net's three folders at ``workdir`` in ``os.environ`` and return them."""
    paths = {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, value in paths.items():
        Path(value).mkdir(parents=True, exist_ok=True)
        os.environ[name] = value
    return paths


def run_demo(workdir: Path, num_cases: int, seed: int, num_processes: int, device: str = "cpu",
             configuration: str = DEMO_CONFIGURATION, direction: str = DEMO_DIRECTION, task: str = DEMO_TASK,
             runner: CommandRunner | None = None, appearance: str = "standard",
             self_train: bool = False) -> dict[str, Any]:
    """Run the steps listed in the module docstring in ``workdir`` with nnU-Net's folders taken from the
    environment; ``runner`` executes the external commands (default: as subprocesses).

    Returns a summary (dataset, plans, translator, the rows' evaluation files and wall times, figures), also written
    to ``workdir/demo_summary.json``. Errors of the benchmark runner
    (:class:`~nnunet_glua.experiments.errors.BenchmarkError`) name the file at fault and what to do.
    """
    from nnunet_glua.experiments.benchmark import execute_benchmark
    from nnunet_glua.paths import ensure_trainer_folder_registered

    runner = runner or subprocess_runner
    demo_task = DEMO_TASKS[task]
    ensure_trainer_folder_registered()
    os.environ.setdefault("nnUNet_def_n_proc", str(num_processes))
    steps = _Steps(total=7)
    data = prepare_data(workdir, demo_task, direction, num_cases, seed, num_processes, configuration, runner, steps,
                        appearance=appearance)
    settings = demo_settings(data.dataset_dir, seed, device, configuration, num_processes, self_train)
    with steps.step(5, "style translator (global alignment), CPU-sized", "translator"):
        translator = train_translator(settings, seed, device)
    with steps.step(6, f"train, predict and evaluate: rows {', '.join(r.label for r in settings.rows)}, seed {seed}",
                    "rows"):
        # augmentation worker processes only compete for the few cores of a CPU run
        with _environ({"nnUNet_n_proc_DA": "0"} if device == "cpu" else {}):
            report = execute_benchmark(settings, runner, print_report=False)
    with steps.step(7, "pictures", "pictures"):
        figures = _write_figures(workdir / "figures" / settings.adaptation.name / configuration, settings, seed,
                                 translator)

    config = settings.plans_content["configurations"][configuration]
    upper_bound_id = demo_task.dataset_ids[direction][1]
    dataset = settings.adaptation
    summary = {
        "dataset": dataset.name,
        "raw_dataset": str(dataset.folder),
        "upper_bound_dataset": str(_dataset_folder(dataset.folder.parent, upper_bound_id)),
        "plans": str(settings.plans_file),
        "configuration": configuration,
        "patch_size": config["patch_size"],
        "spacing": config["spacing"],
        "batch_size": config["batch_size"],
        "source_cases": len(list((dataset.folder / "imagesTr").glob(f"*{dataset.file_ending}"))),
        "unlabelled_target_cases": len(list((dataset.folder / "imagesTargetTr").glob(f"*{dataset.file_ending}"))),
        "target_test_cases": len(settings.test_cases),
        "target_preprocessed": str(data.target_dir),
        "translator": str(translator),
        "benchmark": str(settings.out),
        "test_time_mirroring": settings.test_time_mirroring,
        "evaluations": {row.label: str(settings.evaluation_folder(seed, row) / "evaluation.json")
                        for row in settings.rows if settings.is_finished(seed, row)},
        "not_trained": report.get("not_trained", {}),
        "figures": {name: str(p) for name, p in figures.items()},
        "seconds": {**steps.seconds, **{f"row {row.label}": report["rows"][row.label]["seeds"][str(seed)][
            "wall_time_s"]["total_s"] for row in settings.rows if settings.is_finished(seed, row)}},
    }
    write_json(summary, workdir / "demo_summary.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``glua_demo``; returns the exit status (0 on success, 1 when a step fails)."""
    parser = argparse.ArgumentParser(
        prog="glua_demo",
        description="Run the main job on the built-in cardiac phantom (default: CT source, MR target): phantom -> "
        "convert -> nnU-Net plan/preprocess -> target preprocessing -> translator -> source-only training, then "
        "source-only continued and GLUA from that model -> "
        "prediction -> evaluation, and print the rows on the target test set. Resumable: finished steps are skipped.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("glua_work"),
                        help="folder for the phantom and the nnU-Net folders (default: ./glua_work)")
    parser.add_argument("--use-env-paths", action="store_true",
                        help="use the nnUNet_raw/nnUNet_preprocessed/nnUNet_results already set in the environment")
    parser.add_argument("--num-cases", type=int, default=20, help="phantom volumes per modality (default: 20)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the phantom and of the trainings (GLUA_SEED; default: 0)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("-c", "--configuration", default=DEMO_CONFIGURATION, choices=("2d", "3d_fullres"),
                        help=f"nnU-Net configuration to train (default: {DEMO_CONFIGURATION}, sized for a 2-core CPU)")
    parser.add_argument("--task", default=DEMO_TASK, choices=sorted(DEMO_TASKS),
                        help="phantom: cardiac (MMWHS layout; default) or abdominal (CHAOS MR + BTCV CT layouts)")
    parser.add_argument("--direction", default=DEMO_DIRECTION, choices=sorted(DEMO_TASKS[DEMO_TASK].dataset_ids),
                        help=f"source and target modality (default: {DEMO_DIRECTION}, CT labelled, MR unlabelled)")
    parser.add_argument("--appearance", default="standard", choices=("standard", "alt"),
                        help="phantom tissue values and image formation: standard (default) or alt (other scanners "
                             "and contrast timings, same anatomy; no default was tuned on it). Use its own --workdir")
    parser.add_argument("--self-train", action="store_true",
                        help="add the self-training stage: pseudo-labels of the unlabelled target training images "
                             "from the GLUA and the source-only continued models, then GLUATrainer_SelfTrain and "
                             "SourceOnlyTrainer_SelfTrain trained from them (two more trainings)")
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"),
                        help="device for the translator, the trainings and prediction (default: cpu)")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.use_env_paths:
        set_nnunet_paths(workdir)
    started = time.perf_counter()
    try:
        summary = run_demo(workdir, args.num_cases, args.seed, args.num_processes, args.device, args.configuration,
                           args.direction, task=args.task, appearance=args.appearance, self_train=args.self_train)
    except BenchmarkError as e:
        print(f"glua_demo: error: {e}", file=sys.stderr)
        return 1
    print("\n=== produced ===")
    for key, value in summary.items():
        print(f"{key:>24}: {value}")
    from nnunet_glua.evaluation.report import comparison_markdown
    from nnunet_glua.experiments.rows import LOWER_ROW
    print("\n" + comparison_markdown(dict(summary["evaluations"]), lower=LOWER_ROW,
                                      title=f"Target ({summary['dataset']}) test set, fold 0"))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
