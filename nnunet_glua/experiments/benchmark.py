"""The headline of an adaptation experiment: source-only, GLUA (and its ablations) and target-supervised
nnU-Net, source-only trained with ``--schedule`` and every other row started from that model and trained with
``--fine-tune-schedule``, evaluated on one target test set, repeated over seeds.

Two stages. First, source-only nnU-Net is trained from scratch (trainer suffix ``--schedule``, ``{s}`` below).
Then every other row starts from that model (nnU-Net's ``-pretrained_weights``; the segmentation head is
re-initialised by nnU-Net's loader) and trains the second-stage schedule (``--fine-tune-schedule``, ``{f}``;
default: the same as ``{s}``). "source-only, continued" trains that second stage on the source alone, so every
compared row has had exactly the same number of steps; it is the lower bound of "gap closed".

==============================  ==========================================  =====================================
row (``--rows`` key)            trainer                                     trained on
==============================  ==========================================  =====================================
source-only                     ``SourceOnlyTrainer{s}``                    labelled source, from scratch
source-only-continued           ``SourceOnlyTrainer{f}``                    labelled source
glua                            ``GLUATrainer{f}``                          labelled source + unlabelled target
target-supervised               ``SourceOnlyTrainer{f}``                    upper-bound dataset (labelled target)
glua-no-local-mask              ``GLUATrainer_NoLocalMask{f}``              ablation: global feature alignment
glua-style-only                 ``GLUATrainer_StyleOnly{f}``                ablation: translation only
glua-feature-only               ``GLUATrainer_FeatureOnly{f}``              ablation: feature alignment only
glua-no-structure-shift         ``GLUATrainer_NoStructureShift{f}``         ablation: the published method alone
source-only-structure-shift     ``SourceOnlyTrainer_StructureShift{f}``     ablation: the shift alone
==============================  ==========================================  =====================================

Every row predicts the **adaptation** dataset's ``imagesTs`` and is evaluated against its ``labelsTs``, so all
rows share the same test images and reference files. The upper bound is the dataset named by the adaptation
dataset.json's ``glua.upper_bound_dataset`` (written by the converters' ``--upper-bound-id``); it is trained on
the adaptation dataset's own plans, moved with ``nnUNetv2_move_plans_between_datasets`` and preprocessed with
``nnUNetv2_preprocess``, so patch size, spacing and network are identical in every row.

Seeds. Each seed ``k`` trains in results roots of its own (passed to nnU-Net as ``nnUNet_results``, with
``GLUA_SEED=k`` for the project's trainers): ``<out>/seed_<k>/nnUNet_results`` for source-only and
``<out>/seed_<k>/nnUNet_results_from_source-only`` for the rows that start from it (so that both stages may use
the same trainer name); ``nnUNet_raw`` and ``nnUNet_preprocessed`` are shared. Runs of different seeds therefore
never share a file, and the GLUA style translator, which lives in ``nnUNet_results``, is trained once per seed:
by the first GLUA row of that seed that needs it (its training time counts toward that row), then reused by the
other GLUA rows of the seed. Reported values are, per row, the median over seeds of each seed's mean over the
test cases; "gap closed" = (row − source-only, continued) / (target-supervised − source-only, continued) is
computed on those medians.

Output folder (default ``$nnUNet_results/<adaptation dataset>/glua_benchmark_<configuration>_<schedule>``, the
schedule without its leading ``_`` and ``default`` for an empty one; ``_then_<fine-tune schedule>`` is appended when
the two schedules differ, ``_<plans>`` when the plans are not ``nnUNetPlans``, ``_fold<f>`` when the fold is not
0 and ``_no_mirroring`` without test-time mirroring)::

    benchmark.json  benchmark.md               rows × seeds, medians, gap closed, wall times, machine,
                                               project commit, SHA-256 of the plans and translators
    seed_<k>/nnUNet_results*/                  everything nnU-Net trained for seed k (one root per stage)
    seed_<k>/<row>/predictions/                nnUNetv2_predict output on the adaptation imagesTs
    seed_<k>/<row>/evaluation/                 evaluation.json/.csv/.md and row.json (timings, commands)

Prediction mirrors the test images (nnU-Net's test-time augmentation) unless ``test_time_mirroring=False``
(``glua_demo`` predicts without, to save time; so does the command line with ``--disable-tta``); each row.json and
benchmark.json record which.

Resuming: a row and seed whose ``evaluation/evaluation.json`` exists is not run again; a fold whose
``checkpoint_final.pth`` exists is not retrained; an interrupted training continues from its latest
checkpoint (nnU-Net's ``--c``). Every file is written atomically and every folder built under a temporary
name, so an interruption never leaves a result that looks finished.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any, Sequence

from nnunet_glua.evaluation.evaluate import EvaluationError
from nnunet_glua.experiments.benchmark_report import benchmark_markdown, build_report
from nnunet_glua.experiments.commands import CommandRunner, Executor, subprocess_runner
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.rows import ROWS
from nnunet_glua.experiments.runner import RowRunner, check_existing_rows
from nnunet_glua.experiments.settings import DEFAULT_SEEDS, ExperimentSettings, build_settings
from nnunet_glua.experiments.upper_bound import needs_upper_bound, prepare_upper_bound
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.json_io import write_json

__all__ = ["run_benchmark", "execute_benchmark", "main"]


def run_benchmark(dataset: "int | str | os.PathLike", runner: CommandRunner | None = None,
                  **options: Any) -> dict[str, Any]:
    """Train, predict and evaluate every row for every seed, then write benchmark.json and benchmark.md.

    ``dataset``: id, ``DatasetXXX_Name`` or raw folder of the *adaptation* dataset (planned and preprocessed
    with the plans used). ``options`` are those of :func:`~nnunet_glua.experiments.settings.build_settings`:
    ``configuration``, ``plans``, ``fold``, ``schedule`` (trainer-name suffix of the source-only row, ``""``:
    nnU-Net's own, ``"_Short"``), ``fine_tune_schedule`` (that of the rows that start from it; ``None``: the same),
    ``seeds``, ``rows`` (row keys, see :data:`~nnunet_glua.experiments.rows.ROWS`; default: all, without ablations
    if ``ablations`` is false), ``device``, ``out``, ``num_processes`` (worker processes of evaluation and of
    nnU-Net's preprocessing; default ``$nnUNet_def_n_proc``), ``dry_run`` and ``test_time_mirroring`` (predict with
    nnU-Net's mirroring, the default, or ``--disable_tta``). ``runner`` executes each external command (default
    :func:`~nnunet_glua.experiments.commands.subprocess_runner`).

    Returns the benchmark.json content; with ``dry_run``, nothing is run or written and the result is
    ``{"dry_run": True, "out": str, "commands": [{"argv", "env"}, ...]}`` (the commands are also printed).
    Raises :class:`BenchmarkError` for unusable input or a failed command.
    """
    return execute_benchmark(build_settings(dataset, **options), runner)


def execute_benchmark(settings: ExperimentSettings, runner: CommandRunner | None = None,
                      print_report: bool = True) -> dict[str, Any]:
    """Run the benchmark that ``settings`` (from :func:`~nnunet_glua.experiments.settings.build_settings`)
    describe: upper-bound preparation when a row needs it, then every seed's rows in table order, then the report.

    Returns what :func:`run_benchmark` returns; ``print_report`` prints benchmark.md when done.
    """
    s = settings
    executor = Executor(runner or subprocess_runner, dry_run=s.dry_run)
    check_existing_rows(s)
    print(f"Benchmark of {s.adaptation.name}: rows {', '.join(r.label for r in s.rows)}; seeds "
          f"{', '.join(map(str, s.seeds))}; {len(s.test_cases)} target test cases; output {s.out}", flush=True)
    if needs_upper_bound(s):
        prepare_upper_bound(s, executor)
    row_runner = RowRunner(s, executor)
    for seed in s.seeds:
        for row in s.rows:
            row_runner.run(seed, row)
    if s.dry_run:
        return {"dry_run": True, "out": str(s.out), "commands": [c.to_dict() for c in executor.commands]}
    report = build_report(s)
    markdown = benchmark_markdown(report)
    write_json(report, s.out / "benchmark.json")
    with atomic_path(s.out / "benchmark.md") as tmp:
        tmp.write_text(markdown)
    if print_report:
        print("\n" + markdown)
    print(f"Wrote {s.out / 'benchmark.json'} and {s.out / 'benchmark.md'}")
    return report


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glua_benchmark",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Headline table of an adaptation experiment: source-only nnU-Net, GLUA (and "
                    "ablations) and target-supervised nnU-Net, all with the same plans: source-only is trained "
                    "from scratch with --schedule, every other row starts from the source-only model and trains "
                    "--fine-tune-schedule; all are "
                    "predicted on the adaptation dataset's target test images (imagesTs) and evaluated against its "
                    "labelsTs, repeated over seeds. Writes benchmark.json and benchmark.md (medians over seeds, "
                    "gap closed, wall times, machine, commit, plans and translator hashes) and prints the table. "
                    "Resumable: run the same command again after an interruption.", width=100),
        epilog="rows (--rows):\n" + "\n".join(
            f"  {r.key:<28} {r.trainer}<{'schedule' if r.starts_from is None else 'fine-tune schedule'}>: "
            f"{r.description}{' (run only when named in --rows)' if r.on_request else ''}" for r in ROWS)
               + "\n\nEach seed k trains in its own results folders <out>/seed_<k>/nnUNet_results (source-only) and "
                 "<out>/seed_<k>/nnUNet_results_from_source-only\n(every other row) with GLUA_SEED=k, so the style "
                 "translator is trained once per seed. nnUNet_raw and nnUNet_preprocessed are shared. The "
                 "dataset must be planned and\npreprocessed (nnUNetv2_plan_and_preprocess -d ID -c CONFIG); the upper "
                 "bound gets the same plans automatically.\nOn CPU set nnUNet_def_n_proc=2 and nnUNet_n_proc_DA=0 "
                 "on small machines (not for nnUNetv2_plan_and_preprocess:\nnnU-Net's planner fails with "
                 "nnUNet_n_proc_DA=0).\n\nexamples:\n"
                 "  glua_benchmark -d 701 --schedule _Short --seeds 0 1 2 -device cpu"
                 "\n  glua_benchmark -d 903 -c 2d --schedule _Demo --fine-tune-schedule _DemoFineTune -device cpu"
                 "   (the main demo's rows)",
    )
    parser.add_argument("-d", "--dataset", required=True,
                        help="adaptation dataset: id (701), name (Dataset701_MMWHS_MR2CT) or raw folder")
    parser.add_argument("-c", "--configuration", default="3d_fullres",
                        help="nnU-Net configuration (default 3d_fullres)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-f", "--fold", default="0", help="fold to train and predict with (default 0; or 'all')")
    parser.add_argument("--schedule", default="",
                        help="trainer-name suffix of the source-only row, e.g. _Short (default: none, nnU-Net's "
                             "schedule)")
    parser.add_argument("--fine-tune-schedule", default=None,
                        help="trainer-name suffix of the rows that start from the source-only model (default: the "
                             "same as --schedule)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="seeds; each trains every row (default 0 1 2)")
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="rows to run (default: all; see below)")
    parser.add_argument("--no-ablations", action="store_true",
                        help="leave out the ablation rows (when --rows is not given)")
    parser.add_argument("-device", "--device", default="cuda", choices=("cuda", "cpu", "mps"),
                        help="device for training and prediction (default cuda)")
    parser.add_argument("--out", default=None,
                        help="output folder (default "
                             "$nnUNet_results/<dataset>/glua_benchmark_<configuration>_<schedule>, the schedule "
                             "without its leading _ and 'default' for none; _then_<fine-tune schedule> is added "
                             "when the schedules differ, _<plans> when not nnUNetPlans, _fold<f> when the fold "
                             "is not 0)")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="processes for evaluation and nnU-Net preprocessing (default $nnUNet_def_n_proc)")
    parser.add_argument("--disable-tta", action="store_true",
                        help="predict without test-time mirroring (nnU-Net's --disable_tta; faster, as glua_demo "
                             "does); the default folder gets _no_mirroring")
    parser.add_argument("--dry-run", action="store_true", help="print the commands that would run; run nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``glua_benchmark``; returns the exit status (0 on success, 1 on an error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.num_processes is not None and args.num_processes < 1:
        parser.error("-np must be >= 1")
    try:
        run_benchmark(
            args.dataset, configuration=args.configuration, plans=args.plans, fold=args.fold,
            schedule=args.schedule, fine_tune_schedule=args.fine_tune_schedule, seeds=args.seeds, rows=args.rows,
            device=args.device, out=args.out,
            ablations=not args.no_ablations, dry_run=args.dry_run, num_processes=args.num_processes,
            test_time_mirroring=not args.disable_tta,
        )
    except (BenchmarkError, EvaluationError) as e:
        print(f"glua_benchmark: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
