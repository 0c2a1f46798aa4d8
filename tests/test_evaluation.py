"""Evaluation on the target test set: Dice and ASSD definitions, empty-structure conventions, file checks,
outputs, and the adaptation comparison table."""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from nnunet_glua.evaluation import evaluate as ev
from nnunet_glua.evaluation.metrics import (
    ClassMetrics,
    Outcome,
    average_symmetric_surface_distance,
    compute_case_metrics,
    compute_class_metrics,
    dice_coefficient,
    summarize,
    surface_mask,
)
from nnunet_glua.evaluation.report import (
    comparison,
    comparison_markdown,
    evaluation_markdown,
    gap_closed,
)

LABELS = {"background": 0, "alpha": 1, "beta": 2, "gamma": 3}
SPACING_XYZ = (0.9, 0.8, 2.5)  # SimpleITK order; numpy order is (2.5, 0.8, 0.9)


def ball(shape, center_mm, radius_mm, spacing):
    """Boolean ball of ``radius_mm`` around ``center_mm`` on a grid of ``spacing`` (all in array order)."""
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, center_mm)) <= radius_mm**2


def strict_json(text: str):
    def reject(name):
        raise AssertionError(f"JSON holds {name}")
    return json.loads(text, parse_constant=reject)


# ------------------------------------------------------------------------------------------------- metrics
def test_dice_of_overlapping_cubes_is_exact():
    a = np.zeros((12, 12, 12), bool)
    b = np.zeros_like(a)
    a[1:11, 1:11, 1:11] = True  # 1000 voxels
    b[1:11, 1:11, 3:11] = True  # 800 voxels, all inside a
    assert dice_coefficient(b, a) == pytest.approx(2 * 800 / 1800)
    m = compute_class_metrics(b, a, (1.0, 1.0, 1.0))
    assert m.outcome is Outcome.OK and m.dice == pytest.approx(2 * 800 / 1800)
    assert (m.n_prediction, m.n_reference, m.n_overlap) == (800, 1000, 800)
    # the four x-faces coincide, only the x=3 face of b is 2 voxels inside a's x=1 face
    assert 0 < m.assd_voxel < 2
    same = compute_class_metrics(a, a, (2.0, 1.0, 1.0))
    assert same.dice == 1.0 and same.assd_mm == 0.0 and same.assd_voxel == 0.0


