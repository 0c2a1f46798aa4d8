"""GPU checks of GLUATrainer's training path that CI (CPU only) cannot do:
``python -m nnunet_glua.evaluation.gpu_training_check --out DIR``.

On the built-in cardiac phantom (CT labelled, MR unlabelled), nnU-Net's ``3d_fullres`` plan, torch.compile and AMP
as nnU-Net uses them on CUDA:

1. data: phantom, conversion, nnU-Net planning and preprocessing, target preprocessing (``glua_demo``'s steps 1-4);
2. speed, in one process on the same plan (:mod:`~nnunet_glua.evaluation.speed_benchmark`): ``nnUNetTrainer``
   against ``GLUATrainer_Short`` (GLUATrainer's network and step; its translator is the small one, trained here
   first, and its translated source copies are written here): median step-time ratio (must be <= ``--max-step-ratio``,
   1.3), peak-memory ratio (<= ``--max-memory-ratio``, 1.4), set-up time (translator, copies, loaders) and the
   translator's throughput;
3. host synchronisations: one GLUA training step under ``torch.cuda.set_sync_debug_mode`` synchronises at most once;
4. DDP: with two or more GPUs, one short ``nnUNetv2_train ... -num_gpus 2`` run of ``GLUATrainer_Short``.

Writes ``gpu_training_check.json`` (every figure, with the GPU's name) into ``--out`` and prints a summary; exits 1
naming each failed check. About 5 minutes on an H100/H200. nnU-Net's console scripts are created next to the
interpreter's PATH entry when missing (an unpacked wheel bundle has none). ``--allow-cpu`` runs the same sequence
on the CPU with the 2d plan and a few steps: a smoke test of this script, whose ratios mean nothing.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from nnunet_glua.json_io import write_json

__all__ = ["main", "ensure_console_scripts", "set_up_work_folder", "prepare_demo_data"]

GLUA_TRAINER = "GLUATrainer_Short"
NNUNET_SCRIPTS = ("nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_predict")


#: this package's commands that its runners call as programs; on a machine where the checkout is only on
#: ``PYTHONPATH`` (not installed) they have no console script either
OWN_SCRIPTS = {"glua_pseudo_label": "nnunet_glua.data.pseudo_labels:main"}


def ensure_console_scripts(bin_dir: Path, names=NNUNET_SCRIPTS) -> list[str]:
    """Write a launcher into ``bin_dir`` for each console script in ``names`` (nnU-Net's, or this package's of
    :data:`OWN_SCRIPTS`) that is neither next to this interpreter nor on ``PATH``, from nnunetv2's entry-point
    metadata, and put ``bin_dir`` first on ``PATH``. Returns the names written."""
    import shutil

    missing = [n for n in names if not ((Path(sys.executable).parent / n).exists() or shutil.which(n))]
    entry_points = dict(OWN_SCRIPTS)
    if any(n not in OWN_SCRIPTS for n in missing):
        entry_points.update({e.name: e.value for e in importlib.metadata.distribution("nnunetv2").entry_points
                             if e.group == "console_scripts"})
    written = []
    for name in missing:
        module, function = entry_points[name].split(":")
        bin_dir.mkdir(parents=True, exist_ok=True)
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\n"
                          f"sys.exit({function}())\n")
        script.chmod(0o755)
        written.append(name)
    if written:
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return written


def set_up_work_folder(work: Path, scripts=NNUNET_SCRIPTS) -> int:
    """Point nnU-Net's folders at ``work``, keep child processes' output unbuffered and write launchers for the
    console scripts ``scripts`` that are missing (:func:`ensure_console_scripts`, into ``work/bin``). Returns the
    worker processes to use for preprocessing: half the cores, 1 to 8."""
    from nnunet_glua.demo import set_nnunet_paths

    set_nnunet_paths(work)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    ensure_console_scripts(work / "bin", scripts)
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def prepare_demo_data(work: Path, direction: str, configuration: str, num_processes: int, num_cases: int = 20,
                      phantom_size: int | None = None) -> int:
    """``glua_demo``'s data steps 1-4 into ``work``: its cardiac phantom (seed 0, ``num_cases`` volumes per
    modality, the demo's matrix unless ``phantom_size``), converted for ``direction`` (``"CT2MR"`` or ``"MR2CT"``),
    planned and preprocessed for ``configuration``. Returns the adaptation dataset's id."""
    from nnunet_glua.demo import DEMO_PHANTOM_SIZE, DEMO_TASK, DEMO_TASKS, _Steps, prepare_data
    from nnunet_glua.experiments.commands import subprocess_runner

    task = DEMO_TASKS[DEMO_TASK]
    prepare_data(work, task, direction, num_cases=num_cases, seed=0, num_processes=num_processes,
                 configuration=configuration, runner=subprocess_runner, steps=_Steps(4),
                 phantom_size=phantom_size or DEMO_PHANTOM_SIZE)
    return task.dataset_ids[direction][0]


