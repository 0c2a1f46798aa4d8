"""GPU checks of the translator that CI (CPU only) cannot do: ``python -m nnunet_glua.style.gpu_check --help``.

On synthetic two-domain phantoms (:mod:`~nnunet_glua.style.synthetic`) with the default network:

1. throughput: ``translate_batch`` eager and compiled (slices/s), one training iteration (ms);
2. compiled translation equals eager translation (max abs difference below ``--tolerance`` z-units; float16);
3. mixed-precision training runs with finite losses and writes a checkpoint, a style bank and previews;
4. an interrupted CUDA run resumes with its GradScaler state and finishes;
5. ``translate_batch`` keeps a float16 CUDA input's dtype and device;
6. the quality report (:mod:`~nnunet_glua.style.report`) of the trained translator is printed.

Exits with status 1 naming the first failed check. ``--out`` receives ``report.json``, ``training_log.jsonl`` and
the final preview. About 4 minutes on an H200 with the defaults (most of it the ``--iterations`` of step 3).
``--allow-cpu`` runs everything with tiny networks on the CPU (a smoke test of this script itself).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

__all__ = ["main"]


def _check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"gpu_check: FAILED: {what}")
    print(f"ok: {what}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunet_glua.style.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1000, help="AMP training iterations (default 1000)")
    parser.add_argument("--out", default=None, help="folder for report.json, training_log.jsonl, preview.png")
    parser.add_argument("--tolerance", type=float, default=0.05, help="compiled vs eager max abs diff (z-units)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU with tiny networks (smoke test)")
    args = parser.parse_args(argv)

    from nnunet_glua.style.benchmark import _random_translator, benchmark_train_step, benchmark_translate
    from nnunet_glua.style.checkpoint import load_checkpoint
    from nnunet_glua.style.config import TranslatorConfig
    from nnunet_glua.style.report import format_report, style_report
    from nnunet_glua.style.synthetic import tiny_config, write_synthetic_domain_pair, write_synthetic_folder
    from nnunet_glua.style.trainer import LATEST_CHECKPOINT, train_translator
    from nnunet_glua.style.translate import Translator

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        sys.exit("gpu_check: no CUDA device (pass --allow-cpu for a CPU smoke run)")
    dev = torch.device("cuda" if cuda else "cpu")
    print(f"device {dev} {torch.cuda.get_device_name(dev) if cuda else ''}, torch {torch.__version__}", flush=True)
    torch.backends.cudnn.benchmark = cuda
    out = Path(args.out) if args.out else None
    work = Path(tempfile.mkdtemp(prefix="glua_style_gpu_check_"))
    try:
        cfg = TranslatorConfig() if cuda else tiny_config()
        shape = (2, 1, 80, 112, 112) if cuda else (1, 1, 4, 32, 40)
        eager = _random_translator(cfg, 1, dev, True, compile=False)
        r = benchmark_translate(eager, shape, dev)
        print(f"translate {shape} eager: {r['median_s'] * 1000:.1f} ms, {r['slices_per_s']:.0f} slices/s", flush=True)
        if cuda:
            compiled = _random_translator(cfg, 1, dev, True, compile=True)
            x = torch.randn(shape, device=dev)
            styles = eager.sample_styles(shape[0], torch.Generator().manual_seed(0))
            diff = float((compiled.translate_batch(x, styles=styles) - eager.translate_batch(x, styles=styles))
                         .abs().max())
            _check(diff < args.tolerance, f"compiled translation equals eager (max abs diff {diff:.4f})")
            r = benchmark_translate(compiled, shape, dev)
            print(f"translate {shape} compiled: {r['median_s'] * 1000:.1f} ms, {r['slices_per_s']:.0f} slices/s",
                  flush=True)
        r = benchmark_train_step(cfg, 1, shape[-2:], dev, runs=5, warmup=2)
        print(f"training iteration, batch {cfg.batch_size}: {r['median_s'] * 1000:.1f} ms", flush=True)

        vol = (24, 96, 112) if cuda else (8, 32, 40)
        src, tgt = write_synthetic_domain_pair(work / "data", 8 if cuda else 3, vol)
        labelled = write_synthetic_folder(work / "data" / "labelled_target", "target", 3 if cuda else 2, vol, seed=7,
                                          with_labels=True)
        train_cfg = cfg.with_overrides({"iterations": args.iterations if cuda else 4, "slice_size": list(vol[1:]),
                                        "checkpoint_every": 500, "preview_every": 500, "log_every": 50})
        t0 = time.perf_counter()
        result = train_translator(src, tgt, config=train_cfg, out_dir=work / "run", device=dev, seed=0,
                                  progress=False)
        print(f"trained {result.iterations} iterations in {time.perf_counter() - t0:.0f} s", flush=True)
        _check(all(torch.isfinite(torch.tensor(v)) for v in result.last_losses.values()),
               "mixed-precision training losses are finite")
        _check(result.final_checkpoint.is_file() and (work / "run" / "previews" / "latest.png").is_file(),
               "training wrote checkpoint_final.pth and previews")

        def stop_at_10(iteration: int) -> None:
            if iteration == 10:
                raise KeyboardInterrupt

        resume_cfg = train_cfg.with_overrides({"iterations": 20, "checkpoint_every": 1000})
        try:
            train_translator(src, tgt, config=resume_cfg, out_dir=work / "resume", device=dev, seed=1,
                             progress=False, callback=stop_at_10)
        except KeyboardInterrupt:
            pass
        saved = load_checkpoint(work / "resume" / LATEST_CHECKPOINT)
        _check(saved["iteration"] == 10 and (not cuda or saved["scaler_g"].get("scale") is not None),
               "an interrupted run saved its iteration and GradScaler state")
        resumed = train_translator(src, tgt, config=resume_cfg, out_dir=work / "resume", device=dev, seed=1,
                                   progress=False, resume=True)
        _check(resumed.iterations == 20, "the interrupted run resumed and finished")

        translator = Translator.from_checkpoint(result.final_checkpoint, device=dev)
        x16 = torch.randn(2, 1, 7, 37, 53, device=dev, dtype=torch.float16 if cuda else torch.float32)
        y16 = translator.translate_batch(x16, torch.Generator().manual_seed(0))
        _check(y16.shape == x16.shape and y16.dtype == x16.dtype and y16.device == x16.device
               and bool(torch.isfinite(y16).all()), f"translate_batch keeps shape, {x16.dtype} and {dev}")

        report = style_report(translator, src, tgt, target_labelled_folder=labelled, max_slices=400 if cuda else 40,
                              classifier_iterations=300 if cuda else 20, progress=False)
        print(format_report(report), flush=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.json").write_text(json.dumps(report, indent=1))
            shutil.copy(work / "run" / "training_log.jsonl", out / "training_log.jsonl")
            shutil.copy(work / "run" / "previews" / "latest.png", out / "preview.png")
        print("gpu_check: all checks passed", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
