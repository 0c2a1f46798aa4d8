"""Qualitative comparison figure: target test slices with their ground truth and each model's prediction.

One PNG (Pillow), one row per case, columns ``image | ground truth | one per prediction folder`` (e.g. source-only,
GLUA, target-supervised). Every row shows one axial slice: the one with the most ground-truth foreground voxels.

Inputs are an nnU-Net raw dataset's target test images (``imagesTs/{case}{channel_suffix}{file_ending}``), their
labels (``labelsTs/{case}{file_ending}``) and prediction folders as ``nnUNetv2_predict`` writes them
(``{case}{file_ending}``), all on the same voxel grid (size, spacing, origin and direction are checked).

Display conventions:

* Orientation: every volume is re-indexed to LPS first (axis permutations and flips only, no interpolation; the
  converters' canonical data already is LPS, so nothing changes there). SimpleITK array axis 0 then runs from
  inferior to superior and is the axial axis; the slice index shown at the left of each row counts along it. Each
  axial slice is drawn in the radiological convention: **anterior at the top, the patient's right on the viewer's
  left**, whatever orientation the files were stored in.
* Intensities: the image is windowed to the 1st-99th percentile of the *volume's* nonzero voxels (the converters
  set everything outside the body to 0), so all slices of one case share one window, and shown in grayscale.
* Labels: a colour overlay on the grayscale image, one fixed colour per label value (:func:`label_colour`), the
  same in every column, so columns compare directly; label 0 (and any negative value) is transparent.
* Size: each slice is enlarged by an integer nearest-neighbour factor until its shorter side is at least
  :data:`PANEL_MIN_SIDE` pixels; voxels stay square (in-plane spacing is not taken into account).
* Under each prediction panel: the Dice of that slice (mean over the foreground labels present in the ground
  truth or the prediction). It describes the one slice shown and is no substitute for the 3D evaluation
  (:mod:`nnunet_glua.evaluation.evaluate`).
"""
from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from nnunet_glua.conversion.orientation import geometry_mismatches
from nnunet_glua.errors import PathError
from nnunet_glua.evaluation.label_maps import as_integer_labels
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import label_files
from nnunet_glua.style.preview import display_window, to_uint8
from nnunet_glua.volume_io import read_volume

__all__ = [
    "DISPLAY_ORIENTATION",
    "PANEL_MIN_SIDE",
    "FigureError",
    "label_colour",
    "overlay_rgb",
    "prediction_figure",
]

# Orientation every volume is brought to before slicing (see the module docstring for what the reader sees).
DISPLAY_ORIENTATION = "LPS"

# Layout in pixels. The grid is regular: every panel cell has the size of the largest enlarged slice.
PANEL_MIN_SIDE = 160
GAP = 4  # between panels, and after the last column
TITLE_HEIGHT = 20  # only when a title is given
HEADER_HEIGHT = 18  # column headers
FOOTER_HEIGHT = 16  # under each panel row: the per-slice Dice of the prediction columns
LEGEND_LINE_HEIGHT = 18
_MARGIN = 4  # text inset
_SWATCH = 10  # legend colour square

# Distinct, colour-blind-aware hues for the first label values; every one has unequal RGB channels, so a
# blended pixel can never be mistaken for a gray one.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # 1 red
    (60, 180, 75),  # 2 green
    (0, 130, 200),  # 3 blue
    (255, 225, 25),  # 4 yellow
    (245, 130, 48),  # 5 orange
    (145, 30, 180),  # 6 purple
    (70, 240, 240),  # 7 cyan
    (240, 50, 230),  # 8 magenta
    (210, 245, 60),  # 9 lime
    (0, 128, 128),  # 10 teal
    (170, 110, 40),  # 11 brown
    (250, 190, 212),  # 12 pink
)


class FigureError(PathError):
    """Bad figure input (unreadable file, geometry mismatch, no usable case). ``path`` names the file or folder."""


# ------------------------------------------------------------------------------------------------ colours
def label_colour(value: int) -> tuple[int, int, int]:
    """Fixed RGB colour (0..255 each) of label ``value`` >= 1; the same value always gets the same colour.

    Values 1..12 come from a hand-picked palette of distinct colours; higher values get hues spaced by the
    golden angle, which keeps neighbouring values apart.
    """
    value = int(value)
    if value < 1:
        raise ValueError(f"label {value} has no colour: only foreground labels (>= 1) are drawn")
    if value <= len(_PALETTE):
        return _PALETTE[value - 1]
    hue = (value * 0.6180339887) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    # keep the channels unequal so the colour is never a gray
    return round(r * 255), round(g * 255), round(b * 255)


