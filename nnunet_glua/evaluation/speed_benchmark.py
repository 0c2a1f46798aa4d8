"""Training-step speed of GLUATrainer against nnU-Net's own trainer, on one machine, one plan, one run.

For each trainer the script builds it through nnU-Net's trainer API on a planned dataset, runs ``warmup`` training
steps, then times ``steps`` more (each ``train_step`` including the wait for the next batch, synchronised on CUDA)
and reports the median seconds per step, the peak GPU memory (CUDA), the set-up time (``on_train_start``) and the
ratio to ``nnUNetTrainer``. For GLUATrainer it also times its parts inside the same steps: waiting for nnU-Net's
source batch, translation (only for trainers that translate inside the step, ``translate_before_augmentation =
False``; by default the translated copies are written at set-up and sampled by nnU-Net's loader), waiting for the
target batch, and the discriminator update; the rest of the step is the (concatenated) forward and backward pass.
The translator's throughput in slices per second is measured separately on batches of the plan's patch size.

Usage: ``glua_speed_benchmark -d 701 -c 3d_fullres [-tr GLUATrainer] [-device cuda] [--steps 50] [--warmup 10]
[--out docs/x.json]``. The dataset must be planned. A GLUA trainer that translates and finds no translator trains
one first, with its own settings: 20000 iterations of the default translator for ``GLUATrainer``, the CPU-sized
translator for the ``*_Short`` (200 iterations) and ``*_Demo``/``*_DemoFineTune`` (600) trainers; on a CPU pick
such a trainer, e.g. ``-tr GLUATrainer_DemoFineTune -device cpu``.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from nnunet_glua.json_io import write_json
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import nnunet_folder
from nnunet_glua.paths import ensure_trainer_folder_registered


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timer:
    """Accumulates wall time per named part within one step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.current: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - t0


def _wrap(obj, attr: str, timer: _Timer, name: str) -> None:
    original: Callable = getattr(obj, attr)

    def timed(*args, **kwargs):
        with timer.part(name):
            return original(*args, **kwargs)
    setattr(obj, attr, timed)


def _load_plans(dataset: str | int, plans_identifier: str) -> tuple[dict, dict, str]:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset)
    pre = nnunet_folder("nnUNet_preprocessed") / name
    return read_json(pre / f"{plans_identifier}.json"), read_json(pre / "dataset.json"), name


def time_trainer(trainer_cls, plans: dict, dataset_json: dict, configuration: str, device: torch.device,
                 steps: int, warmup: int) -> dict:
    """Median step time and its parts for one trainer class (fold 0; nothing is saved)."""
    p = copy.deepcopy(plans)
    p["continue_training"] = False
    trainer = trainer_cls(p, configuration, 0, dataset_json, device)
    trainer.disable_checkpointing = True
    start = time.perf_counter()
    trainer.on_train_start()  # GLUA: translator, translated copies and target data made here when missing
    setup_s = time.perf_counter() - start
    timer = _Timer(trainer.device)
    comp = getattr(trainer, "components", None)
    if comp is not None:
        if comp.translator is not None:
            _wrap(comp, "translate", timer, "translation")
        if comp.target_loader is not None:
            _wrap(comp, "next_target_batch", timer, "target batch wait")
            _wrap(comp, "update_discriminator", timer, "discriminator update")
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    totals, parts = [], []
    trainer.on_train_epoch_start()
    try:
        for i in range(warmup + steps):
            timer.current = {}
            _sync(trainer.device)
            t0 = time.perf_counter()
            with timer.part("source batch wait"):
                batch = next(trainer.dataloader_train)
            trainer.train_step(batch)
            _sync(trainer.device)
            if i >= warmup:
                totals.append(time.perf_counter() - t0)
                parts.append(dict(timer.current))
    finally:
        _shutdown(trainer)
    names = sorted({k for p_ in parts for k in p_})
    median_parts = {k: statistics.median(p_.get(k, 0.0) for p_ in parts) for k in names}
    median_total = statistics.median(totals)
    median_parts["forward/backward and rest"] = max(0.0, median_total - sum(median_parts.values()))
    return {
        "trainer": trainer_cls.__name__,
        "median_step_s": median_total,
        "setup_s": setup_s,
        "parts_median_s": median_parts,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(trainer.device) / 2**30
                            if trainer.device.type == "cuda" else None),
        "batch_size": trainer.batch_size,
        "patch_size": [int(i) for i in trainer.configuration_manager.patch_size],
        "compiled": bool(trainer._do_i_compile()),
    }


