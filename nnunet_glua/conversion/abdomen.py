"""Abdominal MR <-> CT benchmark: CHAOS T2-SPIR MR (20 patients) and BTCV CT (30 volumes) -> UDA nnU-Net raw dataset.

Task labels: 1 liver, 2 right kidney, 3 left kidney, 4 spleen. MR cases are named ``mr_0001`` (CHAOS patient 1),
CT cases ``ct_0001`` (BTCV ``img0001``). Default test ids: CT 1, 9, 30, 32, 33, 39; MR 1, 13, 32, 38. CHAOS masks
are read by :mod:`.chaos` (PNG values 63/126/189/252, matched by range), BTCV by :mod:`.btcv`. See
:mod:`.uda_dataset` for the output layout.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from nnunet_glua.conversion.btcv import btcv_training_folder, find_btcv_scans
from nnunet_glua.conversion.chaos import DICOM_FOLDER, MASK_FOLDER, list_chaos_patients, load_chaos_t2spir
from nnunet_glua.conversion.intensity import IntensitySettings
from nnunet_glua.conversion.labels import ABDOMEN_LABELS, CHAOS_ABDOMEN
from nnunet_glua.conversion.sources import CaseSource
from nnunet_glua.conversion.uda_dataset import (
    UdaConversion,
    add_common_arguments,
    conversion_options,
    parse_direction,
    run_converter,
    split_cases,
    write_uda_datasets,
)

ABDOMEN_CT_TEST_IDS = (1, 9, 30, 32, 33, 39)
ABDOMEN_MR_TEST_IDS = (1, 13, 32, 38)
_REFERENCE = (
    "CHAOS: Kavur AE et al., CHAOS Challenge - combined (CT-MR) healthy abdominal organ segmentation, Medical Image "
    "Analysis 69, 2021. BTCV: Landman B et al., MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault."
)


def load_chaos_case(source: CaseSource, with_label: bool) -> tuple[sitk.Image, "sitk.Image | None"]:
    """Loader for one CHAOS T2-SPIR series (``source.files["series"]`` is the patient's ``T2SPIR`` folder)."""
    image, mask = load_chaos_t2spir(Path(source.files["series"]))
    return image, (mask if with_label else None)


def find_chaos_scans(chaos_root: "str | os.PathLike") -> dict[int, CaseSource]:
    """All CHAOS T2-SPIR series as ``{patient id: CaseSource}`` (case ids ``mr_0001`` ...)."""
    return {
        number: CaseSource(
            case_id=f"mr_{number:04d}",
            modality="MR",
            number=number,
            files={
                "series": str(folder),
                "image": str(Path(folder) / DICOM_FOLDER),
                "label": str(Path(folder) / MASK_FOLDER),
            },
            loader=load_chaos_case,
            label_map=CHAOS_ABDOMEN,
        )
        for number, folder in sorted(list_chaos_patients(chaos_root).items())
    }


def convert_abdomen(
    chaos_root: "str | os.PathLike",
    btcv_root: "str | os.PathLike",
    direction: str,
    dataset_id: int,
    dataset_name: str | None = None,
    ct_test_ids: Sequence[int] = ABDOMEN_CT_TEST_IDS,
    mr_test_ids: Sequence[int] = ABDOMEN_MR_TEST_IDS,
    upper_bound_id: int | None = None,
    overwrite: bool = False,
    num_processes: int | None = None,
    intensity: IntensitySettings | None = None,
    upper_bound_name: str | None = None,
) -> Path:
    """Convert CHAOS (MR) and BTCV (CT) into ``$nnUNet_raw/Dataset{dataset_id:03d}_{dataset_name}`` (default name
    ``Abdomen_<direction>``); returns that folder.

    ``direction`` is ``"MR2CT"`` or ``"CT2MR"``. ``upper_bound_id`` also writes the target-supervised dataset
    (default name ``<dataset_name>_TargetSupervised``). Raises :class:`ConversionError` (naming the file) for bad
    input; nothing is written then.
    """
    parse_direction(direction)
    direction = direction.upper()
    chaos_root, btcv_root = Path(chaos_root), Path(btcv_root)
    scans = {"MR": find_chaos_scans(chaos_root), "CT": find_btcv_scans(btcv_root)}
    split = split_cases(
        scans,
        direction,
        {"CT": ct_test_ids, "MR": mr_test_ids},
        {"CT": btcv_training_folder(btcv_root) / "img", "MR": chaos_root},
    )
    conversion = UdaConversion(
        benchmark="Abdomen",
        direction=direction,
        split=split,
        labels=dict(ABDOMEN_LABELS),
        dataset_id=dataset_id,
        dataset_name=dataset_name or f"Abdomen_{direction}",
        upper_bound_id=upper_bound_id,
        upper_bound_name=upper_bound_name,
        intensity=intensity or IntensitySettings(),
        inputs={"chaos": str(chaos_root.resolve()), "btcv": str(btcv_root.resolve())},
        description="MR: CHAOS T2-SPIR; CT: BTCV.",
        reference=_REFERENCE,
        licence="CHAOS: CC BY-SA 4.0; BTCV: Synapse data use terms",
    )
    return write_uda_datasets(conversion, overwrite=overwrite, num_processes=num_processes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glua_convert_abdomen",
        description=(
            "Convert CHAOS T2-SPIR MR (DICOM + PNG masks) and BTCV CT (NIfTI) into an nnU-Net raw dataset for "
            "unsupervised domain adaptation with labels 1 liver, 2 right kidney, 3 left kidney, 4 spleen: "
            "imagesTr/labelsTr = labelled source scans, imagesTargetTr = unlabelled target scans, imagesTs + "
            "labelsTs = target test scans. Every scan is re-indexed to LPS (no interpolation) and its intensities "
            "are clipped inside a body mask and mapped to [1, 1000] with 0 outside the body. "
            "Output: $nnUNet_raw/Dataset<ID>_<NAME>."
        ),
        epilog="Example: glua_convert_abdomen --chaos /data/CHAOS_Train_Sets --btcv /data/BTCV --direction MR2CT "
               "-d 703 --upper-bound-id 704",
    )
    parser.add_argument("--chaos", required=True, type=Path,
                        help="CHAOS folder (holding Train_Sets/MR/<id>/T2SPIR, or Train_Sets or Train_Sets/MR)")
    parser.add_argument("--btcv", required=True, type=Path,
                        help="BTCV folder (holding RawData/Training/img and label, or RawData, or Training)")
    add_common_arguments(parser, ABDOMEN_CT_TEST_IDS, ABDOMEN_MR_TEST_IDS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    run_converter(parser.prog, convert_abdomen, args.chaos, args.btcv, **conversion_options(args))


if __name__ == "__main__":
    main()
