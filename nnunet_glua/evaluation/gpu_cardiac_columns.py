"""The cardiac columns of the README's Results table at ten times the CPU budget, on a GPU:
``python -m nnunet_glua.evaluation.gpu_cardiac_columns --out DIR``.

For each direction (``CT2MR``, ``MR2CT``), on the data of the CPU table (``glua_demo``'s steps 1-4: cardiac phantom,
seed 0, 20 volumes per modality, matrix 64, the 2d plan):

    glua_benchmark -d ID -c 2d --schedule _Demo10x --fine-tune-schedule _Demo10xFineTune -device cuda
                   --seeds SEEDS --rows ROWS --out DIR/<direction>

``_Demo10x`` and ``_Demo10xFineTune`` are the demo's schedules with ten times the steps (7500 then 3750) and ten
times the translator's iterations; the other differences to the CPU table are those of nnU-Net on CUDA
(``torch.compile`` unless ``nnUNet_compile=f``, mixed precision, augmentation workers) and the seeds: one (seed 0)
unless ``--seeds`` names more, where the CPU table's cardiac cells are medians over seeds 0-2. Each direction's
``benchmark.json`` and ``benchmark.md`` (medians, gap closed, wall times, the GPU's name) land in
``DIR/<direction>/``; ``DIR/gpu_cardiac_columns.json`` lists them. Resumable: the benchmark skips every row and seed
already evaluated. Launchers for nnU-Net's commands and ``glua_pseudo_label`` are written when missing, and the
checkout goes on ``PYTHONPATH`` for the commands it starts (a GPU machine without network, with nnU-Net as unpacked
wheels and this package not installed, has neither). ``--dry-run`` prepares the data and prints the training and
prediction commands without running them, also on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["DIRECTIONS", "ROWS", "SCHEDULE", "FINE_TUNE_SCHEDULE", "benchmark_options", "main"]

DIRECTIONS: tuple[str, ...] = ("CT2MR", "MR2CT")
#: the CPU table's headline rows; the baselines can be added with --rows
ROWS: tuple[str, ...] = ("source-only-continued", "glua", "target-supervised", "glua+st")
SCHEDULE, FINE_TUNE_SCHEDULE = "_Demo10x", "_Demo10xFineTune"
CONFIGURATION = "2d"


def benchmark_options(out: Path, direction: str, seeds: Sequence[int], rows: Sequence[str], device: str,
                      dry_run: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`~nnunet_glua.experiments.benchmark.run_benchmark` for one direction's column,
    written into ``out / direction``; test-time mirroring on, as in the CPU table."""
    return {"configuration": CONFIGURATION, "schedule": SCHEDULE, "fine_tune_schedule": FINE_TUNE_SCHEDULE,
            "seeds": tuple(seeds), "rows": list(rows), "device": device, "out": out / direction, "fold": "0",
            "dry_run": dry_run}


def _prepare(work: Path, direction: str, num_processes: int) -> int:
    """The CPU table's data for ``direction`` into ``work`` (the demo's phantom and 2d plan); returns the adaptation
    dataset's id."""
    from nnunet_glua.evaluation.gpu_training_check import prepare_demo_data

    return prepare_demo_data(work, direction, CONFIGURATION, num_processes)


def _put_checkout_on_pythonpath() -> None:
    """nnU-Net's trainer shim and ``glua_pseudo_label`` import this package in child processes; where it is not
    installed they find it only through ``PYTHONPATH``."""
    import nnunet_glua

    root = str(Path(nnunet_glua.__file__).resolve().parent.parent)
    entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    if root not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *entries])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnunet_glua.evaluation.gpu_cardiac_columns",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the benchmarks (one sub-folder per direction) and the nnU-Net folders")
    parser.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=DIRECTIONS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS),
                        help=f"benchmark rows (default: {' '.join(ROWS)}; see glua_benchmark --help)")
    parser.add_argument("--dry-run", action="store_true",
                        help="prepare the data, print the benchmark's commands, train nothing (runs on a CPU too)")
    args = parser.parse_args(argv)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: the GPU columns train at ten times the CPU budget; --dry-run prints them")
    from nnunet_glua.evaluation.evaluate import EvaluationError
    from nnunet_glua.evaluation.gpu_training_check import NNUNET_SCRIPTS, set_up_work_folder
    from nnunet_glua.experiments.benchmark import run_benchmark
    from nnunet_glua.experiments.commands import BENCHMARK_PROGRAMS
    from nnunet_glua.experiments.errors import BenchmarkError
    from nnunet_glua.experiments.rows import select_rows
    from nnunet_glua.json_io import write_json
    from nnunet_glua.paths import ensure_trainer_folder_registered

    try:
        select_rows(args.rows)  # an unknown row is refused before any data is prepared
    except BenchmarkError as e:
        parser.error(str(e))
    out = args.out.resolve()
    work = out / "work"
    _put_checkout_on_pythonpath()
    num_processes = set_up_work_folder(work, tuple(dict.fromkeys(NNUNET_SCRIPTS + tuple(BENCHMARK_PROGRAMS))))
    ensure_trainer_folder_registered()
    os.environ.setdefault("nnUNet_def_n_proc", str(num_processes))

    index_file = out / "gpu_cardiac_columns.json"
    index: dict[str, Any] = json.loads(index_file.read_text()) if index_file.exists() else {"directions": {}}
    index.update({"schedule": SCHEDULE, "fine_tune_schedule": FINE_TUNE_SCHEDULE})
    for direction in args.directions:
        started = time.perf_counter()
        try:
            dataset_id = _prepare(work, direction, num_processes)
            prepared_s = round(time.perf_counter() - started, 1)
            options = benchmark_options(out, direction, args.seeds, args.rows, "cuda", args.dry_run)
            run_benchmark(dataset_id, **options)
        except (BenchmarkError, EvaluationError) as e:
            print(f"gpu_cardiac_columns: error ({direction}): {e}", file=sys.stderr)
            return 1
        if not args.dry_run:
            # merged with earlier runs, so that a run of one direction keeps the other's entry
            index["directions"][direction] = {"dataset": dataset_id, "benchmark": str(options["out"]),
                                              "last_run": {"seeds": args.seeds, "rows": args.rows,
                                                           "data_preparation_or_check_s": prepared_s}}
            write_json(index, index_file)
    if not args.dry_run:
        print(f"\nwritten: {index_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
