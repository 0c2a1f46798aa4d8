"""glua_predict_scans: new raw scans -> canonical + harmonised -> prediction -> back in each scan's own geometry.

The nnU-Net step is replaced by a fake predictor that thresholds the harmonised image, so a test can say exactly
where the label must land: on the bright structure of the scan as stored, voxel for voxel, whatever its
orientation, spacing or file format. One test runs nnU-Net's own predictor on a tiny untrained network whose
output is fixed by hand, through the plugin's trainer lookup.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import IntensitySettings
from nnunet_glua.conversion.orientation import orientation_code
from nnunet_glua.inference import predict_scans as ps
from nnunet_glua.inference.errors import PredictionError
from nnunet_glua.inference.output_layout import WORK_FOLDER_NAME
from nnunet_glua.inference.scan_inputs import discover_inputs, read_scan
from nnunet_glua.inference.trained_model import find_trained_model

DATASET_ID = 986
DATASET_NAME = f"Dataset{DATASET_ID:03d}_PredictScans"
MODEL = "GLUATrainer__nnUNetPlans__3d_fullres"
TRAINED_FOLDS = (0, 1)
BRIGHT, BODY = 2500.0, 400.0
#: harmonised intensity separating the bright structure (mapped near 1000) from the rest of the body
HARMONISED_THRESHOLD = 600.0


# --- fixtures -----------------------------------------------------------------------------------------------------

def glua_dataset_json(name: str) -> dict:
    """dataset.json of a converted CT -> MR adaptation dataset (the keys the converters write)."""
    return {
        "name": name,
        "channel_names": {"0": "zscore"},
        "labels": {"background": 0, "bright": 1},
        "numTraining": 5,
        "file_ending": ".nii.gz",
        "glua": {
            "format_version": 1,
            "direction": "CT2MR",
            "source_modality": "CT",
            "target_modality": "MR",
            "role": "adaptation",
            "unlabelled_target_folder": "imagesTargetTr",
            "target_test_images_folder": "imagesTs",
            "target_test_labels_folder": "labelsTs",
            "canonical_orientation": "LPS",
            "intensity": {**IntensitySettings().to_dict(), "body_mask": "text", "clipping": "text"},
        },
    }


@pytest.fixture(scope="module")
def model_folder(session_root: Path) -> Path:
    """A model folder with the files predict_scans reads; the fake predictors never load the checkpoints."""
    folder = session_root / "nnUNet_results" / DATASET_NAME / MODEL
    folder.mkdir(parents=True, exist_ok=True)
    dataset_json = glua_dataset_json(DATASET_NAME)
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    (folder / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {}, "2d": {}}}))
    for fold in TRAINED_FOLDS:
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"weights")
    (folder / "fold_4").mkdir(exist_ok=True)  # a fold whose training has not finished: no checkpoint_final.pth
    (folder / "fold_4" / "checkpoint_latest.pth").write_bytes(b"weights")
    return folder


def _direction(columns: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Row-major direction matrix whose column i is the patient (LPS) direction of image axis i."""
    return tuple(float(v) for v in np.array(columns, dtype=float).T.ravel())


