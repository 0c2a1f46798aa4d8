"""``glua_make_phantom``: write a synthetic cardiac or abdominal data set from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from nnunet_glua.phantom.acquisition import MIN_SIZE
from nnunet_glua.phantom.generator import DEFAULT_SIZE, KINDS, make_phantom
from nnunet_glua.phantom.tissues import APPEARANCES


def build_parser() -> argparse.ArgumentParser:
    """The ``glua_make_phantom`` argument parser (kind, output folder, cases, seed, size, appearance, overwrite,
    quiet)."""
    parser = argparse.ArgumentParser(
        prog="glua_make_phantom",
        description=(
            "Write a synthetic cardiac (MMWHS layout: ct_train/, mr_train/) or abdominal (CHAOS T2-SPIR DICOM +\n"
            "PNG masks and BTCV NIfTI) data set with a realistic CT/MR domain gap, ready for glua_convert_mmwhs\n"
            "or glua_convert_abdomen. The same seed gives identical files."
        ),
        epilog=(
            "Examples:\n"
            "  glua_make_phantom --kind cardiac --out /data/phantom_mmwhs\n"
            "  glua_make_phantom --kind abdominal --out /data/phantom_abdomen --num-cases 8 --size 64\n"
            "  glua_convert_abdomen --chaos /data/phantom_abdomen/CHAOS --btcv /data/phantom_abdomen/BTCV ..."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kind", required=True, choices=KINDS,
                        help="cardiac (MMWHS CT+MR) or abdominal (CHAOS MR + BTCV CT)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--num-cases", type=int, default=None,
                        help="scans per dataset, the first public ids (default: all; 20 MMWHS CT + 20 MR, "
                             "20 CHAOS, 30 BTCV)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, non-negative (default: 0)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"in-plane matrix of the axial CT scans in voxels, at least {MIN_SIZE} "
                             f"(default: {DEFAULT_SIZE}); slices and MR matrices follow from it")
    parser.add_argument("--appearance", choices=tuple(APPEARANCES), default="standard",
                        help="tissue intensities and image formation: standard (default; what every default was "
                             "chosen on) or alt (other scanners and contrast timings, same anatomy)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it exists (after the new data is complete)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: "Sequence[str] | None" = None) -> None:
    """Run ``glua_make_phantom`` on ``argv`` (default: ``sys.argv[1:]``); bad arguments exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = make_phantom(args.kind, args.out, num_cases=args.num_cases, seed=args.seed, size=args.size,
                           overwrite=args.overwrite, progress=not args.quiet, appearance=args.appearance)
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"glua_make_phantom: error: {error}\n")
    print(f"{args.kind} phantom written to {out}")


if __name__ == "__main__":
    main()