def _reference_surface(mask: np.ndarray) -> np.ndarray:
    # independent definition: an object voxel with a 6-neighbour outside the object (or outside the array)
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask)
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def _brute_force_assd(a: np.ndarray, b: np.ndarray, spacing) -> float:
    pa = np.argwhere(_reference_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(_reference_surface(b)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return 0.5 * (d.min(axis=1).mean() + d.min(axis=0).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assd_matches_brute_force_definition(seed):
    """Random blobs, some touching the array border, anisotropic spacing: equals pairwise-distance ASSD."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(3, 14, 16, 15)), sigma=(0, 2, 2, 2))
    a, b = field[0] > 0.05, field[1] > 0.05
    assert a.any() and b.any()
    spacing = (2.5, 0.8, 1.1)
    m = compute_class_metrics(a, b, spacing)
    assert m.assd_mm == pytest.approx(_brute_force_assd(a, b, spacing), rel=1e-9)
    assert m.assd_voxel == pytest.approx(_brute_force_assd(a, b, (1, 1, 1)), rel=1e-9)
    assert np.array_equal(surface_mask(a), _reference_surface(a))


def test_assd_of_concentric_spheres_is_radius_difference_in_mm():
    for spacing in [(2.0, 0.7, 0.9), (1.5, 0.5, 0.5)]:
        shape = tuple(int(30 / s) for s in spacing)
        center = tuple(n * s / 2 for n, s in zip(shape, spacing))
        outer, inner = ball(shape, center, 10.0, spacing), ball(shape, center, 6.0, spacing)
        m = compute_class_metrics(inner, outer, spacing)
        # discretisation biases the surfaces by well under half the coarsest in-plane voxel
        assert m.assd_mm == pytest.approx(4.0, abs=0.5)
        # in voxel units the same 4 mm span between 4/coarsest and 4/finest spacing voxels
        assert 4.0 / max(spacing) - 0.5 < m.assd_voxel < 4.0 / min(spacing) + 0.5


def test_assd_of_shifted_sphere():
    """A sphere moved by k voxels along the coarse axis: each surface point's nearest distance is at most
    the shift, and on average about half of it (mean |cos θ| over a sphere is 1/2)."""
    spacing = (2.0, 1.0, 1.0)
    shape, center = (20, 36, 36), (20.0, 18.0, 18.0)
    a = ball(shape, center, 10.0, spacing)
    for k in (1, 2, 3):
        b = ball(shape, (center[0] + k * spacing[0], center[1], center[2]), 10.0, spacing)
        assd = average_symmetric_surface_distance(a, b, spacing)
        assert 0 < assd <= k * spacing[0]
        assert assd == pytest.approx(k * spacing[0] / 2, abs=0.5)


def test_spacing_scales_mm_assd_but_not_voxel_assd():
    shape, spacing = (16, 30, 30), (2.0, 0.7, 0.9)
    a = ball(shape, (15.0, 10.0, 13.0), 8.0, spacing)
    b = ball(shape, (17.0, 11.0, 13.0), 7.0, spacing)
    single = compute_class_metrics(a, b, spacing)
    double = compute_class_metrics(a, b, tuple(2 * s for s in spacing))
    assert double.assd_mm == pytest.approx(2 * single.assd_mm, rel=1e-12)
    assert double.assd_voxel == pytest.approx(single.assd_voxel, rel=1e-12)
    assert double.dice == single.dice
    # the spacing is applied per array axis: reversing its order changes the result
    assert compute_class_metrics(a, b, spacing[::-1]).assd_mm != pytest.approx(single.assd_mm)


def test_empty_structure_conventions_and_summary_has_no_nan():
    ref = np.zeros((6, 8, 8), np.uint8)
    pred = np.zeros_like(ref)
    ref[1:4, 1:5, 1:5] = 1      # alpha present, predicted well
    pred[1:4, 1:5, 2:5] = 1
    ref[4:6, 5:8, 5:8] = 2      # beta present, not predicted -> missed
    pred[0, 0, 6:8] = 3         # gamma absent, predicted -> false positive
    spacing = (2.0, 1.0, 1.0)
    case1 = compute_case_metrics(pred, ref, LABELS, spacing)
    assert set(case1) == {"alpha", "beta", "gamma"}  # background is never evaluated
    assert case1["alpha"].outcome is Outcome.OK
    assert case1["beta"] == ClassMetrics(Outcome.MISSED, 0.0, None, None, 18, 0, 0)
    assert case1["gamma"] == ClassMetrics(Outcome.FALSE_POSITIVE, 0.0, None, None, 0, 2, 0)
    empty = np.zeros_like(ref)
    case2 = compute_case_metrics(empty, empty, LABELS, spacing)
    assert all(m.outcome is Outcome.ABSENT and m.dice is None for m in case2.values())

    summary = summarize([case1, case2], LABELS)
    alpha, beta, gamma = (summary.classes[c] for c in ("alpha", "beta", "gamma"))
    assert (alpha.n_ok, alpha.n_absent, alpha.dice.n) == (1, 1, 1)
    assert alpha.dice.mean == pytest.approx(case1["alpha"].dice) and alpha.dice.std == 0.0
    assert (beta.n_missed, beta.dice.mean, beta.dice.n) == (1, 0.0, 1)
    assert beta.assd_mm.mean is None and beta.assd_mm.n == 0
    assert (gamma.n_false_positive, gamma.dice.mean) == (1, 0.0)
    # class mean of Dice over 3 classes; of ASSD only over the one class where it is defined
    assert summary.class_mean["dice"].mean == pytest.approx(case1["alpha"].dice / 3)
    assert summary.class_mean["assd_mm"].n == 1
    strict_json(json.dumps(summary.to_dict()))
    assert "(1/3 classes)" in evaluation_markdown(summary)
    with pytest.raises(ValueError, match="empty"):
        average_symmetric_surface_distance(ref == 2, pred == 2)


# ------------------------------------------------------------------------------------------------- files
def write_label(path: Path, array_zyx: np.ndarray, spacing_xyz=SPACING_XYZ, origin=(-12.0, 30.0, 5.5)) -> None:
    image = sitk.GetImageFromArray(array_zyx.astype(np.uint8))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def make_case(rng: np.random.Generator, shape=(8, 20, 18)) -> tuple[np.ndarray, np.ndarray]:
    """Reference with three box structures and a prediction that perturbs them."""
    ref = np.zeros(shape, np.uint8)
    ref[1:5, 2:9, 2:8] = 1
    ref[3:7, 10:17, 9:16] = 2
    ref[5:8, 2:6, 12:17] = 3
    pred = ref.copy()
    flips = rng.random(shape) < 0.08
    pred[flips] = rng.integers(0, 4, size=int(flips.sum()))
    return ref, pred


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(7)
    ref_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "pred"
    for case in ("ct_1003", "ct_1008", "ct_1014"):
        ref, pred = make_case(rng)
        write_label(ref_dir / f"{case}.nii.gz", ref)
        write_label(pred_dir / f"{case}.nii.gz", pred)
    return pred_dir, ref_dir


def test_dice_agrees_with_nnunet(folders):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    pred_dir, ref_dir = folders
    result = ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    assert [c.case for c in result.cases] == ["ct_1003", "ct_1008", "ct_1014"]
    for case in result.cases:
        theirs = compute_metrics(str(ref_dir / f"{case.case}.nii.gz"), str(pred_dir / f"{case.case}.nii.gz"),
                                 SimpleITKIO(), [1, 2, 3])
        for name, value in LABELS.items():
            if value:
                assert case.metrics[name].dice == pytest.approx(theirs["metrics"][value]["Dice"], abs=1e-12)
                assert case.metrics[name].n_reference == theirs["metrics"][value]["n_ref"]
        # spacing is reported in numpy (z, y, x) order
        assert case.spacing == pytest.approx(SPACING_XYZ[::-1])


def test_parallel_evaluation_equals_serial(folders):
    pred_dir, ref_dir = folders
    serial = ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    parallel = ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=2)
    assert [c.to_dict() for c in parallel.cases] == [c.to_dict() for c in serial.cases]


def test_missing_prediction_is_an_error_naming_the_cases(folders):
    pred_dir, ref_dir = folders
    (pred_dir / "ct_1008.nii.gz").unlink()
    with pytest.raises(ev.EvaluationError, match="ct_1008.nii.gz") as info:
        ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    assert "1 of 3" in str(info.value)
    subset = ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1, allow_subset=True)
    assert [c.case for c in subset.cases] == ["ct_1003", "ct_1014"]
    assert subset.metadata["missing_predictions"] == ["ct_1008"]


@pytest.mark.parametrize(
    "change, what",
    [
        (dict(spacing_xyz=(0.9, 0.8, 3.0)), "spacing"),
        (dict(origin=(-12.0, 31.0, 5.5)), "origin"),
        (dict(shape=(8, 20, 17)), "size"),
    ],
)
def test_geometry_mismatch_is_an_error_naming_the_file(folders, change, what):
    pred_dir, ref_dir = folders
    shape = change.pop("shape", (8, 20, 18))
    write_label(pred_dir / "ct_1014.nii.gz", np.zeros(shape, np.uint8), **change)
    with pytest.raises(ev.EvaluationError, match=what) as info:
        ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    assert info.value.path.endswith("ct_1014.nii.gz")


def test_float_rounding_of_geometry_is_tolerated(folders):
    pred_dir, ref_dir = folders
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_dir / "ct_1003.nii.gz")))
    write_label(pred_dir / "ct_1003.nii.gz", ref, spacing_xyz=(0.9 + 1e-6, 0.8, 2.5), origin=(-12.0, 30.0 - 1e-5, 5.5))
    result = ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    assert result.cases[0].metrics["alpha"].dice == 1.0


def test_unknown_label_value_is_an_error(folders):
    pred_dir, ref_dir = folders
    bad = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "ct_1003.nii.gz")))
    bad[0, 0, 0] = 7
    write_label(pred_dir / "ct_1003.nii.gz", bad)
    with pytest.raises(ev.EvaluationError, match=r"label values \[7\]") as info:
        ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    assert info.value.path.endswith("ct_1003.nii.gz")
    # raised inside worker processes, so it must survive pickling intact
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.path, again.problem) == (info.value.path, info.value.problem)


def raw_dataset(ref_dir: Path, raw: Path, monkeypatch) -> Path:
    """A raw dataset Dataset961_EvalToy under ``raw`` (set as nnUNet_raw) whose labelsTs is ``ref_dir`` (moved)."""
    dataset = raw / "Dataset961_EvalToy"
    (dataset / "imagesTs").mkdir(parents=True)
    ref_dir.rename(dataset / "labelsTs")
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": LABELS, "numTraining": 0, "file_ending": ".nii.gz",
        "glua": {"target_test_labels_folder": "labelsTs", "target_modality": "CT", "direction": "MR2CT"},
    }))
    monkeypatch.setenv("nnUNet_raw", str(raw))
    return dataset


def test_cli_writes_json_csv_markdown(folders, tmp_path, monkeypatch, capsys):
    pred_dir, ref_dir = folders
    dataset = raw_dataset(ref_dir, tmp_path / "raw", monkeypatch)
    out = tmp_path / "report"
    assert ev.main(["-d", "961", "-pred", str(pred_dir), "-o", str(out), "-np", "1", "--name", "GLUA"]) == 0
    printed = capsys.readouterr().out
    assert "| alpha | 1 |" in printed and "**Class mean**" in printed

    data = strict_json((out / "evaluation.json").read_text())
    assert data["metadata"]["dataset"] == "Dataset961_EvalToy"
    assert data["metadata"]["run_name"] == "GLUA"
    assert data["metadata"]["reference_folder"] == str((dataset / "labelsTs").resolve())
    assert "(z, y, x)" in data["metadata"]["spacing_convention"]
    assert len(data["cases"]) == 3 and set(data["cases"][0]["metrics"]) == {"alpha", "beta", "gamma"}
    with open(out / "evaluation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 3
    assert {r["class"] for r in rows} == {"alpha", "beta", "gamma"}
    assert (out / "evaluation.md").read_text().startswith("## GLUA — Dataset961_EvalToy")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    loaded = ev.load_evaluation(out)
    assert loaded.summary == ev.evaluate_dataset(961, pred_dir, num_processes=1).summary

    # bad input: non-zero exit status and an error that names the problem
    assert ev.main(["-d", "962", "-pred", str(pred_dir)]) == 1
    assert "Dataset962_*" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["prediction", "reference"])
def test_truncated_file_is_refused_naming_it(folders, tmp_path, monkeypatch, capsys, role):
    # ITK would read the first half and fill the rest with zeros: exit 0 and a wrong Dice
    pred_dir, ref_dir = folders
    dataset = raw_dataset(ref_dir, tmp_path / "raw", monkeypatch)
    damaged = (pred_dir if role == "prediction" else dataset / "labelsTs") / "ct_1008.nii.gz"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    with pytest.raises(ev.EvaluationError) as info:
        ev.evaluate_dataset(961, pred_dir, num_processes=1)
    assert info.value.path == str(damaged)
    assert f"{role} file is truncated" in info.value.problem
    out = tmp_path / "report"
    assert ev.main(["-d", "961", "-pred", str(pred_dir), "-o", str(out), "-np", "2"]) == 1
    assert f"{damaged}: {role} file is truncated" in capsys.readouterr().err
    assert not out.exists()


def test_non_finite_prediction_voxels_are_refused(folders):
    # ITK reads NaN voxels of a NIfTI file as 0, which would count as background
    pred_dir, ref_dir = folders
    path = pred_dir / "ct_1003.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[0, 0, :2] = np.nan
    floats = sitk.GetImageFromArray(array)
    floats.CopyInformation(image)
    sitk.WriteImage(floats, str(path), True)
    with pytest.raises(ev.EvaluationError) as info:
        ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    assert info.value.path == str(path) and "2 NaN or infinite voxels" in info.value.problem


# ------------------------------------------------------------------------------------------------- report
def _summary(dice: dict[str, float], assd: dict[str, float | None]):
    """Summary of one case per class with the given Dice and ASSD (None = missed)."""
    case = {}
    for name in dice:
        if assd[name] is None:
            case[name] = ClassMetrics(Outcome.MISSED, 0.0, None, None, 10, 0, 0)
        else:
            case[name] = ClassMetrics(Outcome.OK, dice[name], assd[name], assd[name], 10, 10, 5)
    return summarize([case], {"background": 0, "myo": 1, "lac": 2})


def test_gap_closed_table():
    results = {
        "source-only": _summary({"myo": 0.2, "lac": 0.5}, {"myo": 10.0, "lac": 4.0}),
        "GLUA": _summary({"myo": 0.6, "lac": 0.5}, {"myo": 4.0, "lac": 3.0}),
        "target-supervised": _summary({"myo": 0.8, "lac": 0.5}, {"myo": 2.0, "lac": 2.0}),
    }
    table = comparison(results)
    gap = table["gap_closed"]["GLUA"]
    assert gap["dice"]["classes"]["myo"] == pytest.approx((0.6 - 0.2) / (0.8 - 0.2))
    assert gap["dice"]["classes"]["lac"] is None  # upper == lower: undefined, not a division by zero
    assert gap["dice"]["class_mean"] == pytest.approx((0.55 - 0.35) / (0.65 - 0.35))
    assert gap["assd_mm"]["classes"]["myo"] == pytest.approx((4.0 - 10.0) / (2.0 - 10.0))
    assert set(table["gap_closed"]) == {"GLUA"}
    strict_json(json.dumps(table))

    md = comparison_markdown(results)
    lines = md.splitlines()
    gap_row = next(line for line in lines if line.startswith("| gap closed: GLUA") and "66.7 %" in line)
    assert "| n/a |" in gap_row
    assert lines.index("### Dice") < lines.index("### ASSD (mm)")
    assert "| source-only | 1 | 0.200 ± 0.000 | 0.500 ± 0.000 | 0.350 |" in md

    # without both bounds there is no gap closed, and the table says so
    assert comparison({"GLUA": results["GLUA"]})["gap_closed"] == {}
    assert "not shown" in comparison_markdown({"GLUA": results["GLUA"]})
    # with the lower bound only (the demo), each method's difference to it takes the gap's place
    no_upper = {name: results[name] for name in ("source-only", "GLUA")}
    diff = comparison(no_upper)["difference"]["GLUA"]
    assert diff["dice"]["classes"] == pytest.approx({"myo": 0.4, "lac": 0.0})
    assert diff["assd_mm"]["class_mean"] == pytest.approx(3.5 - 7.0)
    md = comparison_markdown(no_upper)
    assert "| GLUA − source-only |  | +0.400 | +0.000 | +0.200 |" in md
    assert "| GLUA − source-only |  | -6.00 | -1.00 | -3.50 |" in md
    assert "gap closed:" not in md and "not shown" not in md
    assert gap_closed(0.5, 0.4, 0.4) is None and gap_closed(0.5, None, 0.9) is None


def test_gap_closed_of_mean_needs_the_same_classes():
    results = {
        "source-only": _summary({"myo": 0.0, "lac": 0.5}, {"myo": None, "lac": 4.0}),  # myo missed
        "GLUA": _summary({"myo": 0.6, "lac": 0.6}, {"myo": 4.0, "lac": 3.0}),
        "target-supervised": _summary({"myo": 0.8, "lac": 0.7}, {"myo": 2.0, "lac": 2.0}),
    }
    gap = comparison(results)["gap_closed"]["GLUA"]
    assert gap["assd_mm"]["class_mean"] is None  # source-only's ASSD mean covers lac only
    assert gap["dice"]["class_mean"] == pytest.approx((0.6 - 0.25) / (0.75 - 0.25))
    assert "(1/2 classes)" in comparison_markdown(results)


def test_comparison_reads_evaluation_files_and_rejects_other_classes(folders, tmp_path):
    pred_dir, ref_dir = folders
    result = ev.evaluate_folder(pred_dir, ref_dir, LABELS, num_processes=1)
    ev.write_evaluation(result, tmp_path / "glua")
    table = comparison({"GLUA": tmp_path / "glua", "same": result})
    assert table["methods"]["GLUA"] == table["methods"]["same"]
    other = _summary({"myo": 0.5, "lac": 0.5}, {"myo": 1.0, "lac": 1.0})
    with pytest.raises(ValueError, match="different classes"):
        comparison({"GLUA": result, "other": other})