def overlay_rgb(gray_uint8: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Draw a label map over a grayscale image.

    Args:
        gray_uint8: ``(H, W)`` uint8 grayscale image (0..255).
        labels: ``(H, W)`` integer (or bool) label map; values <= 0 are transparent, each value >= 1 is drawn in
            :func:`label_colour` blended with the gray value.
        alpha: opacity of the label colours, 0 (invisible) .. 1 (opaque).
    Returns:
        ``(H, W, 3)`` uint8 RGB image: ``gray`` in all three channels where the label is <= 0, else
        ``round((1 - alpha) * gray + alpha * colour)``.
    """
    gray = np.asarray(gray_uint8)
    labels = np.asarray(labels)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"overlay_rgb expects an (H, W) uint8 gray image, got shape {gray.shape} dtype {gray.dtype}")
    if labels.shape != gray.shape:
        raise ValueError(f"overlay_rgb: label map shape {labels.shape} differs from image shape {gray.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    elif not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"overlay_rgb expects an integer or bool label map, got dtype {labels.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay_rgb: alpha must lie in [0, 1], got {alpha}")
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    foreground = labels > 0
    if foreground.any():
        values, index = np.unique(labels[foreground], return_inverse=True)
        colours = np.array([label_colour(v) for v in values], dtype=np.float64)[index.reshape(-1)]
        blended = (1.0 - alpha) * gray[foreground][:, None].astype(np.float64) + alpha * colours
        rgb[foreground] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return rgb


# ------------------------------------------------------------------------------------------ slice metrics
def _slice_dice(reference: np.ndarray, prediction: np.ndarray) -> float | None:
    """Mean Dice over the foreground labels (> 0) present in ``reference`` or ``prediction`` (same shape, int).

    ``None`` when neither holds any foreground (nothing to score). Display only: one slice says little about
    a 3D result.
    """
    values = np.union1d(np.unique(reference[reference > 0]), np.unique(prediction[prediction > 0]))
    if values.size == 0:
        return None
    scores = []
    for v in values:
        ref, pred = reference == v, prediction == v
        scores.append(2.0 * np.logical_and(ref, pred).sum() / (ref.sum() + pred.sum()))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------------------ reading
def _read_volume(path: Path, role: str) -> sitk.Image:
    """Read a 3D single-component image; clear errors name ``path`` and its ``role`` in the figure."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {role} file does not exist; every case shown needs its image, its "
                                f"ground truth and a prediction in every prediction folder")
    return read_volume(path, role, FigureError)


def _label_array(image: sitk.Image, path: Path, role: str) -> np.ndarray:
    """The label map as an integer array in display orientation (z, y, x)."""
    return as_integer_labels(sitk.GetArrayFromImage(sitk.DICOMOrient(image, DISPLAY_ORIENTATION)), path, role,
                             FigureError)


def _require_same_grid(image: sitk.Image, image_path: Path, other: sitk.Image, other_path: Path, role: str) -> None:
    problems = geometry_mismatches(image, other)
    if problems:
        raise FigureError(other_path, f"the {role} does not lie on the voxel grid of the image {image_path.name} "
                                      f"(image vs {role}: {'; '.join(problems)}); predictions must come from "
                                      f"nnUNetv2_predict run on these images, labels from the same dataset")


@dataclass(frozen=True)
class _CaseSlices:
    """Everything drawn in one row; arrays are ``(H, W)`` axial slices in display orientation."""

    case: str
    index: int  # axial slice index in display orientation (inferior -> superior)
    n_slices: int
    has_foreground: bool
    gray: np.ndarray  # uint8, windowed image
    reference: np.ndarray  # int labels
    predictions: tuple[np.ndarray, ...]  # int labels, in column order


def _load_case(case: str, images_dir: Path, labels_dir: Path, prediction_dirs: Sequence[Path],
               channel_suffix: str, file_ending: str) -> _CaseSlices:
    image_path = images_dir / f"{case}{channel_suffix}{file_ending}"
    label_path = labels_dir / f"{case}{file_ending}"
    image = _read_volume(image_path, "image")
    label = _read_volume(label_path, "ground-truth label")
    _require_same_grid(image, image_path, label, label_path, "ground-truth label")

    reference = _label_array(label, label_path, "ground-truth label")
    counts = (reference > 0).sum(axis=(1, 2))
    has_foreground = bool(counts.max() > 0)
    # argmax takes the lowest index on ties; a case without foreground shows its middle slice
    index = int(np.argmax(counts)) if has_foreground else reference.shape[0] // 2

    volume = sitk.GetArrayFromImage(sitk.DICOMOrient(image, DISPLAY_ORIENTATION)).astype(np.float32, copy=False)
    window = display_window(volume, volume != 0)
    gray = to_uint8(volume[index], window)

    predictions = []
    for folder in prediction_dirs:
        path = folder / f"{case}{file_ending}"
        prediction = _read_volume(path, "prediction")
        _require_same_grid(image, image_path, prediction, path, "prediction")
        predictions.append(_label_array(prediction, path, "prediction")[index])
    return _CaseSlices(case, index, reference.shape[0], has_foreground, gray, reference[index], tuple(predictions))


