"""Qualitative prediction figure: layout, slice choice, identical columns for identical labels, display
orientation, file checks, and the label overlay helper."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_glua.evaluation import figures as fig
from nnunet_glua.evaluation.figures import (
    FigureError,
    label_colour,
    overlay_rgb,
    prediction_figure,
)
from nnunet_glua.style.preview import display_window, to_uint8

SHAPE = (6, 16, 20)  # numpy (z, y, x)
BEST_SLICE = 4  # the slice with the most ground-truth foreground


def make_label() -> np.ndarray:
    """Label 1 on slices 1-3 (small), labels 1 and 2 on slice 4 (largest), nothing elsewhere."""
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[1:4, 5:9, 6:10] = 1
    label[BEST_SLICE, 2:8, 3:9] = 1
    label[BEST_SLICE, 9:14, 10:17] = 2
    return label


def make_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 30.0, SHAPE).astype(np.float32)
    image[:, :, :2] = 0.0  # outside the body, excluded from the display window
    return image


def write(array: np.ndarray, path: Path, direction=None) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.0))
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def make_dataset(root: Path, cases=("case_a", "case_b"), direction=None, to_array=lambda a: a):
    """imagesTs / labelsTs / pred_same (= ground truth) / pred_wrong (labels swapped) under ``root``."""
    for i, case in enumerate(cases):
        label = make_label()
        wrong = label.copy()
        wrong[label == 1], wrong[label == 2] = 2, 1
        write(to_array(make_image(i)), root / "imagesTs" / f"{case}_0000.nii.gz", direction)
        write(to_array(label), root / "labelsTs" / f"{case}.nii.gz", direction)
        write(to_array(label), root / "pred_same" / f"{case}.nii.gz", direction)
        write(to_array(wrong), root / "pred_wrong" / f"{case}.nii.gz", direction)
    return root


def figure(root: Path, name: str = "fig.png", columns=("same", "wrong"), **kwargs) -> np.ndarray:
    preds = {c: root / f"pred_{c}" for c in columns}
    out = prediction_figure(root / "imagesTs", root / "labelsTs", preds, root / "out" / name, **kwargs)
    assert out == root / "out" / name
    return np.asarray(Image.open(out).convert("RGB"))


FACTOR = math.ceil(fig.PANEL_MIN_SIDE / min(SHAPE[1:]))
CELL_H, CELL_W = SHAPE[1] * FACTOR, SHAPE[2] * FACTOR


def panel(png: np.ndarray, row: int, col: int, n_cols: int, top: int = fig.HEADER_HEIGHT) -> np.ndarray:
    """Panel (row, col) of a figure, located from the right edge so the row-label width need not be known."""
    x = png.shape[1] - (n_cols - col) * (CELL_W + fig.GAP)
    y = top + row * (CELL_H + fig.FOOTER_HEIGHT + fig.GAP)
    return png[y:y + CELL_H, x:x + CELL_W]


def enlarge(mask: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(mask, FACTOR, axis=0), FACTOR, axis=1)


def coloured(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] != rgb[..., 1]) | (rgb[..., 1] != rgb[..., 2])


def test_figure_layout_and_columns(tmp_path):
    root = make_dataset(tmp_path)
    png = figure(root, title="MR -> CT")
    one_column = figure(root, "one_column.png", columns=("same",), title="MR -> CT")
    one_row = figure(root, "one_row.png", cases=["case_b"], title="MR -> CT")
    no_title = figure(root, "no_title.png")

    # each prediction column adds one panel width, each case one panel height (plus gaps and the Dice line)
    assert png.shape[1] - one_column.shape[1] == CELL_W + fig.GAP
    assert png.shape[0] - one_row.shape[0] == CELL_H + fig.FOOTER_HEIGHT + fig.GAP
    assert png.shape[0] - no_title.shape[0] == fig.TITLE_HEIGHT
    assert CELL_H >= fig.PANEL_MIN_SIDE and CELL_W >= fig.PANEL_MIN_SIDE

    top = fig.TITLE_HEIGHT + fig.HEADER_HEIGHT
    label = enlarge(make_label()[BEST_SLICE])
    for row in range(2):
        image, gt, same, wrong = (panel(png, row, c, 4, top) for c in range(4))
        assert not coloured(image).any()
        # ground truth: label colours exactly where the label is, the image elsewhere
        np.testing.assert_array_equal(coloured(gt), label > 0)
        np.testing.assert_array_equal(gt[label == 0], image[label == 0])
        for value in (1, 2):
            expected = np.round(0.5 * image[label == value].astype(float) + 0.5 * np.array(label_colour(value)))
            np.testing.assert_array_equal(gt[label == value], expected.astype(np.uint8))
        # a prediction identical to the ground truth draws identical pixels; a wrong one does not
        np.testing.assert_array_equal(same, gt)
        assert not np.array_equal(wrong, gt)
        np.testing.assert_array_equal(coloured(wrong), label > 0)
    # rows show their own case: the two synthetic images differ
    assert not np.array_equal(panel(png, 0, 0, 4, top), panel(png, 1, 0, 4, top))


def test_chosen_slice_has_most_foreground(tmp_path):
    root = make_dataset(tmp_path, cases=("case_a",))
    png = figure(root, columns=("same",))
    gt = panel(png, 0, 1, 3)
    np.testing.assert_array_equal(coloured(gt), enlarge(make_label()[BEST_SLICE] > 0))
    # the image panel is that slice, windowed on the volume's nonzero voxels
    image = make_image(0)
    expected = to_uint8(image[BEST_SLICE], display_window(image, image != 0))
    np.testing.assert_array_equal(panel(png, 0, 0, 3)[..., 0], enlarge(expected))


def test_display_orientation_does_not_depend_on_storage_orientation(tmp_path):
    lps = make_dataset(tmp_path / "lps", cases=("case_a",))
    # the same anatomy stored as RAS: x and y reversed in the array and in the direction cosines
    ras = make_dataset(tmp_path / "ras", cases=("case_a",), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1),
                       to_array=lambda a: a[:, ::-1, ::-1].copy())
    np.testing.assert_array_equal(figure(lps), figure(ras))


def test_default_cases_need_every_prediction(tmp_path):
    root = make_dataset(tmp_path, cases=("c1", "c2", "c3", "c4"))
    (root / "pred_wrong" / "c2.nii.gz").unlink()
    two = figure(root, "two.png", max_cases=2)
    three = figure(root, "three.png", max_cases=3)  # c1, c3, c4
    four = figure(root, "four.png", max_cases=4)  # only three cases have every prediction
    row = CELL_H + fig.FOOTER_HEIGHT + fig.GAP
    assert three.shape[0] - two.shape[0] == row
    assert four.shape == three.shape
    # c3 is the second row: its image differs from c2's (seed 1) and equals the one written for c3 (seed 2)
    image = make_image(2)
    expected = to_uint8(image[BEST_SLICE], display_window(image, image != 0))
    np.testing.assert_array_equal(panel(three, 1, 0, 4)[..., 0], enlarge(expected))


def test_size_mismatch_names_the_file(tmp_path):
    root = make_dataset(tmp_path, cases=("case_a",))
    bad = root / "pred_wrong" / "case_a.nii.gz"
    write(np.zeros((6, 16, 19), dtype=np.uint8), bad)
    with pytest.raises(ValueError, match=r"pred_wrong/case_a\.nii\.gz.*size"):
        figure(root)
    assert not (root / "out").exists() or not any((root / "out").iterdir())  # nothing written, not even partly

    write(np.zeros((6, 15, 20), dtype=np.uint8), root / "labelsTs" / "case_a.nii.gz")
    with pytest.raises(FigureError, match=r"labelsTs/case_a\.nii\.gz.*size"):
        figure(root, cases=["case_a"])


def test_missing_prediction_file_names_the_file(tmp_path):
    root = make_dataset(tmp_path, cases=("case_a", "case_b"))
    (root / "pred_same" / "case_b.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"pred_same/case_b\.nii\.gz"):
        figure(root, cases=["case_a", "case_b"])
    with pytest.raises(FileNotFoundError, match=r"pred_missing"):
        figure(root, columns=("same", "missing"))
    (root / "pred_same" / "case_a.nii.gz").unlink()
    with pytest.raises(FigureError, match="no case"):
        figure(root)


def test_overlay_rgb_colours_only_labelled_pixels():
    gray = np.array([[0, 50, 100], [150, 200, 255]], dtype=np.uint8)
    labels = np.array([[0, 1, 0], [2, 0, 13]])
    rgb = overlay_rgb(gray, labels, alpha=0.5)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    background = labels == 0
    np.testing.assert_array_equal(rgb[background], np.repeat(gray[background][:, None], 3, axis=1))
    for (i, j) in zip(*np.nonzero(labels)):
        expected = np.round(0.5 * gray[i, j] + 0.5 * np.array(label_colour(labels[i, j])))
        np.testing.assert_array_equal(rgb[i, j], expected)
        assert len(set(rgb[i, j].tolist())) > 1  # a colour, not a gray
    # distinct labels get distinct colours, fully opaque colours are the palette itself
    assert len({label_colour(v) for v in range(1, 30)}) == 29
    np.testing.assert_array_equal(overlay_rgb(gray, labels, alpha=1.0)[0, 1], label_colour(1))
    np.testing.assert_array_equal(overlay_rgb(gray, labels > 0, alpha=0.0), np.repeat(gray[..., None], 3, -1))
    with pytest.raises(ValueError, match="shape"):
        overlay_rgb(gray, labels[:, :2])
    with pytest.raises(ValueError, match="uint8"):
        overlay_rgb(gray.astype(float), labels)


def test_slice_dice():
    ref = np.array([[1, 1, 0, 2]])
    assert fig._slice_dice(ref, ref) == 1.0
    assert fig._slice_dice(ref, np.zeros_like(ref)) == 0.0
    # label 1: 2*1/(2+2); label 2: 0 (predicted as 1); label 3 (false positive only): 0
    assert fig._slice_dice(ref, np.array([[1, 3, 0, 1]])) == pytest.approx((2 / 4 + 0 + 0) / 3)
    assert fig._slice_dice(np.zeros((2, 2), int), np.zeros((2, 2), int)) is None