def count_step_synchronisations(dataset_id: int, configuration: str, warmup: int = 3) -> int:
    """Host-device synchronisations ``torch.cuda.set_sync_debug_mode`` reports in one GLUA training step, after
    ``warmup`` steps (compilation, first allocations)."""
    from nnunet_glua.evaluation.speed_benchmark import _load_plans, _shutdown
    from nnunet_glua.paths import ensure_trainer_folder_registered
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    ensure_trainer_folder_registered()
    plans, dataset_json, _ = _load_plans(dataset_id, "nnUNetPlans")
    plans["continue_training"] = False
    trainer = recursive_find_trainer_class_by_name(GLUA_TRAINER)(plans, configuration, 0, dataset_json,
                                                                 torch.device("cuda"))
    trainer.disable_checkpointing = True
    trainer.on_train_start()
    try:
        trainer.on_train_epoch_start()
        for _ in range(warmup):
            trainer.train_step(next(trainer.dataloader_train))
        batch = next(trainer.dataloader_train)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step(batch)
        torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message).lower() for w in caught)
    finally:
        _shutdown(trainer)


def ddp_run(dataset_id: int, configuration: str, results: Path) -> dict:
    """One ``nnUNetv2_train -num_gpus 2`` run of GLUATrainer_Short (its 2 x 10 steps): exit status and wall time."""
    from nnunet_glua.experiments.commands import nnunet_program

    argv = [nnunet_program("nnUNetv2_train"), str(dataset_id), configuration, "0", "-tr", GLUA_TRAINER,
            "-num_gpus", "2"]
    start = time.perf_counter()
    done = subprocess.run(argv, env={**os.environ, "nnUNet_results": str(results)}, capture_output=True, text=True)
    return {"command": " ".join(argv), "returncode": done.returncode, "wall_s": round(time.perf_counter() - start, 1),
            "log_tail": (done.stdout + done.stderr)[-3000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunet_glua.evaluation.gpu_training_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_training_check.json")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the phantom and the nnU-Net folders (default: a new temporary one)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per trainer (default 40)")
    parser.add_argument("--warmup", type=int, default=15,
                        help="untimed first steps per trainer, compilation included (default 15)")
    parser.add_argument("--num-cases", type=int, default=12, help="phantom volumes per modality (default 12)")
    parser.add_argument("--phantom-size", type=int, default=112, help="phantom in-plane matrix (default 112)")
    parser.add_argument("--max-step-ratio", type=float, default=1.3)
    parser.add_argument("--max-memory-ratio", type=float, default=1.4)
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run on the CPU with the 2d plan, a small phantom and 2 + 2 steps (smoke test)")
    args = parser.parse_args(argv)

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.allow_cpu:
        parser.error("no CUDA device; --allow-cpu runs the smoke test on the CPU")
    device = torch.device("cuda" if on_gpu else "cpu")
    configuration = "3d_fullres" if on_gpu else "2d"
    steps, warmup = (args.steps, args.warmup) if on_gpu else (2, 2)
    num_cases, size = (args.num_cases, args.phantom_size) if on_gpu else (6, 48)
    work = args.work or Path(tempfile.mkdtemp(prefix="glua_gpu_check_"))
    num_processes = set_up_work_folder(work)

    from nnunet_glua.evaluation.speed_benchmark import format_result, machine_description, run
    from nnunet_glua.paths import ensure_trainer_folder_registered

    ensure_trainer_folder_registered()
    report: dict = {"machine": machine_description(device), "torch": torch.__version__,
                    "configuration": configuration, "compile": os.environ.get("nnUNet_compile", "default (on)"),
                    "seconds": {}}
    failed: list[str] = []
    t0 = time.perf_counter()
    dataset_id = prepare_demo_data(work, "CT2MR", configuration, num_processes, num_cases, size)
    report["seconds"]["data"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    speed = run(dataset_id, configuration, "nnUNetPlans", device, steps, warmup, GLUA_TRAINER)
    report["seconds"]["speed"] = round(time.perf_counter() - t0, 1)
    report["speed"] = speed
    print(format_result(speed, GLUA_TRAINER), flush=True)
    if on_gpu:
        if speed["ratio_step_time"] > args.max_step_ratio:
            failed.append(f"step-time ratio {speed['ratio_step_time']:.2f} > {args.max_step_ratio}")
        if speed.get("ratio_peak_memory", 0.0) > args.max_memory_ratio:
            failed.append(f"peak-memory ratio {speed['ratio_peak_memory']:.2f} > {args.max_memory_ratio}")
        t0 = time.perf_counter()
        report["step_synchronisations"] = count_step_synchronisations(dataset_id, configuration)
        report["seconds"]["synchronisations"] = round(time.perf_counter() - t0, 1)
        if report["step_synchronisations"] > 1:
            failed.append(f"{report['step_synchronisations']} host synchronisations in one step (at most 1)")
        if torch.cuda.device_count() >= 2:
            report["ddp"] = ddp_run(dataset_id, configuration, work / "ddp_results")
            if report["ddp"]["returncode"] != 0:
                failed.append("the 2-GPU DDP run failed (see ddp.log_tail)")
        else:
            report["ddp"] = f"not run: {torch.cuda.device_count()} GPU"
    report["failed"] = failed
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(report, args.out / "gpu_training_check.json")
    print(f"\nwritten: {args.out / 'gpu_training_check.json'}")
    for message in failed:
        print(f"FAILED: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
