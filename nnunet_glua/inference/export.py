"""Export a trained GLUA model folder so that plain nnU-Net (without this plugin) can predict with it.

GLUATrainer keeps nnU-Net's network: the feature-tapping view shares the U-Net's parameters under the very same
state-dict keys. Rewriting each checkpoint's ``trainer_name`` to ``nnUNetTrainer`` and dropping the GLUA training
state (discriminator, optimizer states) therefore yields a model folder that ``nnUNetv2_predict`` /
``nnUNetv2_predict_from_modelfolder`` load with nnU-Net's own trainer class.
"""
from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from nnunet_glua.io_utils import staged_directory

EXPORT_TRAINER_NAME = "nnUNetTrainer"
_MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")


def export_for_plain_nnunet(model_folder: str | Path, output_folder: str | Path,
                            folds: Sequence[int | str] | None = None,
                            checkpoint_name: str = "checkpoint_final.pth", overwrite: bool = False) -> Path:
    """Copy ``model_folder`` (``.../GLUATrainer__nnUNetPlans__3d_fullres``) to ``output_folder`` as a plain nnU-Net
    model: for each fold, only ``checkpoint_name`` with ``trainer_name = nnUNetTrainer`` and inference-relevant
    entries. ``folds`` default: every ``fold_*`` that has the checkpoint. Written all-or-nothing."""
    model_folder = Path(model_folder)
    missing = [f for f in _MODEL_FILES[:2] if not (model_folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_folder}: not an nnU-Net model folder (missing {', '.join(missing)})")
    fold_dirs = sorted(p for p in model_folder.glob("fold_*") if (p / checkpoint_name).is_file()) if folds is None \
        else [model_folder / f"fold_{f}" for f in folds]
    if not fold_dirs:
        raise FileNotFoundError(f"{model_folder}: no fold_* folder holds {checkpoint_name}; train first")
    for d in fold_dirs:
        if not (d / checkpoint_name).is_file():
            raise FileNotFoundError(f"{d / checkpoint_name} not found")
    with staged_directory(output_folder, overwrite=overwrite) as out:
        for name in _MODEL_FILES:
            if (model_folder / name).is_file():
                shutil.copy2(model_folder / name, out / name)
        for d in fold_dirs:
            ckpt = torch.load(d / checkpoint_name, map_location="cpu", weights_only=False)
            plain = {
                "network_weights": ckpt["network_weights"],
                "trainer_name": EXPORT_TRAINER_NAME,
                "init_args": ckpt["init_args"],
                "inference_allowed_mirroring_axes": ckpt.get("inference_allowed_mirroring_axes"),
                "current_epoch": ckpt.get("current_epoch"),
                "exported_from": {"trainer_name": ckpt.get("trainer_name"), "folder": str(model_folder)},
            }
            (out / d.name).mkdir()
            torch.save(plain, out / d.name / checkpoint_name)
    return Path(output_folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_export_model",
        description="Export a trained GLUA model folder for plain nnU-Net (no plugin needed to predict). Example: "
        "glua_export_model -i $nnUNet_results/Dataset701_MMWHS_MR2CT/GLUATrainer__nnUNetPlans__3d_fullres "
        "-o /models/mmwhs_ct  then  nnUNetv2_predict_from_modelfolder -i IN -o OUT -m /models/mmwhs_ct -f 0 1 2 3 4")
    parser.add_argument("-i", "--model-folder", required=True, type=Path,
                        help="trained model folder (TRAINER__PLANS__CONFIG)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder to write the exported model to")
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to export (default: all trained)")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    out = export_for_plain_nnunet(args.model_folder, args.output, args.folds, args.checkpoint, args.overwrite)
    print(f"exported {args.model_folder} -> {out} (trainer_name = {EXPORT_TRAINER_NAME})")


if __name__ == "__main__":
    main()
