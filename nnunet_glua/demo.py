"""The main job on the built-in phantom, end to end, with nothing to download.

Steps (each is skipped when its output already exists, so an interrupted run resumes where it stopped):
  1. write a cardiac phantom in the public MMWHS layout (``glua_make_phantom``)
  2. convert it into a UDA dataset and a target-supervised upper-bound dataset (``glua_convert_mmwhs``)
  3. plan and preprocess the source domain with plain nnU-Net (``nnUNetv2_plan_and_preprocess``)
  4. preprocess the unlabelled target images with the source plans (``glua_preprocess_target``)

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
from pathlib import Path

DEMO_DATASET_ID = 901
DEMO_UPPER_BOUND_ID = 902
DEMO_CONFIGURATION = "3d_fullres"


def _nnunet_command(name: str) -> list[str]:
    """nnU-Net's console script ``name`` from this interpreter's environment (works without an activated venv)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"nnU-Net command {name} not found; is nnunetv2 installed in this environment?")
    return [found]


def _run(cmd: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)


def _dataset_folder(root: Path, dataset_id: int) -> Path | None:
    matches = sorted(root.glob(f"Dataset{dataset_id:03d}_*")) if root.is_dir() else []
    return matches[0] if matches else None


def set_nnunet_paths(workdir: Path) -> dict[str, str]:
    """Point nnU-Net's three folders at ``workdir`` in ``os.environ`` and return them."""
    paths = {name: str(workdir / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, value in paths.items():
        Path(value).mkdir(parents=True, exist_ok=True)
        os.environ[name] = value
    return paths


def run_demo(workdir: Path, num_cases: int, seed: int, num_processes: int) -> dict:
    """Run the steps listed in the module docstring; returns a summary dict (also written to ``workdir``)."""
    from nnunet_glua.conversion.mmwhs import convert_mmwhs
    from nnunet_glua.conversion.phantom import make_phantom
    from nnunet_glua.data.target_preprocessing import preprocess_target
    from nnunet_glua.paths import ensure_trainer_folder_registered

    ensure_trainer_folder_registered()
    os.environ.setdefault("nnUNet_def_n_proc", str(num_processes))
    raw = Path(os.environ["nnUNet_raw"])
    preprocessed = Path(os.environ["nnUNet_preprocessed"])
    timings: dict[str, float] = {}

    def step(name: str) -> float:
        print(f"\n=== {name} ===", flush=True)
        return time.perf_counter()

    t = step("1/4 phantom (MMWHS layout)")
    phantom_dir = workdir / "phantom_cardiac"
    if not phantom_dir.exists():
        make_phantom("cardiac", phantom_dir, num_cases=num_cases, seed=seed)
    else:
        print(f"exists: {phantom_dir}")
    timings["phantom"] = time.perf_counter() - t

    t = step("2/4 convert to a UDA dataset (MR -> CT)")
    dataset_dir = _dataset_folder(raw, DEMO_DATASET_ID)
    if dataset_dir is None:
        dataset_dir = convert_mmwhs(phantom_dir, "MR2CT", DEMO_DATASET_ID, upper_bound_id=DEMO_UPPER_BOUND_ID,
                                    num_processes=num_processes)
    else:
        print(f"exists: {dataset_dir}")
    timings["convert"] = time.perf_counter() - t

    t = step("3/4 nnU-Net planning and preprocessing (source domain)")
    plans_file = preprocessed / dataset_dir.name / "nnUNetPlans.json"
    config_data = preprocessed / dataset_dir.name / f"nnUNetPlans_{DEMO_CONFIGURATION}"
    if not (plans_file.exists() and config_data.is_dir()):
        _run(_nnunet_command("nnUNetv2_plan_and_preprocess")
             + ["-d", str(DEMO_DATASET_ID), "-c", DEMO_CONFIGURATION, "-np", str(num_processes),
                "-npfp", str(num_processes), "--verify_dataset_integrity"], dict(os.environ))
    else:
        print(f"exists: {plans_file}")
    timings["plan_and_preprocess"] = time.perf_counter() - t

    t = step("4/4 target preprocessing with the source plans")
    target_dir = preprocess_target(DEMO_DATASET_ID, DEMO_CONFIGURATION, include_test=True,
                                   num_processes=num_processes)
    timings["target_preprocessing"] = time.perf_counter() - t

    plans = json.loads(plans_file.read_text())
    config = plans["configurations"][DEMO_CONFIGURATION]
    summary = {
        "dataset": dataset_dir.name,
        "raw_dataset": str(dataset_dir),
        "upper_bound_dataset": str(_dataset_folder(raw, DEMO_UPPER_BOUND_ID)),
        "plans": str(plans_file),
        "configuration": DEMO_CONFIGURATION,
        "patch_size": config["patch_size"],
        "spacing": config["spacing"],
        "batch_size": config["batch_size"],
        "source_cases": len(list((dataset_dir / "imagesTr").glob("*.nii.gz"))),
        "unlabelled_target_cases": len(list((dataset_dir / "imagesTargetTr").glob("*.nii.gz"))),
        "target_test_cases": len(list((dataset_dir / "imagesTs").glob("*.nii.gz"))),
        "target_preprocessed": str(target_dir),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    (workdir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_demo",
        description="Run the main job on the built-in cardiac phantom (MR source, CT target): phantom -> convert -> "
        "nnU-Net plan/preprocess -> target preprocessing. Resumable: finished steps are skipped.",
    )
    parser.add_argument("--workdir", type=Path, default=Path("glua_work"),
                        help="folder for the phantom and the nnU-Net folders (default: ./glua_work)")
    parser.add_argument("--use-env-paths", action="store_true",
                        help="use the nnUNet_raw/nnUNet_preprocessed/nnUNet_results already set in the environment")
    parser.add_argument("--num-cases", type=int, default=20, help="phantom volumes per modality (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.use_env_paths:
        set_nnunet_paths(workdir)
    summary = run_demo(workdir, args.num_cases, args.seed, args.num_processes)
    print("\n=== produced ===")
    for key, value in summary.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
