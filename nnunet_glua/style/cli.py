"""Command-line entry points of the style translator.

* ``glua_train_style``  (:func:`train_main`)     train the translator of a planned nnU-Net dataset/configuration
* ``glua_translate``    (:func:`translate_main`) write target-like copies of raw source volumes
* ``glua_style_report`` (:func:`report_main`)    quality checks of a trained translator

Each prints a one-line error (exit status 1) for bad input instead of a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

import torch

from nnunet_glua.style.checkpoint import CheckpointError
from nnunet_glua.style.config import PRESETS, TranslatorConfig, load_config_overrides
from nnunet_glua.style.identity import TranslatorMismatchError

__all__ = ["train_main", "translate_main", "report_main"]

_USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError, TranslatorMismatchError, CheckpointError)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", required=True,
                        help="dataset ID or name (e.g. 701 or Dataset701_MMWHS_MR2CT)")
    parser.add_argument("-c", "--configuration", required=True, help="nnU-Net configuration, e.g. 3d_fullres")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("--device", default=_default_device(),
                        help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fail(prog: str, error: BaseException) -> NoReturn:
    sys.exit(f"{prog}: error: {error}")


def _load_config(args: argparse.Namespace) -> TranslatorConfig:
    """The preset, then the JSON overrides, then the explicit options (each later one wins)."""
    config = TranslatorConfig.preset(args.preset)
    if args.config_json:
        config = config.with_overrides(load_config_overrides(args.config_json))
    overrides: dict = {}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.slice_size is not None:
        overrides["slice_size"] = list(args.slice_size)
    if args.no_amp:
        overrides["amp"] = False
    return config.with_overrides(overrides) if overrides else config


def train_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_train_style",
        description="Train GLUA's global-alignment style translator (source <-> target, 2D, disentangled content/"
                    "style) on the nnU-Net preprocessed data of one dataset and configuration. Source data: the "
                    "configuration's preprocessed training cases; target data: the preprocessed unlabelled target "
                    "training cases (preprocessed automatically if missing). Output: "
                    "$nnUNet_results/DatasetXXX_Name/GLUATranslator__PLANS__CONFIGURATION/ (checkpoint_final.pth, "
                    "checkpoint_latest.pth, style_bank.json, previews/, training_log.jsonl).",
        epilog="Examples: glua_train_style -d 701 -c 3d_fullres --device cuda; "
               "glua_train_style -d 901 -c 3d_fullres --preset cpu_demo --device cpu")
    _add_dataset_args(parser)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="named configuration to start from: 'default' (GPU, real data: 20000 iterations of "
                             "batch 16) or 'cpu_demo' (a phantom on a 2-core CPU in 3 to 5 minutes: "
                             "narrower networks, one downsampling step, 600 iterations of batch 4). "
                             "--config-json and the options below override it")
    parser.add_argument("--iterations", type=int, help="training iterations (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="slices per domain per iteration (default: the preset's)")
    parser.add_argument("--slice-size", type=int, nargs=2, metavar=("Y", "Z"),
                        help="in-plane training crop size (default: the preset's, else the configuration's "
                             "in-plane patch size)")
    parser.add_argument("--config-json", help="JSON file of TranslatorConfig overrides, e.g. "
                                              "'{\"network\": {\"base_channels\": 64}, \"lr\": 2e-4}'")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA (default: mixed precision)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--continue", "--resume", "--c", dest="resume", action="store_true",
                      help="continue an interrupted run from checkpoint_latest.pth (or extend a finished one with a "
                           "larger --iterations)")
    mode.add_argument("--overwrite", action="store_true", help="delete an existing run in the output folder first")
    parser.add_argument("--source-folder", help="override the preprocessed source case folder")
    parser.add_argument("--target-folder", help="override the preprocessed target case folder")
    parser.add_argument("-np", "--num-processes", type=int, help="processes for target preprocessing if needed")
    args = parser.parse_args(argv)

    from nnunet_glua.style.integration import load_context, train_for_dataset

    try:
        config = _load_config(args)
        ctx = load_context(args.dataset, args.configuration, args.plans)
        result = train_for_dataset(ctx, config, device=args.device, seed=args.seed, resume=args.resume,
                                   overwrite=args.overwrite, source_folder=args.source_folder,
                                   target_folder=args.target_folder, progress=not args.no_progress,
                                   num_processes=args.num_processes)
    except _USER_ERRORS as e:
        _fail(parser.prog, e)
    print(f"Translator trained for {result.iterations} iterations: {result.final_checkpoint}")
    print(f"Previews: {result.out_dir / 'previews'}; style bank: {result.style_bank.k} clusters "
          f"({result.out_dir / 'style_bank.json'})")


def translate_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_translate",
        description="Write target-like copies of raw source volumes with a trained style translator. Each case is "
                    "read and preprocessed like nnU-Net training data (configuration -c), translated slice by slice "
                    "with one target style per volume, and written as CASE_XXXX.nii.gz in nnU-Net's preprocessed "
                    "geometry (transposed axes, cropped to the nonzero region, target spacing, origin 0) with "
                    "z-scored intensities. translation.json records the style code used per case.",
        epilog="Example: glua_translate -d 701 -c 3d_fullres -i $nnUNet_raw/Dataset701_MMWHS_MR2CT/imagesTr "
               "-o translated")
    _add_dataset_args(parser)
    parser.add_argument("-i", "--input", nargs="+", required=True,
                        help="a folder of CASE_XXXX images (nnU-Net naming) or image files")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--checkpoint", help="translator checkpoint (default: the dataset's checkpoint_final.pth)")
    parser.add_argument("--no-amp", action="store_true", help="float32 translation on CUDA")
    args = parser.parse_args(argv)

    from nnunet_glua.style.integration import load_context, load_translator
    from nnunet_glua.style.volume_export import _num_channels, collect_cases, translate_raw_cases

    try:
        ctx = load_context(args.dataset, args.configuration, args.plans)
        # whole volumes differ in shape case by case: compiling would recompile for each, so run eagerly
        translator = load_translator(args.dataset, args.configuration, args.plans, device=args.device,
                                     checkpoint=args.checkpoint, amp=False if args.no_amp else None, compile=False)
        cases = collect_cases(args.input, ctx.dataset_json.get("file_ending", ".nii.gz"),
                              _num_channels(ctx.dataset_json))
        gen = torch.Generator().manual_seed(args.seed)
        written = translate_raw_cases(ctx, translator, cases, args.output, gen, progress=not args.no_progress)
    except _USER_ERRORS as e:
        _fail(parser.prog, e)
    print(f"Wrote {len(written)} translated images of {len(cases)} cases to {args.output}")


def report_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_style_report",
        description="Quality checks of a trained style translator: (a) how target-like translated source slices "
                    "are (per-structure intensities with source labels, intensity-histogram distance to the "
                    "target, a domain classifier's verdict) and (b) content preservation (cross-cycle error, label "
                    "boundaries vs image edges, structure separability). Prints a table and writes JSON.")
    _add_dataset_args(parser)
    parser.add_argument("--checkpoint", help="translator checkpoint (default: the dataset's checkpoint_final.pth)")
    parser.add_argument("--source-folder", help="labelled preprocessed source cases (default: the configuration's)")
    parser.add_argument("--target-folder", help="preprocessed target cases (default: unlabelled target training "
                                                "cases)")
    parser.add_argument("--target-labelled-folder",
                        help="optional preprocessed *labelled* target cases (e.g. test cases) for per-structure "
                             "target statistics; used for this report only")
    parser.add_argument("--max-slices", type=int, default=400, help="slices per folder (default 400)")
    parser.add_argument("--slice-size", type=int, nargs=2, metavar=("Y", "Z"),
                        help="in-plane size of the report's slices (default: the size the translator was trained "
                             "on; pass the configuration's in-plane patch size to judge a translator trained on "
                             "smaller crops on what the segmentation network will see)")
    parser.add_argument("--classifier-iterations", type=int, default=300,
                        help="training steps of the domain classifier (default 300)")
    parser.add_argument("-o", "--output", help="JSON output (default: style_report.json in the translator folder)")
    args = parser.parse_args(argv)

    from nnunet_glua.json_io import write_json
    from nnunet_glua.style.integration import load_context, load_translator, target_train_folder
    from nnunet_glua.style.report import format_report, style_report

    try:
        ctx = load_context(args.dataset, args.configuration, args.plans)
        translator = load_translator(args.dataset, args.configuration, args.plans, device=args.device,
                                     checkpoint=args.checkpoint, compile=False)
        target = Path(args.target_folder) if args.target_folder else target_train_folder(ctx, create=False)
        report = style_report(translator, args.source_folder or ctx.source_folder, target,
                              target_labelled_folder=args.target_labelled_folder, max_slices=args.max_slices,
                              slice_size=tuple(args.slice_size) if args.slice_size else None,
                              classifier_iterations=args.classifier_iterations, seed=args.seed,
                              progress=not args.no_progress)
        out = Path(args.output) if args.output else Path(translator.source).parent / "style_report.json"
        write_json(report, out)
    except _USER_ERRORS as e:
        _fail(parser.prog, e)
    print(format_report(report))
    print(f"\nJSON: {out}")


if __name__ == "__main__":  # pragma: no cover - python -m nnunet_glua.style.cli train|translate|report ...
    commands = {"train": train_main, "translate": translate_main, "report": report_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m nnunet_glua.style.cli {{{','.join(commands)}}} [options]")
    commands[sys.argv[1]](sys.argv[2:])