def make_scan(size_xyz: tuple[int, int, int], spacing: tuple[float, float, float], direction: tuple[float, ...],
              origin: tuple[float, float, float], bright_offset: tuple[int, int, int], seed: int = 0,
              pixel_type: int = sitk.sitkFloat32) -> tuple[sitk.Image, np.ndarray]:
    """An MR-like scan: dark noisy background, an ellipsoidal body, one bright box.

    The box's first voxel is ``bright_offset`` (i, j, k) voxels from the centre, so it sits off-centre and any
    flipped or swapped axis moves it.

    Returns the image and the bright box as a boolean array in SimpleITK's numpy order (z, y, x).
    """
    rng = np.random.default_rng(seed)
    shape = size_xyz[::-1]
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    body = (z / 1.15) ** 2 + (y / 0.95) ** 2 + (x / 0.9) ** 2 < 1
    bright = np.zeros(shape, bool)
    i, j, k = (c // 2 + o for c, o in zip(size_xyz, bright_offset))
    bright[k:k + 2, j:j + 4, i:i + 3] = True
    assert (bright <= body).all()
    array = np.abs(rng.normal(0, 5, shape))
    array[body] = BODY + rng.normal(0, 20, int(body.sum()))
    array[bright] = BRIGHT + rng.normal(0, 20, int(bright.sum()))
    image = sitk.Cast(sitk.GetImageFromArray(array.astype(np.float32)), pixel_type)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    return image, bright


# scans stored the way real exports come: flipped (RAS NIfTI), axes permuted (IRP), oblique
RAS = _direction([(-1, 0, 0), (0, -1, 0), (0, 0, 1)])
IRP = _direction([(0, 0, -1), (-1, 0, 0), (0, 1, 0)])
_c, _s = math.cos(math.radians(12)), math.sin(math.radians(12))
OBLIQUE_RAS = _direction([(-_c, -_s, 0), (_s, -_c, 0), (0, 0, 1)])


@pytest.fixture
def scans(tmp_path: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Three scans in different files, orientations and anisotropic spacings: case id -> (file, bright mask)."""
    folder = tmp_path / "scans"
    folder.mkdir()
    specs = {
        "ras_case": ((20, 16, 10), (0.7, 0.9, 2.5), RAS, (12.5, -30.25, 101.0), (2, -3, 1), ".nii.gz"),
        "irp_case": ((10, 18, 14), (2.0, 0.8, 1.2), IRP, (-40.0, 7.5, 3.125), (-3, 0, 1), ".nrrd"),
        "oblique_case": ((16, 14, 9), (1.1, 1.3, 3.0), OBLIQUE_RAS, (5.0, 5.0, -60.0), (1, -3, -2), ".mha"),
    }
    out = {}
    for seed, (case, (size, spacing, direction, origin, corner, suffix)) in enumerate(specs.items()):
        image, bright = make_scan(size, spacing, direction, origin, corner, seed)
        path = folder / f"{case}{suffix}"
        sitk.WriteImage(image, str(path))
        out[case] = (path, bright)
    assert orientation_code(sitk.ReadImage(str(out["ras_case"][0]))) == "RAS"
    assert orientation_code(sitk.ReadImage(str(out["irp_case"][0]))) == "IRP"
    return out


class ThresholdPredictor:
    """Fake nnU-Net: labels the bright structure of each harmonised input, on the input's grid.

    Records what it saw, so tests can check it got canonical, harmonised images and which cases it predicted.
    """

    def __init__(self, fail_after: int | None = None):
        self.calls: list[list[str]] = []
        self.seen: dict[str, dict] = {}
        self.fail_after = fail_after

    def __call__(self, input_folder: Path, output_folder: Path, case_ids: Sequence[str]) -> None:
        self.calls.append(list(case_ids))
        for index, case in enumerate(case_ids):
            if self.fail_after is not None and index >= self.fail_after:
                raise RuntimeError("simulated crash in the middle of the nnU-Net run")
            image = sitk.ReadImage(str(input_folder / f"{case}_0000.nii.gz"))
            array = sitk.GetArrayFromImage(image)
            self.seen[case] = {"orientation": orientation_code(image), "min": float(array.min()),
                               "max": float(array.max()), "spacing": image.GetSpacing()}
            label = sitk.GetImageFromArray((array > HARMONISED_THRESHOLD).astype(np.uint8))
            label.CopyInformation(image)
            sitk.WriteImage(label, str(output_folder / f"{case}.nii.gz"))


def run(inputs: Sequence[Path], output: Path, predictor: ThresholdPredictor, **kwargs) -> list[Path]:
    return ps.predict_scans(DATASET_ID, inputs, output, predict_fn=predictor, num_processes=1, **kwargs)


def assert_on_original_grid(output: Path, original: sitk.Image, expected: np.ndarray) -> None:
    result = sitk.ReadImage(str(output))
    assert result.GetPixelID() == sitk.sitkUInt8
    assert result.GetSize() == original.GetSize()
    np.testing.assert_allclose(result.GetSpacing(), original.GetSpacing(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.GetOrigin(), original.GetOrigin(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(result.GetDirection(), original.GetDirection(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), expected.astype(np.uint8))


# --- the transform chain round trip -------------------------------------------------------------------------------

def test_labels_land_on_the_bright_structure_in_each_scans_original_geometry(model_folder, scans, tmp_path):
    predictor = ThresholdPredictor()
    out = tmp_path / "out"
    outputs = run([scans["ras_case"][0].parent], out, predictor)

    # a folder expands to its scan files, sorted by name
    assert outputs == [out / "irp_case.nii.gz", out / "oblique_case.nii.gz", out / "ras_case.nii.gz"]
    assert predictor.calls == [["irp_case", "oblique_case", "ras_case"]]  # one prediction run for all scans
    for case, (path, bright) in scans.items():
        # the network saw a canonical (LPS), harmonised image: body in [1, 1000], outside exactly 0
        assert predictor.seen[case]["orientation"] == "LPS"
        assert predictor.seen[case]["min"] == 0.0 and predictor.seen[case]["max"] <= 1000.0
        assert_on_original_grid(out / f"{case}.nii.gz", sitk.ReadImage(str(path)), bright)

    record = json.loads((out / "predictions.json").read_text())
    assert record["folds"] == list(TRAINED_FOLDS) and record["modality"] == "MR"
    ras = record["cases"]["ras_case"]
    assert ras["input"] == str(scans["ras_case"][0].resolve())
    assert ras["reorientation"]["original_orientation"] == "RAS" and ras["reorientation"]["changed"]
    assert ras["reorientation"]["axes_flipped"] == [True, True, False]
    assert record["cases"]["irp_case"]["reorientation"]["axis_permutation"] != [0, 1, 2]
    assert ras["intensity"]["modality"] == "MR" and ras["intensity"]["clip_high"] > BODY
    assert ras["model_folder"] == str(model_folder.resolve()) and ras["folds"] == list(TRAINED_FOLDS)
    assert ras["voxels_per_label"] == {"bright": int(scans["ras_case"][1].sum())}
    # the intermediate folder is gone after a successful run
    assert not (out / WORK_FOLDER_NAME).exists()


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, reverse_names: bool = True) -> None:
    """Write a 3D image as one DICOM file per slice (int16), named so that name order is NOT slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    d = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    depth = image.GetDepth()
    for k in range(depth):
        slice_ = image[:, :, k]
        for tag, value in (("0020|000e", series_uid), ("0008|0060", "MR"), ("0010|0020", "PATIENT"),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
                           ("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           ("0020|0013", str(k + 1)), ("0018|0050", str(image.GetSpacing()[2])),
                           ("0008|0018", f"{series_uid}.{k + 1}")):
            slice_.SetMetaData(tag, value)
        name = depth - 1 - k if reverse_names else k
        writer.SetFileName(str(folder / f"IM{name:04d}.dcm"))
        writer.Execute(slice_)


def test_dicom_series_folder_is_read_by_position_and_predicted_in_its_geometry(model_folder, tmp_path):
    image, bright = make_scan((18, 16, 8), (0.8, 0.8, 3.0), RAS, (20.0, 15.0, -42.0), (2, -3, 1), seed=7,
                              pixel_type=sitk.sitkInt16)
    series = tmp_path / "patient_07"
    write_dicom_series(image, series, "1.2.826.0.1.3680043.2.1125.1")

    [scan] = discover_inputs([series])
    assert scan.case_id == "patient_07" and scan.is_dicom and len(scan.dicom_files) == 8
    read = read_scan(scan)
    # slices come back in position order (file names run the other way), on the original grid
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(read.GetDirection(), image.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-4)

    out = tmp_path / "out"
    run([series], out, ThresholdPredictor())
    assert_on_original_grid(out / "patient_07.nii.gz", read, bright)
    entry = json.loads((out / "predictions.json").read_text())["cases"]["patient_07"]
    assert entry["input_kind"] == "dicom_series" and entry["dicom_files"] == 8


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    image, _ = make_scan((12, 12, 6), (1.0, 1.0, 2.0), RAS, (0.0, 0.0, 0.0), (0, 0, 0), pixel_type=sitk.sitkInt16)
    series = tmp_path / "gappy"
    write_dicom_series(image, series, "1.2.3.4.7", reverse_names=False)
    (series / "IM0003.dcm").unlink()
    [scan] = discover_inputs([series])
    # stacked at an average spacing, every slice after the gap would be misplaced: refuse instead
    with pytest.raises(ConversionError, match="not evenly spaced.*IM0002.dcm -> IM0004.dcm: 4 mm"):
        read_scan(scan)


def test_a_folder_with_several_dicom_series_is_refused(tmp_path):
    image, _ = make_scan((12, 12, 6), (1.0, 1.0, 2.0), RAS, (0.0, 0.0, 0.0), (0, 0, 0), pixel_type=sitk.sitkInt16)
    folder = tmp_path / "mixed"
    write_dicom_series(image, folder / "a", "1.2.3.4.1")
    write_dicom_series(image, folder / "b", "1.2.3.4.2")
    for sub in ("a", "b"):
        for f in (folder / sub).iterdir():
            f.rename(folder / f"{sub}_{f.name}")
    with pytest.raises(ConversionError, match="holds 2 DICOM series") as err:
        discover_inputs([folder])
    assert err.value.path == str(folder)


def test_input_discovery_expands_folders_and_names_cases(tmp_path):
    image, _ = make_scan((12, 12, 6), (1.0, 1.0, 2.0), RAS, (0.0, 0.0, 0.0), (0, 0, 0))
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("b_scan.nii.gz", "a_scan.mha", "c.scan.nrrd"):
        sitk.WriteImage(image, str(folder / name))
    (folder / "notes.txt").write_text("not a scan")
    sitk.WriteImage(image, str(folder / ".partial-1234-d_scan.nii.gz"))  # an interrupted copy: not a scan
    (folder / "empty_sub").mkdir()
    write_dicom_series(image, folder / "series_x", "1.2.3.9")
    single = tmp_path / "other" / "single.nii"
    single.parent.mkdir()
    sitk.WriteImage(image, str(single))

    scans = discover_inputs([single, folder])
    assert [(s.case_id, s.kind) for s in scans] == [
        ("single", "file"), ("a_scan", "file"), ("b_scan", "file"), ("c.scan", "file"), ("series_x", "dicom_series"),
    ]
    with pytest.raises(ConversionError, match="same case id 'b_scan'"):
        sitk.WriteImage(image, str(tmp_path / "other" / "b_scan.nrrd"))
        discover_inputs([folder, tmp_path / "other" / "b_scan.nrrd"])
    with pytest.raises(ConversionError, match="is given twice"):
        discover_inputs([single, single])
    with pytest.raises(ConversionError, match="does not exist"):
        discover_inputs([tmp_path / "missing.nii.gz"])
    with pytest.raises(ConversionError, match="unsupported file type"):
        discover_inputs([folder / "notes.txt"])
    with pytest.raises(ConversionError, match="single DICOM file"):
        discover_inputs([next((folder / "series_x").iterdir())])
    with pytest.raises(ConversionError, match="holds no NIfTI/NRRD/MetaImage file and no DICOM series"):
        discover_inputs([folder / "empty_sub"])


@pytest.mark.parametrize("kind, message", [
    ("2d", "is a 2D image"),
    ("one_slice", "is a 2D image"),
    ("4d", "is 4D"),
    ("vector", "2 components per voxel"),
])
def test_inputs_that_are_not_single_channel_3d_volumes_are_refused_before_any_work(model_folder, tmp_path, kind,
                                                                                  message):
    good, _ = make_scan((12, 12, 6), (1.0, 1.0, 2.0), RAS, (0.0, 0.0, 0.0), (0, 0, 0))
    bad = {
        "2d": lambda: good[:, :, 3],
        "one_slice": lambda: good[:, :, 3:4],
        "4d": lambda: sitk.JoinSeries([good, good]),
        "vector": lambda: sitk.Compose(good, good),
    }[kind]()
    folder = tmp_path / "in"
    folder.mkdir()
    sitk.WriteImage(good, str(folder / "good.nii.gz"))
    sitk.WriteImage(bad, str(folder / "bad.nii.gz"))
    predictor = ThresholdPredictor()
    with pytest.raises(ConversionError, match=message) as err:
        run([folder], tmp_path / "out", predictor)
    assert err.value.path == str(folder / "bad.nii.gz")
    assert predictor.calls == [] and not (tmp_path / "out" / "good.nii.gz").exists()


# --- model selection errors ---------------------------------------------------------------------------------------

def test_model_errors_name_what_exists(model_folder, scans, tmp_path):
    inputs = [scans["ras_case"][0]]
    with pytest.raises(PredictionError, match="unknown dataset"):
        ps.predict_scans(989, inputs, tmp_path / "o", predict_fn=ThresholdPredictor())
    with pytest.raises(PredictionError, match=f"Trained models of this dataset: {MODEL}"):
        ps.predict_scans(DATASET_ID, inputs, tmp_path / "o", trainer="nnUNetTrainer", predict_fn=ThresholdPredictor())
    with pytest.raises(PredictionError, match=r"fold\(s\) 4 have no checkpoint_final.pth. Trained folds "
                                                 r"\(with checkpoint_final.pth\): 0, 1"):
        ps.predict_scans(DATASET_ID, inputs, tmp_path / "o", folds=[0, 4], predict_fn=ThresholdPredictor())
    # fold 4 has only checkpoint_latest.pth: that checkpoint selects it
    model = find_trained_model(DATASET_ID, folds=None, checkpoint="checkpoint_latest.pth")
    assert model.folds == (4,)
    assert find_trained_model(str(DATASET_ID), folds=["1", 0]).folds == (1, 0)
    with pytest.raises(PredictionError, match="no trained model .*__3d_lowres"):
        find_trained_model(DATASET_ID, configuration="3d_lowres")
    assert not (tmp_path / "o").exists()


# --- resuming -----------------------------------------------------------------------------------------------------

def test_existing_outputs_are_skipped_and_overwrite_redoes_them(model_folder, scans, tmp_path):
    inputs = [scans["ras_case"][0], scans["irp_case"][0]]
    out = tmp_path / "out"
    first = ThresholdPredictor()
    run(inputs, out, first)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}

    again = ThresholdPredictor()
    outputs = run(inputs + [scans["oblique_case"][0]], out, again)
    assert again.calls == [["oblique_case"]]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz") if p.name in stamps} == stamps
    assert [p.name for p in outputs] == ["ras_case.nii.gz", "irp_case.nii.gz", "oblique_case.nii.gz"]
    cases = json.loads((out / "predictions.json").read_text())["cases"]
    assert sorted(cases) == ["irp_case", "oblique_case", "ras_case"]  # earlier records are kept

    redo = ThresholdPredictor()
    run(inputs, out, redo, overwrite=True)
    assert redo.calls == [["ras_case", "irp_case"]]


def test_an_interrupted_run_resumes_from_its_intermediate_predictions(model_folder, scans, tmp_path):
    inputs = [scans["ras_case"][0], scans["irp_case"][0]]
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(inputs, out, ThresholdPredictor(fail_after=1))
    assert not list(out.glob("*.nii.gz"))  # nothing final was written
    assert (out / WORK_FOLDER_NAME / "predictions" / "ras_case.nii.gz").is_file()

    resumed = ThresholdPredictor()
    run(inputs, out, resumed)
    assert resumed.calls == [["irp_case"]]  # ras_case's canonical prediction was reused
    for case in ("ras_case", "irp_case"):
        path, bright = scans[case]
        assert_on_original_grid(out / f"{case}.nii.gz", sitk.ReadImage(str(path)), bright)
    assert json.loads((out / "predictions.json").read_text())["cases"]["ras_case"]["reused_intermediate_prediction"]
    assert not (out / WORK_FOLDER_NAME).exists()


def test_intermediate_predictions_of_a_changed_scan_or_model_are_not_reused(model_folder, scans, tmp_path):
    inputs = [scans["ras_case"][0], scans["irp_case"][0]]
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        run(inputs, out, ThresholdPredictor(fail_after=1))
    # the scan is replaced by one whose bright box sits elsewhere: the old prediction must not be reused
    image, moved = make_scan((20, 16, 10), (0.7, 0.9, 2.5), RAS, (12.5, -30.25, 101.0), (-4, 1, -1), seed=3)
    sitk.WriteImage(image, str(scans["ras_case"][0]))
    resumed = ThresholdPredictor()
    run(inputs, out, resumed, keep_intermediate=True)
    assert resumed.calls == [["ras_case", "irp_case"]]
    assert_on_original_grid(out / "ras_case.nii.gz", image, moved)
    work = out / WORK_FOLDER_NAME
    assert sorted(p.name for p in (work / "images").iterdir()) == ["irp_case_0000.nii.gz", "ras_case_0000.nii.gz"]

    # a different ensemble (other folds) makes every intermediate prediction stale
    (out / "ras_case.nii.gz").unlink()
    other_folds = ThresholdPredictor()
    run(inputs, out, other_folds, folds=[0])
    assert other_folds.calls == [["ras_case"]]


def test_output_folder_must_not_be_an_input_folder(model_folder, scans):
    folder = scans["ras_case"][0].parent
    with pytest.raises(PredictionError, match="also an input folder"):
        run([folder], folder, ThresholdPredictor())


# --- command line -------------------------------------------------------------------------------------------------

def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ps.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("-d", "-i", "-o", "-c", "-tr", "-p", "-f", "-chk", "-device", "--modality", "--disable_tta",
                   "-step_size", "-npp", "-nps", "--overwrite", "--keep-intermediate"):
        assert option in text


def test_cli_reports_a_missing_fold_and_exits_1(model_folder, scans, tmp_path, capsys):
    code = ps.main(["-d", str(DATASET_ID), "-i", str(scans["ras_case"][0]), "-o", str(tmp_path / "o"), "-f", "2",
                    "-device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert "fold(s) 2 have no checkpoint_final.pth" in err and "Trained folds (with checkpoint_final.pth): 0, 1" in err


@pytest.mark.parametrize("variable, value", [("nnUNet_npp", "three"), ("nnUNet_nps", "2.5")])
def test_a_bad_process_count_variable_is_reported_by_name_and_the_options_override_it(
        model_folder, scans, tmp_path, capsys, monkeypatch, variable, value):
    # nnUNetv2_predict's own variables for the -npp / -nps defaults: a typo there must not end in a traceback
    monkeypatch.setenv(variable, value)
    out = tmp_path / "o"
    code = ps.main(["-d", str(DATASET_ID), "-i", str(scans["ras_case"][0]), "-o", str(out), "-device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"the environment variable {variable} must be a whole number of processes" in err
    assert repr(value) in err and "Traceback" not in err
    assert not out.exists()

    predictor = ThresholdPredictor()
    run([scans["ras_case"][0]], out, predictor, num_processes_preprocessing=1, num_processes_export=1)
    assert predictor.calls == [["ras_case"]]


# --- a real (untrained, tiny) nnU-Net model ------------------------------------------------------------------------

REAL_DATASET = "Dataset987_PredictScansReal"


def _tiny_plans() -> dict:
    """nnU-Net plans of a 3-stage U-Net with 4..16 features at 1.5 x 1 x 1 mm (what the planner writes, shrunk)."""
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": REAL_DATASET, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.5, 1.0, 1.0], "original_median_shape_after_transp": [16, 19, 18],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [16, 20, 20], "median_image_size_in_voxels": [16.0, 19.0, 18.0],
            "spacing": [1.5, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [True], "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
            "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
            "architecture": arch, "batch_dice": False,
        }},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 1000.0, "mean": 300.0, "median": 250.0, "min": 1.0, "percentile_00_5": 1.0,
            "percentile_99_5": 1000.0, "std": 200.0}},
    }


def test_real_nnunet_model_predicts_through_the_plugin_trainer_in_the_original_geometry(session_root, scans, tmp_path,
                                                                                        capsys):
    """End to end through nnU-Net's predictor (GLUATrainer found via nnUNet_extTrainer, 2-fold ensemble, mirroring).

    The network's output layer is set to a constant logit for label 1, so nnU-Net predicts label 1 on exactly the
    bounding box of the harmonised body (its crop-to-nonzero region) and 0 outside: that box, re-oriented to the
    scan, is where the label must land in the scan's original geometry.
    """
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = session_root / "nnUNet_results" / REAL_DATASET / MODEL
    folder.mkdir(parents=True)
    plans = _tiny_plans()
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(glua_dataset_json(REAL_DATASET)))
    manager = PlansManager(plans)
    for fold in (0, 1):
        torch.manual_seed(fold)
        network = nnUNetTrainer.build_network_architecture(manager, manager.get_configuration("3d_fullres"), 1, 2,
                                                           enable_deep_supervision=False)
        weights = network.state_dict()
        for key in weights:
            if key.startswith("decoder.seg_layers."):
                weights[key] = torch.zeros_like(weights[key])
                if key.endswith("bias"):
                    weights[key][1] = 5.0
        (folder / f"fold_{fold}").mkdir()
        torch.save({"network_weights": weights, "trainer_name": "GLUATrainer",
                    "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
                   folder / f"fold_{fold}" / "checkpoint_final.pth")

    path, _ = scans["irp_case"]
    out = tmp_path / "out"
    code = ps.main(["-d", "987", "-i", str(path), "-o", str(out), "-device", "cpu", "-npp", "0", "-nps", "0",
                    "-np", "1", "--keep-intermediate"])
    assert code == 0, capsys.readouterr().err

    harmonised = sitk.ReadImage(str(out / WORK_FOLDER_NAME / "images" / "irp_case_0000.nii.gz"))
    body = sitk.GetArrayFromImage(harmonised) > 0
    box = np.zeros(body.shape, np.uint8)
    box[tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(body))] = 1
    box_image = sitk.GetImageFromArray(box)
    box_image.CopyInformation(harmonised)
    expected = sitk.GetArrayFromImage(sitk.DICOMOrient(box_image, "IRP"))
    assert 0 < expected.sum() < expected.size  # the body does not fill the field of view: the box is informative
    assert_on_original_grid(out / "irp_case.nii.gz", sitk.ReadImage(str(path)), expected)
    record = json.loads((out / "predictions.json").read_text())
    assert record["folds"] == [0, 1] and record["device"] == "cpu" and record["test_time_mirroring"]