def _shutdown(trainer) -> None:
    for loader in (trainer.dataloader_train, trainer.dataloader_val):
        finish = getattr(loader, "_finish", None)
        if finish is not None:
            finish()
    comp = getattr(trainer, "components", None)
    if comp is not None:
        comp.shutdown()


def translator_throughput(dataset: str, configuration: str, plans_identifier: str, device: torch.device,
                          patch_size: list[int], batch_size: int, repeats: int = 20) -> dict:
    """Slices per second of the loaded translator on a ``(batch, 1, *patch)`` batch (median of ``repeats``)."""
    from nnunet_glua.style.integration import load_translator_for

    translator, _ = load_translator_for(dataset, configuration, plans_identifier, device=device)
    x = torch.randn(batch_size, 1, *patch_size, device=device)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        translator.translate_batch(x, generator=gen)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        translator.translate_batch(x, generator=gen)
        _sync(device)
        times.append(time.perf_counter() - t0)
    slices = batch_size * (patch_size[0] if len(patch_size) == 3 else 1)
    med = statistics.median(times)
    return {"median_batch_s": med, "slices_per_s": slices / med, "slices_per_batch": slices}


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch threads " \
           f"{torch.get_num_threads()}"


def run(dataset: str | int, configuration: str, plans_identifier: str, device: torch.device, steps: int,
        warmup: int, glua_trainer: str = "GLUATrainer") -> dict:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    ensure_trainer_folder_registered()
    plans, dataset_json, name = _load_plans(dataset, plans_identifier)
    glua_cls = recursive_find_trainer_class_by_name(glua_trainer)
    base = time_trainer(nnUNetTrainer, plans, dataset_json, configuration, device, steps, warmup)
    glua = time_trainer(glua_cls, plans, dataset_json, configuration, device, steps, warmup)
    result = {"dataset": name, "configuration": configuration, "plans": plans_identifier,
              "machine": machine_description(device), "device": str(device), "steps": steps, "warmup": warmup,
              "nnUNetTrainer": base, glua_trainer: glua,
              "ratio_step_time": glua["median_step_s"] / base["median_step_s"]}
    if base["peak_memory_gib"]:
        result["ratio_peak_memory"] = glua["peak_memory_gib"] / base["peak_memory_gib"]
    if getattr(glua_cls, "use_translation", False):
        result["translator"] = translator_throughput(name, configuration, plans_identifier, device,
                                                     base["patch_size"], base["batch_size"])
    return result


def format_result(r: dict, glua_trainer: str = "GLUATrainer") -> str:
    base, glua = r["nnUNetTrainer"], r[glua_trainer]
    lines = [f"{r['dataset']} {r['configuration']} patch {base['patch_size']} batch {base['batch_size']} on "
             f"{r['machine']} ({r['steps']} timed steps after {r['warmup']} warm-up, medians)", "",
             "| trainer | s/step | ratio | peak GiB |", "| --- | --- | --- | --- |",
             f"| nnUNetTrainer | {base['median_step_s']:.3f} | 1.00 | {base['peak_memory_gib'] or 'n/a'} |",
             f"| {glua_trainer} | {glua['median_step_s']:.3f} | {r['ratio_step_time']:.2f} | "
             f"{glua['peak_memory_gib'] or 'n/a'} |", "", f"{glua_trainer} step breakdown (median s):"]
    for k, v in sorted(glua["parts_median_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"- {k}: {v:.3f}")
    lines.append(f"\nset-up (on_train_start) s: nnUNetTrainer {base['setup_s']:.1f}, {glua_trainer} "
                 f"{glua['setup_s']:.1f} (translator training and translated copies included when made in this run)")
    if "translator" in r:
        t = r["translator"]
        lines.append(f"\ntranslator: {t['slices_per_s']:.0f} slices/s ({t['slices_per_batch']} slices in "
                     f"{t['median_batch_s'] * 1000:.1f} ms)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="glua_speed_benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dataset", required=True)
    parser.add_argument("-c", "--configuration", default="3d_fullres")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("-tr", "--trainer", default="GLUATrainer", help="GLUA trainer class to compare")
    parser.add_argument("-device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    result = run(args.dataset, args.configuration, args.plans, torch.device(args.device), args.steps, args.warmup,
                 args.trainer)
    print(format_result(result, args.trainer))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