def _choose_cases(labels_dir: Path, prediction_dirs: Mapping[str, Path], cases: Sequence[str] | None,
                  max_cases: int, file_ending: str) -> list[str]:
    if cases is not None:
        chosen = [cases] if isinstance(cases, str) else list(dict.fromkeys(str(c) for c in cases))
        if not chosen:
            raise ValueError("cases is empty: name at least one case, or pass None to take the first ones")
        return chosen
    if max_cases < 1:
        raise ValueError(f"max_cases must be at least 1, got {max_cases}")
    available = set(label_files(labels_dir, file_ending))
    for folder in prediction_dirs.values():
        available &= set(label_files(folder, file_ending))
    if not available:
        folders = ", ".join(f"{name!r}: {folder}" for name, folder in prediction_dirs.items())
        raise FigureError(labels_dir, f"no case has a ground-truth file *{file_ending} here and a prediction in "
                                      f"every prediction folder ({folders or 'none given'}); check the folders "
                                      f"and the file ending")
    return sorted(available)[:max_cases]


def _label_names(labels_dir: Path) -> dict[int, str]:
    """``{value: name}`` from the dataset.json beside the label folder, for the legend; empty when there is none.

    A missing or region-based label map only costs the legend its names, so it is not an error here (the
    evaluation checks dataset.json properly).
    """
    path = labels_dir.parent / "dataset.json"
    if not path.is_file():
        return {}
    try:
        labels = read_json(path).get("labels", {})
    except (PathError, AttributeError):
        return {}
    return {int(v): str(k) for k, v in labels.items()
            if isinstance(v, int) and not isinstance(v, bool) and v > 0}


# ---------------------------------------------------------------------------------------------- drawing
def _enlarge(rgb: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: float, font) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _legend_lines(draw: ImageDraw.ImageDraw, items: Sequence[tuple[int, str]], width: int, font
                  ) -> list[list[tuple[int, str, int]]]:
    """Legend entries ``(value, text, x)`` wrapped into lines no wider than ``width``."""
    lines: list[list[tuple[int, str, int]]] = []
    x = width  # forces a first line
    for value, text in items:
        item_w = _SWATCH + 4 + math.ceil(draw.textlength(text, font=font)) + 3 * _MARGIN
        if x + item_w > width and (not lines or lines[-1]):
            lines.append([])
            x = _MARGIN
        lines[-1].append((value, text, x))
        x += item_w
    return lines


