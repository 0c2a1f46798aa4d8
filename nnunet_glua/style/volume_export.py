"""Whole-volume translation of raw source images into target-like NIfTI files (the work of ``glua_translate``).

For each case: read the raw image files with the plans' reader, run the configuration's nnU-Net preprocessor
(transpose, crop to the nonzero region, z-score, resample) exactly as for training, translate every slice with one
style from the style bank (:meth:`~nnunet_glua.style.translate.Translator.translate_volume`; voxels outside nnU-Net's
nonzero region keep their preprocessed value), and write one NIfTI per channel.

Output geometry: the **preprocessed grid**, not the raw scan's. The array axes are nnU-Net's (transposed by the plans'
``transpose_forward``), the volume is cropped to the nonzero bounding box, and voxels have the configuration's target
spacing (for 2D configurations the through-plane spacing is the case's original one, as nnU-Net keeps it). The NIfTI
spacing is set accordingly; origin is 0 and direction the identity, so the files overlay each other and the
preprocessed data but not the raw scans. Intensities are z-scored target-like values (see
:mod:`~nnunet_glua.style.translate`). Files are named ``{case}_{channel:04d}.nii.gz`` like nnU-Net inputs, and
``translation.json`` records the checkpoint, each case's style code, shape and spacing.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from tqdm import tqdm

from nnunet_glua.json_io import write_json
from nnunet_glua.io_utils import write_image
from nnunet_glua.style.integration import NnUNetContext
from nnunet_glua.style.translate import Translator

__all__ = ["collect_cases", "translate_raw_cases", "preprocessed_spacing"]


def _num_channels(dataset_json: dict) -> int:
    names = dataset_json.get("channel_names") or dataset_json.get("modality")
    if not names:
        raise ValueError("dataset.json has no 'channel_names'; cannot tell how many image files make one case")
    return len(names)


def collect_cases(inputs: list[str | os.PathLike], file_ending: str, num_channels: int) -> dict[str, list[str]]:
    """Map case id -> its channel files (sorted by channel), from one folder or an explicit list of files.

    Folder: every ``CASE_XXXX{file_ending}`` file in it (nnU-Net naming). Files: with one channel a file is a case
    (its id is the name without ``_0000`` and the ending); with several channels files are grouped by ``CASE``.
    """
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].is_dir():
        files = sorted(p for p in paths[0].iterdir() if p.name.endswith(file_ending))
        if not files:
            raise FileNotFoundError(f"{paths[0]}: no '*{file_ending}' images in this folder")
        strict = True
    else:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"input files not found: {missing}")
        files = paths
        strict = num_channels > 1
    cases: dict[str, dict[int, str]] = defaultdict(dict)
    for f in files:
        m = pattern.match(f.name)
        if m is None:
            if strict or not f.name.endswith(file_ending):
                raise ValueError(f"{f}: expected nnU-Net image naming CASE_XXXX{file_ending} "
                                 f"(XXXX = 4-digit channel index)")
            cases[f.name[:-len(file_ending)]][0] = str(f)
            continue
        case, channel = m.group("case"), int(m.group("channel"))
        if not strict:
            channel = 0
        if channel in cases[case]:
            raise ValueError(f"{f}: case {case!r} has channel {channel} twice")
        cases[case][channel] = str(f)
    out = {}
    for case, chans in sorted(cases.items()):
        if sorted(chans) != list(range(num_channels)):
            raise ValueError(f"case {case!r}: found channels {sorted(chans)}, the dataset has {num_channels} "
                             f"(files {sorted(chans.values())})")
        out[case] = [chans[c] for c in range(num_channels)]
    return out


def preprocessed_spacing(ctx: NnUNetContext, properties: dict) -> list[float]:
    """Voxel spacing of a preprocessed case in nnU-Net's (transposed) axis order."""
    spacing = [float(s) for s in ctx.configuration_manager.spacing]
    if len(spacing) == 2:  # 2D configuration: slices keep their original distance
        original = [float(properties["spacing"][i]) for i in ctx.plans_manager.transpose_forward]
        spacing = [original[0]] + spacing
    return spacing


def translate_raw_cases(ctx: NnUNetContext, translator: Translator, cases: dict[str, list[str]],
                        out_dir: str | os.PathLike, generator: torch.Generator | None = None,
                        progress: bool = True) -> list[Path]:
    """Preprocess, translate and write every case; returns the written image paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pm, cm = ctx.plans_manager, ctx.configuration_manager
    preprocessor = cm.preprocessor_class(verbose=False)
    written: list[Path] = []
    record: dict[str, Any] = {"checkpoint": translator.source, "identity": translator.identity.to_dict(),
                              "geometry": "nnU-Net preprocessed grid (transposed axes, cropped to the nonzero region, "
                                          "target spacing); origin 0, identity direction",
                              "intensity": "z-scored, target-like", "cases": {}}
    for case, files in tqdm(cases.items(), desc="Translating volumes", disable=not progress):
        try:
            data, seg, props = preprocessor.run_case(files, None, pm, cm, ctx.dataset_json)
        except Exception as e:  # noqa: BLE001 - reader/preprocessor errors: name the files
            raise ValueError(f"{files}: nnU-Net preprocessing failed ({e})") from e
        style = translator.sample_styles(1, generator)
        body = np.asarray(seg[0]) >= 0
        translated = translator.translate_volume(np.asarray(data, np.float32), valid_mask=body, style=style)
        spacing = preprocessed_spacing(ctx, props)
        for c in range(translated.shape[0]):
            img = sitk.GetImageFromArray(translated[c])
            img.SetSpacing([float(s) for s in spacing[::-1]])  # SimpleITK orders axes opposite to numpy
            path = out_dir / f"{case}_{c:04d}.nii.gz"
            write_image(img, path)
            written.append(path)
        record["cases"][case] = {"files": files, "shape": list(translated.shape[1:]), "spacing": spacing,
                                 "style": [round(float(v), 6) for v in style.flatten().cpu()]}
    write_json(record, out_dir / "translation.json")
    return written
