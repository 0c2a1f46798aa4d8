"""Throughput of the translator on the current device: ``glua_style_benchmark --help``.

``translate`` mode (default) times :meth:`Translator.translate_batch` on a random ``(B, C, X, Y, Z)`` batch, as the
segmentation trainer calls it once per step, and prints slices per second (median over ``--runs`` timed runs after
``--warmup`` untimed ones; CUDA is synchronised around each run; with compilation the warm-up includes it).
``train`` mode times one translator training iteration (both optimiser steps) on random slices and prints
iterations per second, to size ``--iterations``.
Without ``--checkpoint`` the networks are freshly initialised from the default (or ``--config-json``) configuration,
which times the same computation as a trained translator of that configuration.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from nnunet_glua.style.config import TranslatorConfig, load_config_overrides

__all__ = ["time_runs", "benchmark_translate", "benchmark_train_step", "main"]


def time_runs(fn: Callable[[], object], device: torch.device, runs: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _random_translator(config: TranslatorConfig, channels: int, device: torch.device, amp: bool | None,
                       compile: bool | None = None):
    from nnunet_glua.style.networks import build_generators
    from nnunet_glua.style.style_bank import build_style_bank
    from nnunet_glua.style.translate import Translator

    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gens = build_generators(channels, config.network)
    bank = build_style_bank(torch.randn(256, config.network.style_dim, generator=gen), config.style_bank_clusters)
    return Translator(gens, bank, config=config, device=device, amp=amp, source="<random init>", compile=compile)


def benchmark_translate(translator, shape: tuple[int, ...], device: torch.device, runs: int = 10,
                        warmup: int = 3) -> dict:
    """Median time of ``translate_batch`` on a random batch of ``shape``; slices/s counts B * X slices."""
    x = torch.randn(shape, device=device)
    gen = torch.Generator(device=device).manual_seed(0) if device.type == "cuda" else torch.Generator().manual_seed(0)
    times = time_runs(lambda: translator.translate_batch(x, gen), device, runs, warmup)
    slices = shape[0] * (shape[2] if len(shape) == 5 else 1)
    med = statistics.median(times)
    return {"mode": "translate", "shape": list(shape), "median_s": med, "slices_per_s": slices / med,
            "times_s": times}


def benchmark_train_step(config: TranslatorConfig, channels: int, slice_size: tuple[int, int],
                         device: torch.device, runs: int = 10, warmup: int = 3) -> dict:
    """Median time of one full training iteration (D and G steps) on random slices."""
    from nnunet_glua.style.losses import discriminator_loss, generator_loss, translation_pass
    from nnunet_glua.style.networks import build_discriminators, build_generators, padded_size

    crop = padded_size(slice_size, config.network.spatial_multiple)
    gens = build_generators(channels, config.network).to(device)
    discs = build_discriminators(channels, config.network, crop).to(device)
    opt_g = torch.optim.Adam(gens.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discs.parameters(), lr=config.lr, betas=config.betas)
    use_amp = bool(config.amp and device.type == "cuda")
    scaler_g = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_d = torch.amp.GradScaler("cuda", enabled=use_amp)
    xs = torch.randn(config.batch_size, channels, *crop, device=device)
    xt = torch.randn(config.batch_size, channels, *crop, device=device)

    def step() -> None:
        with torch.autocast(device.type, torch.float16, enabled=use_amp):
            p = translation_pass(gens, xs, xt)
        discs.requires_grad_(True)
        with torch.autocast(device.type, torch.float16, enabled=use_amp):
            d_total, _ = discriminator_loss(p.detached(), discs, xs, xt, config.losses)
        opt_d.zero_grad(set_to_none=True)
        scaler_d.scale(d_total).backward()
        scaler_d.step(opt_d)
        scaler_d.update()
        discs.requires_grad_(False)
        with torch.autocast(device.type, torch.float16, enabled=use_amp):
            g_total, _ = generator_loss(p, discs, xs, xt, config.losses)
        opt_g.zero_grad(set_to_none=True)
        scaler_g.scale(g_total).backward()
        scaler_g.step(opt_g)
        scaler_g.update()

    times = time_runs(step, device, runs, warmup)
    med = statistics.median(times)
    return {"mode": "train", "batch_size": config.batch_size, "crop": list(crop), "median_s": med,
            "iterations_per_s": 1.0 / med, "slices_per_s": 2 * config.batch_size / med, "times_s": times}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_style_benchmark",
        description="Measure the style translator's throughput on this machine (median after warm-up).")
    parser.add_argument("--mode", choices=("translate", "train"), default="translate",
                        help="translate: translate_batch slices/s (default); train: training iterations/s")
    parser.add_argument("--checkpoint", help="translator checkpoint to time (default: freshly initialised networks)")
    parser.add_argument("--config-json", help="JSON file of TranslatorConfig overrides (network width etc.)")
    parser.add_argument("--channels", type=int, default=1, help="image channels (default 1)")
    parser.add_argument("--volumes", type=int, default=2, help="batch size B of the 3D batch (default 2)")
    parser.add_argument("--depth", type=int, default=80, help="slices per volume X (default 80)")
    parser.add_argument("--slice-size", type=int, nargs=2, default=(112, 112), metavar=("Y", "Z"),
                        help="in-plane size (default 112 112)")
    parser.add_argument("--batch-size", type=int, help="training batch size for --mode train (default: config's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    parser.add_argument("--no-amp", action="store_true", help="float32 instead of float16 autocast on CUDA")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile of the translation (CUDA only; auto = nnU-Net's nnUNet_compile rule)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    config = TranslatorConfig()
    if args.config_json:
        config = config.with_overrides(load_config_overrides(args.config_json))
    if args.no_amp:
        config = config.with_overrides({"amp": False})
    if args.batch_size:
        config = config.with_overrides({"batch_size": args.batch_size})
    compile_translate = None if args.compile == "auto" else args.compile == "on"
    if args.mode == "train":
        result = benchmark_train_step(config, args.channels, tuple(args.slice_size), device, args.runs, args.warmup)
        print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
              f"batch {result['batch_size']}x2 slices of {result['crop'][0]}x{result['crop'][1]}: "
              f"median {result['median_s'] * 1000:.1f} ms/iteration, {result['iterations_per_s']:.2f} iterations/s")
        return
    if args.checkpoint:
        from nnunet_glua.style.translate import Translator
        translator = Translator.from_checkpoint(args.checkpoint, device=device, amp=not args.no_amp,
                                                compile=compile_translate)
        channels = translator.in_channels
    else:
        translator = _random_translator(config, args.channels, device, amp=not args.no_amp,
                                        compile=compile_translate)
        channels = args.channels
    shape = (args.volumes, channels, args.depth, *args.slice_size)
    result = benchmark_translate(translator, shape, device, args.runs, args.warmup)
    mem = ""
    if device.type == "cuda":
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB"
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"batch {tuple(shape)}, amp {translator.amp}, compiled {translator.compiled}: "
          f"median {result['median_s'] * 1000:.1f} ms per batch, "
          f"{result['slices_per_s']:.0f} slices/s{mem}")


if __name__ == "__main__":
    main()
