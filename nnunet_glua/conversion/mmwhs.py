"""MMWHS (Multi-Modality Whole Heart Segmentation, 20 CT + 20 MR labelled volumes) -> UDA nnU-Net raw dataset.

Input layout (as distributed)::

    SRC/ct_train/ct_train_1001_image.nii.gz   SRC/ct_train/ct_train_1001_label.nii.gz   ... ids 1001-1020
    SRC/mr_train/mr_train_1001_image.nii.gz   SRC/mr_train/mr_train_1001_label.nii.gz   ... ids 1001-1020

Cases are named ``ct_1001`` / ``mr_1001``. The default test ids are the SIFA protocol's (CT 1003, 1008, 1014, 1019;
MR 1007, 1009, 1018, 1019). Labels: ``standard`` = 1 MYO (205), 2 LAC (420), 3 LVC (500), 4 AA (820), the rest
background; ``all`` = the seven structures. The stray value 421 found in some label files is treated as 420 and
reported. See :mod:`nnunet_glua.conversion.uda_dataset` for the output layout.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Sequence

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import IntensitySettings
from nnunet_glua.conversion.labels import MMWHS_LABEL_SETS
from nnunet_glua.conversion.sources import CaseSource, load_nifti_pair
from nnunet_glua.conversion.uda_dataset import (
    UdaConversion,
    add_common_arguments,
    conversion_options,
    parse_direction,
    run_converter,
    split_cases,
    write_uda_datasets,
)

MMWHS_CT_TEST_IDS = (1003, 1008, 1014, 1019)
MMWHS_MR_TEST_IDS = (1007, 1009, 1018, 1019)
_FILE_PATTERN = re.compile(r"^(ct|mr)_train_(\d+)_(image|label)\.nii(\.gz)?$")
_REFERENCE = (
    "Zhuang X, Shen J. Multi-scale patch and multi-modality atlases for whole heart segmentation of MRI. "
    "Medical Image Analysis 31, 2016 (MM-WHS)"
)


def find_mmwhs_scans(src: "str | os.PathLike", label_set: str = "standard") -> dict[str, dict[int, CaseSource]]:
    """All image/label pairs under ``src/ct_train`` and ``src/mr_train`` as ``{"CT": {1001: CaseSource}, "MR": ...}``.

    Other files in those folders are ignored. Raises :class:`ConversionError` for a missing modality folder, an
    image without label (or the reverse), or an id stored twice (``.nii`` and ``.nii.gz``).
    """
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(src, "MMWHS folder does not exist")
    scans: dict[str, dict[int, CaseSource]] = {}
    for prefix in ("ct", "mr"):
        folder = src / f"{prefix}_train"
        if not folder.is_dir():
            raise ConversionError(
                folder, f"folder missing; expected the MMWHS layout "
                f"{src}/{prefix}_train/{prefix}_train_1001_image.nii.gz and {prefix}_train_1001_label.nii.gz"
            )
        pairs: dict[int, dict[str, Path]] = {}
        for path in sorted(folder.iterdir()):
            match = _FILE_PATTERN.match(path.name)
            if not match or match.group(1) != prefix:
                continue
            number, kind = int(match.group(2)), match.group(3)
            if kind in pairs.setdefault(number, {}):
                raise ConversionError(
                    path, f"{prefix.upper()} {number} {kind} is stored twice ({pairs[number][kind].name}); keep one"
                )
            pairs[number][kind] = path
        modality = prefix.upper()
        scans[modality] = {}
        for number, files in sorted(pairs.items()):
            for have, need in (("image", "label"), ("label", "image")):
                if need not in files:
                    expected = files[have].name.replace(f"_{have}.", f"_{need}.")
                    raise ConversionError(files[have], f"has no matching {need} file ({expected} is missing)")
            scans[modality][number] = CaseSource(
                case_id=f"{prefix}_{number}",
                modality=modality,
                number=number,
                files={"image": str(files["image"]), "label": str(files["label"])},
                loader=load_nifti_pair,
                label_map=MMWHS_LABEL_SETS[label_set],
            )
    return scans


def convert_mmwhs(
    src: "str | os.PathLike",
    direction: str,
    dataset_id: int,
    dataset_name: str | None = None,
    ct_test_ids: Sequence[int] = MMWHS_CT_TEST_IDS,
    mr_test_ids: Sequence[int] = MMWHS_MR_TEST_IDS,
    label_set: str = "standard",
    upper_bound_id: int | None = None,
    overwrite: bool = False,
    num_processes: int | None = None,
    intensity: IntensitySettings | None = None,
    upper_bound_name: str | None = None,
) -> Path:
    """Convert MMWHS at ``src`` into ``$nnUNet_raw/Dataset{dataset_id:03d}_{dataset_name}`` (default name
    ``MMWHS_<direction>``); returns that folder.

    ``direction`` is ``"MR2CT"`` or ``"CT2MR"``; ``label_set`` ``"standard"`` (4 classes) or ``"all"`` (7).
    ``upper_bound_id`` also writes the target-supervised dataset (default name ``<dataset_name>_TargetSupervised``).
    Raises :class:`ConversionError` (naming the file) for bad input; nothing is written then.
    """
    if label_set not in MMWHS_LABEL_SETS:
        raise ValueError(f"label_set must be one of {sorted(MMWHS_LABEL_SETS)}, got {label_set!r}")
    parse_direction(direction)
    direction = direction.upper()
    src = Path(src)
    scans = find_mmwhs_scans(src, label_set)
    split = split_cases(
        scans,
        direction,
        {"CT": ct_test_ids, "MR": mr_test_ids},
        {"CT": src / "ct_train", "MR": src / "mr_train"},
    )
    label_map = MMWHS_LABEL_SETS[label_set]
    conversion = UdaConversion(
        benchmark="MMWHS",
        direction=direction,
        split=split,
        labels=dict(label_map.labels),
        dataset_id=dataset_id,
        dataset_name=dataset_name or f"MMWHS_{direction}",
        upper_bound_id=upper_bound_id,
        upper_bound_name=upper_bound_name,
        intensity=intensity or IntensitySettings(),
        inputs={"mmwhs": str(src.resolve())},
        description=f"Label set '{label_set}'.",
        reference=_REFERENCE,
        licence="MM-WHS challenge data terms",
    )
    return write_uda_datasets(conversion, overwrite=overwrite, num_processes=num_processes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glua_convert_mmwhs",
        description=(
            "Convert MMWHS (SRC/ct_train/ct_train_1001_image.nii.gz + _label, SRC/mr_train/...) into an nnU-Net raw "
            "dataset for unsupervised domain adaptation: imagesTr/labelsTr = labelled source scans, imagesTargetTr = "
            "unlabelled target scans, imagesTs + labelsTs = target test scans. Every scan is re-indexed to LPS "
            "(no interpolation) and its intensities are clipped inside a body mask and mapped to [1, 1000] with 0 "
            "outside the body. Output: $nnUNet_raw/Dataset<ID>_<NAME>."
        ),
        epilog="Example: glua_convert_mmwhs --src /data/MMWHS --direction MR2CT -d 701 --upper-bound-id 702",
    )
    parser.add_argument("--src", required=True, type=Path, help="MMWHS folder holding ct_train/ and mr_train/")
    add_common_arguments(parser, MMWHS_CT_TEST_IDS, MMWHS_MR_TEST_IDS)
    parser.add_argument("--labels", choices=sorted(MMWHS_LABEL_SETS), default="standard",
                        help="standard: MYO, LAC, LVC, AA (the UDA benchmark); all: MYO, LA, LV, RA, RV, AA, PA "
                             "(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    run_converter(parser.prog, convert_mmwhs, args.src, label_set=args.labels, **conversion_options(args))


if __name__ == "__main__":
    main()
