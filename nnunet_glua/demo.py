"""The main job on the built-in phantom, end to end, with nothing to download.

Steps (each is skipped when its output already exists, so an interrupted run resumes where it stopped):
  1. write a cardiac phantom in the public MMWHS layout (``glua_make_phantom``)
  2. convert it into a UDA dataset and a target-supervised upper-bound dataset (``glua_convert_mmwhs``)
  3. plan and preprocess the source domain with plain nnU-Net (``nnUNetv2_plan_and_preprocess``)
  4. preprocess the unlabelled target images with the source plans (``glua_preprocess_target``)
  5. train the translator, CPU-sized (what ``GLUATrainer_DemoFineTune`` would otherwise do itself)
  6. train source-only nnU-Net from scratch, fold 0; then, both starting from that model (``-pretrained_weights``)
     with the same second-stage schedule, source-only nnU-Net continued and GLUA (``nnUNetv2_train``), so that
     GLUA is compared with a source-only model trained for exactly as many steps
  7. predict the target test set with each (``nnUNetv2_predict``, without test-time mirroring to save time; the
     same for every row) and evaluate (``glua_evaluate``)
  8. draw pictures (target test predictions, the local gap mask, the translator's preview) and print the rows
     (Dice, ASSD) on the target test set

All nnU-Net folders live under ``--workdir`` unless ``--use-env-paths`` is given, so the demo never touches a
user's own nnU-Net data.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from nnunet_glua.nnunet_io import dataset_folders_with_id

# dataset ids (adaptation, target-supervised upper bound) per direction
DEMO_DATASET_IDS = {"CT2MR": (903, 904), "MR2CT": (901, 902)}
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
# row -> (trainer, row whose final checkpoint it starts from): the rows of glua_benchmark --schedule _Demo
# --fine-tune-schedule _DemoFineTune --rows source-only-continued glua
DEMO_TRAINERS: dict[str, tuple[str, str | None]] = {
    "source-only": ("SourceOnlyTrainer_Demo", None),
    "source-only, continued": ("SourceOnlyTrainer_DemoFineTune", "source-only"),
    "GLUA": ("GLUATrainer_DemoFineTune", "source-only"),
}


def _nnunet_command(name: str) -> list[str]:
    """nnU-Net's console script ``name`` from this interpreter's environment (works without an activated venv)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"nnU-Net command {name} not found; is nnunetv2 installed in this environment?")
    return [found]


def planning_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for ``nnUNetv2_plan_and_preprocess``: without ``nnUNet_n_proc_DA`` when it asks for no augmentation
    workers (0, the usual CPU setting), because nnU-Net's planner passes that value to ``torch.set_num_threads``,
    which rejects 0; the planner then falls back to nnU-Net's own default."""
    env = dict(env)
    value = env.get("nnUNet_n_proc_DA", "").strip()
    if value and value.lstrip("-").isdigit() and int(value) < 1:
        del env["nnUNet_n_proc_DA"]
    return env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)


def _dataset_folder(root: Path, dataset_id: int) -> Path | None:
    matches = dataset_folders_with_id(root, dataset_id)
    return matches[0] if matches else None