def prediction_figure(images_dir: str | os.PathLike, labels_dir: str | os.PathLike,
                      predictions: Mapping[str, str | os.PathLike], out_png: str | os.PathLike, *,
                      cases: Sequence[str] | None = None, max_cases: int = 3, channel_suffix: str = "_0000",
                      file_ending: str = ".nii.gz", title: str = "") -> Path:
    """Draw a grid of target test slices with ground truth and predictions; write it to ``out_png`` atomically.

    Args:
        images_dir: the target test images (``imagesTs``), files ``{case}{channel_suffix}{file_ending}``.
        labels_dir: their ground truth (``labelsTs``), files ``{case}{file_ending}``.
        predictions: ``{column header: prediction folder}`` (``nnUNetv2_predict -o`` folders, files
            ``{case}{file_ending}``), one column each, in the mapping's order.
        out_png: where the PNG goes; parent folders are created.
        cases: case ids to show, one row each, in this order. ``None``: the first ``max_cases`` ids (sorted) that
            have a ground-truth file and a file in every prediction folder.
        max_cases: how many cases ``cases=None`` takes (>= 1).
        channel_suffix: the image channel to show (nnU-Net's ``_XXXX`` suffix).
        file_ending: nnU-Net's file ending of the dataset.
        title: optional line drawn above the grid.
    Returns:
        ``out_png`` as a Path.
    Raises:
        FileNotFoundError: a folder or a case's image, ground truth or prediction file does not exist.
        FigureError (a ValueError): a file cannot be read, is not a 3D scalar volume, lies on another voxel grid than
            its image (size, spacing, origin or direction), a label map holds non-integer values, or no case has
            all its files. Nothing is written then.
    """
    images_dir, labels_dir, out_png = Path(images_dir), Path(labels_dir), Path(out_png)
    for folder, what in ((images_dir, "image"), (labels_dir, "ground-truth")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: the {what} folder does not exist")
    prediction_dirs = {str(name): Path(folder) for name, folder in predictions.items()}
    for name, folder in prediction_dirs.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: the prediction folder of column {name!r} does not exist")

    chosen = _choose_cases(labels_dir, prediction_dirs, cases, max_cases, file_ending)
    rows = [_load_case(case, images_dir, labels_dir, list(prediction_dirs.values()), channel_suffix, file_ending)
            for case in tqdm(chosen, desc="figure: reading cases", unit="case", disable=None)]

    factors = [max(1, math.ceil(PANEL_MIN_SIDE / max(1, min(r.gray.shape)))) for r in rows]
    cell_h = max(r.gray.shape[0] * f for r, f in zip(rows, factors))
    cell_w = max(r.gray.shape[1] * f for r, f in zip(rows, factors))
    headers = ["image", "ground truth", *prediction_dirs]
    n_cols = len(headers)

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_text = [(r.case, f"slice {r.index}/{r.n_slices - 1}" + ("" if r.has_foreground else " (no GT)"))
                for r in rows]
    label_w = 2 * _MARGIN + math.ceil(max(measure.textlength(t, font=font) for pair in row_text for t in pair))
    width = label_w + GAP + n_cols * (cell_w + GAP)
    if title:
        width = max(width, 2 * _MARGIN + math.ceil(measure.textlength(title, font=font)))

    names = _label_names(labels_dir)
    shown = sorted(set().union(*(np.unique(a[a > 0]).tolist() for r in rows for a in (r.reference, *r.predictions))))
    legend = _legend_lines(measure, [(v, f"{v} {names[v]}" if v in names else str(v)) for v in shown], width, font)

    top = (TITLE_HEIGHT if title else 0) + HEADER_HEIGHT
    row_stride = cell_h + FOOTER_HEIGHT + GAP
    height = top + len(rows) * row_stride + len(legend) * LEGEND_LINE_HEIGHT
    canvas = Image.new("RGB", (width, height), "black")
    draw = ImageDraw.Draw(canvas)

    if title:
        draw.text((_MARGIN, 4), title, fill="white", font=font)
    for c, header in enumerate(headers):
        x = label_w + GAP + c * (cell_w + GAP)
        draw.text((x + 2, top - HEADER_HEIGHT + 3), _fit(draw, header, cell_w - 4, font), fill="white", font=font)

    for r, (row, factor, (case_text, slice_text)) in enumerate(zip(rows, factors, row_text)):
        y = top + r * row_stride
        draw.text((_MARGIN, y + 2), case_text, fill="white", font=font)
        draw.text((_MARGIN, y + 16), slice_text, fill=(180, 180, 180), font=font)
        panels = [np.repeat(row.gray[..., None], 3, axis=-1), overlay_rgb(row.gray, row.reference),
                  *(overlay_rgb(row.gray, p) for p in row.predictions)]
        for c, panel in enumerate(panels):
            x = label_w + GAP + c * (cell_w + GAP)
            canvas.paste(Image.fromarray(_enlarge(panel, factor)), (x, y))
        for c, prediction in enumerate(row.predictions, start=2):
            dice = _slice_dice(row.reference, prediction)
            text = "slice Dice n/a (no foreground)" if dice is None else f"slice Dice {dice:.3f}"
            x = label_w + GAP + c * (cell_w + GAP)
            draw.text((x + 2, y + cell_h + 2), _fit(draw, text, cell_w - 4, font), fill="white", font=font)

    legend_top = top + len(rows) * row_stride
    for i, line in enumerate(legend):
        y = legend_top + i * LEGEND_LINE_HEIGHT + (LEGEND_LINE_HEIGHT - _SWATCH) // 2
        for value, text, x in line:
            draw.rectangle((x, y, x + _SWATCH - 1, y + _SWATCH - 1), fill=label_colour(value))
            draw.text((x + _SWATCH + 4, y - 1), text, fill="white", font=font)

    with atomic_path(out_png) as tmp:
        canvas.save(tmp, format="PNG")
    return out_png
