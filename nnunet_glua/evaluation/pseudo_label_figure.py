"""Picture of a pseudo-label set: for a few kept cases, a target training slice, its pseudo-label and the voxels the
set ignores (no loss there in self-training)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont

from nnunet_glua.data.pseudo_labels import LABELS_FOLDER, SET_FILE
from nnunet_glua.evaluation.figures import DISPLAY_ORIENTATION, GAP, PANEL_MIN_SIDE, FigureError, overlay_rgb
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.json_io import read_json
from nnunet_glua.style.preview import display_window, to_uint8
from nnunet_glua.volume_io import read_volume

__all__ = ["pseudo_label_figure"]

_IGNORED_RGB = (255, 0, 255)
_TEXT_HEIGHT = 18


def _slices(image_file: Path, label_file: Path, ignore_label: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(gray uint8 slice, label slice, slice index, number of slices) at the slice with the most labelled voxels."""
    image = sitk.DICOMOrient(read_volume(image_file, "target training image", FigureError), DISPLAY_ORIENTATION)
    label = sitk.DICOMOrient(read_volume(label_file, "pseudo-label", FigureError), DISPLAY_ORIENTATION)
    if image.GetSize() != label.GetSize():
        raise FigureError(label_file, f"size {label.GetSize()} differs from its image's {image.GetSize()}")
    volume = sitk.GetArrayFromImage(image).astype(np.float32)
    labels = sitk.GetArrayFromImage(label).astype(np.int64)
    structures = (labels > 0) & (labels != ignore_label)
    index = int(np.argmax(structures.sum(axis=(1, 2))))
    return to_uint8(volume[index], display_window(volume, volume != 0)), labels[index], index, labels.shape[0]


def pseudo_label_figure(set_folder: "str | os.PathLike", images_dir: "str | os.PathLike",
                        out_png: "str | os.PathLike", max_cases: int = 3, channel_suffix: str = "_0000",
                        file_ending: str = ".nii.gz") -> Path:
    """Draw ``max_cases`` kept cases of the pseudo-label set in ``set_folder`` (``pseudo_label_set.json`` and
    ``labels/``), one row each: the image of ``images_dir`` (``imagesTargetTr``), the pseudo-label over it, and its
    ignored voxels in magenta with the ignored fraction of the case. Writes ``out_png`` atomically and returns it;
    :class:`~nnunet_glua.evaluation.figures.FigureError` naming the file when a case cannot be read."""
    set_folder, images_dir, out_png = Path(set_folder), Path(images_dir), Path(out_png)
    state = read_json(set_folder / SET_FILE, FigureError)
    ignore = int(state["ignore_label"])
    kept = sorted(c for c, r in state["cases"].items() if r.get("status") == "kept")[:max_cases]
    if not kept:
        raise FigureError(set_folder / SET_FILE, "keeps no case: nothing to draw")
    rows = []
    for case in kept:
        gray, labels, index, n = _slices(images_dir / f"{case}{channel_suffix}{file_ending}",
                                         set_folder / LABELS_FOLDER / f"{case}{file_ending}", ignore)
        ignored_rgb = np.repeat(gray[..., None], 3, axis=-1)
        ignored_rgb[labels == ignore] = _IGNORED_RGB
        panels = [np.repeat(gray[..., None], 3, axis=-1), overlay_rgb(gray, np.where(labels == ignore, 0, labels)),
                  ignored_rgb]
        text = f"{case} slice {index}/{n - 1}, ignored {state['cases'][case].get('ignored_fraction', 0):.1%} of case"
        rows.append((panels, text))
    factor = max(1, math.ceil(PANEL_MIN_SIDE / max(1, min(rows[0][0][0].shape[:2]))))
    cell_h, cell_w = (max(p[0].shape[i] for p, _ in rows) * factor for i in (0, 1))
    width, row_h = 3 * (cell_w + GAP) + GAP, cell_h + _TEXT_HEIGHT + GAP
    canvas = Image.new("RGB", (width, _TEXT_HEIGHT + len(rows) * row_h), "black")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for c, header in enumerate(("target training image", "pseudo-label", "ignored (magenta)")):
        draw.text((GAP + c * (cell_w + GAP) + 2, 3), header, fill="white", font=font)
    for r, (panels, text) in enumerate(rows):
        y = _TEXT_HEIGHT + r * row_h
        for c, panel in enumerate(panels):
            enlarged = np.repeat(np.repeat(panel, factor, axis=0), factor, axis=1)
            canvas.paste(Image.fromarray(enlarged), (GAP + c * (cell_w + GAP), y))
        draw.text((GAP + 2, y + cell_h + 2), text, fill="white", font=font)
    with atomic_path(out_png) as tmp:
        canvas.save(tmp, format="PNG")
    return out_png