def _write_figures(out: Path, dataset_id: int, dataset_dir: Path, predictions: dict[str, Path], results_root: Path,
                   configuration: str, translator_checkpoint: Path) -> dict[str, Path]:
    """Target test slices (image, ground truth, each run's prediction), the local gap mask of the GLUA model on
    an unlabelled target patch, and the translator's last preview grid."""
    from nnunet_glua.data.target_preprocessing import target_folder
    from nnunet_glua.evaluation.figures import prediction_figure
    from nnunet_glua.evaluation.gap_figure import gap_mask_figure

    figures = {"predictions": prediction_figure(
        dataset_dir / "imagesTs", dataset_dir / "labelsTs", predictions, out / "target_test_predictions.png",
        title=f"{dataset_dir.name}: target test set, fold 0 ({configuration})")}
    glua_fold = results_root / f"{DEMO_TRAINERS['GLUA'][0]}__nnUNetPlans__{configuration}" / "fold_0"
    figures["gap_mask"] = Path(gap_mask_figure(glua_fold, target_folder(dataset_id, configuration),
                                               out / "local_gap_mask.png")["png"])
    preview = translator_checkpoint.parent / "previews" / "latest.png"
    if preview.is_file():
        shutil.copyfile(preview, out / "translator_preview.png")
        figures["translator_preview"] = out / "translator_preview.png"
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
             configuration: str = DEMO_CONFIGURATION, direction: str = DEMO_DIRECTION) -> dict:
    """Run the steps listed in the module docstring; returns a summary dict (also written to ``workdir``)."""
    dataset_id, upper_bound_id = DEMO_DATASET_IDS[direction]
    from nnunet_glua.conversion.mmwhs import convert_mmwhs
    from nnunet_glua.phantom import make_phantom
    from nnunet_glua.data.target_preprocessing import preprocess_target
    from nnunet_glua.evaluation.evaluate import evaluate_dataset, write_evaluation
    from nnunet_glua.paths import ensure_trainer_folder_registered

    ensure_trainer_folder_registered()
    os.environ.setdefault("nnUNet_def_n_proc", str(num_processes))
    raw = Path(os.environ["nnUNet_raw"])
    preprocessed = Path(os.environ["nnUNet_preprocessed"])
    timings: dict[str, float] = {}

    def step(name: str) -> float:
        print(f"\n=== {name} ===", flush=True)
        return time.perf_counter()

    t = step("1/8 phantom (MMWHS layout)")
    phantom_dir = workdir / "phantom_cardiac"
    if not phantom_dir.exists():
        make_phantom("cardiac", phantom_dir, num_cases=num_cases, seed=seed, size=DEMO_PHANTOM_SIZE)
    else:
        print(f"exists: {phantom_dir}")
    timings["phantom"] = time.perf_counter() - t

    t = step(f"2/8 convert to a UDA dataset ({direction[:2]} -> {direction[3:]})")
    dataset_dir = _dataset_folder(raw, dataset_id)
    if dataset_dir is None:
        dataset_dir = convert_mmwhs(phantom_dir, direction, dataset_id, upper_bound_id=upper_bound_id,
                                    num_processes=num_processes)
    else:
        print(f"exists: {dataset_dir}")
    timings["convert"] = time.perf_counter() - t

    t = step("3/8 nnU-Net planning and preprocessing (source domain)")
    plans_file = preprocessed / dataset_dir.name / "nnUNetPlans.json"
    config_data = preprocessed / dataset_dir.name / f"nnUNetPlans_{configuration}"
    if not (plans_file.exists() and config_data.is_dir()):
        _run(_nnunet_command("nnUNetv2_plan_and_preprocess")
             + ["-d", str(dataset_id), "-c", configuration, "-np", str(num_processes),
                "-npfp", str(num_processes), "--verify_dataset_integrity"], planning_env(os.environ))
    else:
        print(f"exists: {plans_file}")
    timings["plan_and_preprocess"] = time.perf_counter() - t

    t = step("4/8 target preprocessing with the source plans")
    target_dir = preprocess_target(dataset_id, configuration, include_test=True,
                                   num_processes=num_processes)
    timings["target_preprocessing"] = time.perf_counter() - t

    t = step("5/8 style translator (global alignment), CPU-sized")
    from nnunet_glua.style.integration import ensure_translator
    from nnunet_glua.training.variants import GLUATrainer_DemoFineTune
    translator = ensure_translator(dataset_id, configuration, device=device, log=print,
                                   config=GLUATrainer_DemoFineTune.translator_config())
    timings["translator"] = time.perf_counter() - t

    train_env = dict(os.environ, GLUA_SEED=str(seed))
    if device == "cpu":
        train_env["nnUNet_n_proc_DA"] = "0"  # worker processes only compete for the few cores
    results_root = Path(os.environ["nnUNet_results"]) / dataset_dir.name
    predictions = {}
    models = {name: results_root / f"{trainer}__nnUNetPlans__{configuration}" / "fold_0"
              for name, (trainer, _) in DEMO_TRAINERS.items()}
    for name, (trainer, starts_from) in DEMO_TRAINERS.items():
        t = step(f"6/8 train {name} ({trainer}, fold 0"
                 + (f", starting from the {starts_from} model)" if starts_from else ")"))
        model = models[name]
        if not (model / "checkpoint_final.pth").exists():
            if (model / "checkpoint_latest.pth").exists():
                start = ["--c"]  # an interrupted training continues from its own checkpoint
            elif starts_from is not None:
                start = ["-pretrained_weights", str(models[starts_from] / "checkpoint_final.pth")]
            else:
                start = []
            _run(_nnunet_command("nnUNetv2_train") + [str(dataset_id), configuration, "0", "-tr", trainer,
                                                      "-device", device, *start], train_env)
        else:
            print(f"exists: {model / 'checkpoint_final.pth'}")
        timings[f"train {name}"] = time.perf_counter() - t

        t = step(f"7/8 predict and evaluate {name}")
        pred = workdir / "predictions" / dataset_dir.name / configuration / name
        if not (pred / "evaluation.json").exists():
            _run(_nnunet_command("nnUNetv2_predict") + [
                "-i", str(dataset_dir / "imagesTs"), "-o", str(pred), "-d", str(dataset_id), "-c",
                configuration, "-tr", trainer, "-f", "0", "-device", device, "-npp", "0", "-nps", "0",
                "--disable_tta"],
                dict(os.environ))
            write_evaluation(evaluate_dataset(dataset_id, pred, num_processes=num_processes, run_name=name), pred)
        predictions[name] = pred
        timings[f"predict+evaluate {name}"] = time.perf_counter() - t

    t = step("8/8 pictures")
    figures = _write_figures(workdir / "figures" / dataset_dir.name / configuration, dataset_id, dataset_dir,
                             predictions, results_root, configuration, Path(translator))
    timings["pictures"] = time.perf_counter() - t

    plans = json.loads(plans_file.read_text())
    config = plans["configurations"][configuration]
    summary = {
        "dataset": dataset_dir.name,
        "raw_dataset": str(dataset_dir),
        "upper_bound_dataset": str(_dataset_folder(raw, upper_bound_id)),
        "plans": str(plans_file),
        "configuration": configuration,
        "patch_size": config["patch_size"],
        "spacing": config["spacing"],
        "batch_size": config["batch_size"],
        "source_cases": len(list((dataset_dir / "imagesTr").glob("*.nii.gz"))),
        "unlabelled_target_cases": len(list((dataset_dir / "imagesTargetTr").glob("*.nii.gz"))),
        "target_test_cases": len(list((dataset_dir / "imagesTs").glob("*.nii.gz"))),
        "target_preprocessed": str(target_dir),
        "translator": str(translator),
        "evaluations": {name: str(p / "evaluation.json") for name, p in predictions.items()},
        "figures": {name: str(p) for name, p in figures.items()},
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    (workdir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
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
    parser.add_argument("--direction", default=DEMO_DIRECTION, choices=sorted(DEMO_DATASET_IDS),
                        help=f"source and target modality (default: {DEMO_DIRECTION}, CT labelled, MR unlabelled)")
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"),
                        help="device for the translator, the trainings and prediction (default: cpu)")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.use_env_paths:
        set_nnunet_paths(workdir)
    started = time.perf_counter()
    summary = run_demo(workdir, args.num_cases, args.seed, args.num_processes, args.device, args.configuration,
                       args.direction)
    print("\n=== produced ===")
    for key, value in summary.items():
        print(f"{key:>24}: {value}")
    from nnunet_glua.experiments.rows import LOWER_ROW
    from nnunet_glua.evaluation.report import comparison_markdown
    print("\n" + comparison_markdown({name: path for name, path in summary["evaluations"].items()}, lower=LOWER_ROW,
                                      title=f"Target ({summary['dataset']}) test set, fold 0"))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
