"""Pseudo-label sets for self-training: the filter's steps and the set command (target training images only)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from tiny_dataset import TARGET_CASES, TEST_CASES, write_tiny_uda_dataset

from nnunet_glua.data.pseudo_label_filter import PseudoLabelFilter, filter_pseudo_label
from nnunet_glua.data.pseudo_labels import SET_FILE, PseudoLabelError, main, make_pseudo_labels

LABELS = {1: "organ1", 2: "organ2"}
NO_VOLUME_CHECK = {}


def one_hot(labels: np.ndarray, confidence: float, num_classes: int = 3) -> np.ndarray:
    """Probabilities with ``confidence`` on ``labels`` and the rest spread over the other classes."""
    probs = np.full((num_classes, *labels.shape), (1 - confidence) / (num_classes - 1), np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), confidence, axis=0)
    return probs


def blobs() -> np.ndarray:
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    labels[7:11, 7:11, 7:11] = 2
    return labels


def test_confident_agreeing_voxels_are_kept_exactly():
    labels = blobs()
    pseudo, report = filter_pseudo_label("c", [one_hot(labels, 0.95)] * 3, LABELS, 3, 0.001, NO_VOLUME_CHECK)
    np.testing.assert_array_equal(pseudo, labels)
    assert report.status == "kept" and report.ignored_fraction == 0
    assert [s.kept_voxels for s in report.structures] == [64, 64]
    assert report.structures[0].mean_confidence == pytest.approx(0.95)


def test_low_confidence_and_fold_disagreement_become_the_ignore_label():
    labels = blobs()
    probs = one_hot(labels, 0.95)
    unsure = one_hot(labels, 0.5)
    probs[:, 2:4] = unsure[:, 2:4]  # a slab the ensemble is unsure of
    other = labels.copy()
    other[9:11, 7:11, 7:11] = 1  # one fold calls part of organ2 organ1
    pseudo, report = filter_pseudo_label("c", [probs, probs, one_hot(other, 0.6)], LABELS, 3, 0.001,
                                         NO_VOLUME_CHECK, PseudoLabelFilter(min_confidence=0.6))
    assert (pseudo[2:4] == 3).all()
    assert (pseudo[9:11, 7:11, 7:11] == 3).all()
    assert (pseudo[7:9, 7:11, 7:11] == 2).all()
    organ1, organ2 = report.structures
    assert organ1.ignored_low_confidence == 2 * 4 * 4 and organ2.ignored_disagreement == 2 * 4 * 4
    lenient = PseudoLabelFilter(min_confidence=0.6, min_agreement=0.6)
    pseudo, _ = filter_pseudo_label("c", [probs, probs, one_hot(other, 0.6)], LABELS, 3, 0.001, NO_VOLUME_CHECK,
                                    lenient)
    assert (pseudo[9:11, 7:11, 7:11] == 2).all()


def test_a_structure_never_confident_keeps_its_most_confident_core_on_request_and_is_reported_ignored_otherwise():
    labels = blobs()
    probs = one_hot(labels, 0.95)
    organ2 = labels == 2
    # organ2's confidence ramps from 0.5 to 0.7 along z: never above the global 0.8
    ramp = one_hot(labels, 0.5)
    for i, z in enumerate(range(7, 11)):
        ramp_z = one_hot(labels, 0.5 + 0.2 * i / 3)
        ramp[:, z] = ramp_z[:, z]
    probs[:, organ2] = ramp[:, organ2]
    pseudo, report = filter_pseudo_label("c", [probs], LABELS, 3, 0.001, NO_VOLUME_CHECK)
    assert (pseudo[organ2] == 3).all()
    assert report.structures[1].status == "ignored" and "none of its 64" in report.structures[1].reason
    assert report.structures[0].status == "kept" and report.status == "kept"

    pseudo, report = filter_pseudo_label("c", [probs], LABELS, 3, 0.001, NO_VOLUME_CHECK,
                                         PseudoLabelFilter(keep_most_confident=0.5))
    assert (pseudo == 2).sum() == 32  # the confident half of organ2: its slices z = 9, 10
    assert (pseudo[9:11][organ2[9:11]] == 2).all() and (pseudo[7:9][organ2[7:9]] == 3).all()
    assert report.structures[1].status == "kept"
    assert 0.5 + 0.2 / 3 < report.structures[1].confidence_threshold <= 0.5 + 0.2 * 2 / 3  # between z = 8 and 9
    assert report.structures[0].confidence_threshold == pytest.approx(0.8)  # a confident structure keeps 0.8
    np.testing.assert_array_equal(pseudo[labels == 1], 1)


def test_small_components_are_ignored_and_large_ones_kept():
    labels = blobs()
    labels[0, 11, 0] = 1  # a one-voxel island of organ1
    pseudo, report = filter_pseudo_label("c", [one_hot(labels, 0.95)], LABELS, 3, 0.001, NO_VOLUME_CHECK)
    assert pseudo[0, 11, 0] == 3 and (pseudo[2:6, 2:6, 2:6] == 1).all()
    assert report.structures[0].components == 2 and report.structures[0].ignored_small_components == 1
    pseudo, _ = filter_pseudo_label("c", [one_hot(labels, 0.95)], LABELS, 3, 0.001, NO_VOLUME_CHECK,
                                    PseudoLabelFilter(min_component_fraction=0.0))
    assert pseudo[0, 11, 0] == 1


def test_an_implausible_structure_is_dropped_and_too_many_drop_the_case():
    labels = blobs()  # 64 voxels of 1 ml each per structure
    ranges = {1: (60.0, 70.0), 2: (600.0, 700.0)}  # organ2 is 64 ml against a source range of 600-700 ml
    pseudo, report = filter_pseudo_label("c", [one_hot(labels, 0.95)], LABELS, 3, 1.0, ranges)
    organ1, organ2 = report.structures
    assert organ1.status == "kept" and organ2.status == "dropped" and "outside the plausible" in organ2.reason
    assert (pseudo[labels == 2] == 3).all() and (pseudo[labels == 1] == 1).all()
    assert report.status == "kept"  # one of two structures dropped: not more than half
    _, report = filter_pseudo_label("c", [one_hot(labels, 0.95)], LABELS, 3, 1.0, ranges,
                                    PseudoLabelFilter(max_dropped_fraction=0.4))
    assert report.status == "dropped" and "organ2" in report.reason
    missing = labels.copy()
    missing[missing == 1] = 0  # a structure every source case has, absent from the prediction
    _, report = filter_pseudo_label("c", [one_hot(missing, 0.95)], LABELS, 3, 1.0, {1: (60.0, 70.0)})
    assert report.structures[0].status == "dropped"


def test_filter_settings_are_checked():
    with pytest.raises(ValueError, match="min_confidence"):
        PseudoLabelFilter(min_confidence=1.5)
    with pytest.raises(ValueError, match="volume_factor"):
        PseudoLabelFilter(volume_factor=0.5)


class FakeModel:
    """What make_pseudo_labels needs of a trained model; its folds 'predict' by thresholding the target image."""

    trainer, plans, configuration = "GLUATrainer_Short", "nnUNetPlans", "3d_fullres"

    def __init__(self, folds=(0, 1)):
        self.folds = tuple(folds)

    def key(self) -> dict:
        return {"folder": "/models/fake", "folds": [str(f) for f in self.folds]}


class ThresholdPredictor:
    """A FoldPredictFn: organ1 (dark) and organ2 (bright) of the tiny target images, confident; records calls."""

    def __init__(self):
        self.calls: list[tuple[object, list[str]]] = []

    def __call__(self, fold, input_files, output_folder: Path) -> None:
        self.calls.append((fold, sorted(input_files)))
        for case, path in input_files.items():
            assert "imagesTargetTr" in str(path), path
            image = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            labels = np.zeros(image.shape, np.uint8)
            labels[(image > 60) & (image < 200)] = 1
            labels[image > 400] = 2
            np.savez_compressed(output_folder / f"{case}.npz", probabilities=one_hot(labels, 0.9))


@pytest.fixture
def tiny_raw(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return write_tiny_uda_dataset(tmp_path / "raw", 951)


def test_the_set_labels_every_target_training_image_in_its_geometry_and_never_a_test_image(tiny_raw):
    predictor = ThresholdPredictor()
    folder = make_pseudo_labels(951, FakeModel(), predict=predictor, settings=PseudoLabelFilter(volume_factor=10),
                                log=lambda _: None)
    assert folder == tiny_raw / "pseudolabels" / "GLUATrainer_Short__nnUNetPlans__3d_fullres"
    assert [c for _, cases in predictor.calls for c in cases] == sorted(TARGET_CASES) * 2
    # tgt_000 is a source-contrast image: the threshold 'model' finds implausible structures there, the case is dropped
    written = sorted(p.name for p in (folder / "labels").iterdir())
    assert written == [f"{c}.nii.gz" for c in TARGET_CASES[1:]]
    for case in TARGET_CASES[1:]:
        image = sitk.ReadImage(str(tiny_raw / "imagesTargetTr" / f"{case}_0000.nii.gz"))
        label = sitk.ReadImage(str(folder / "labels" / f"{case}.nii.gz"))
        assert label.GetSize() == image.GetSize() and label.GetSpacing() == image.GetSpacing()
        assert set(np.unique(sitk.GetArrayFromImage(label))) <= {0, 1, 2, 3}
    state = json.loads((folder / SET_FILE).read_text())
    assert state["complete"] and state["ignore_label"] == 3
    assert state["labels"] == {"background": 0, "organ1": 1, "organ2": 2, "ignore": 3}
    assert set(state["cases"]) == set(TARGET_CASES)
    assert state["cases"][TARGET_CASES[0]]["status"] == "dropped"
    assert [s["status"] for s in state["cases"][TARGET_CASES[1]]["structures"]] == ["kept", "kept"]
    assert state["source_volume_ranges_ml"]["1"][0] > 0
    report = (folder / "report.md").read_text()
    assert all(c in report for c in TARGET_CASES) and "organ2" in report
    assert not (folder / "fold_0").exists()  # probabilities removed once the set is complete


def test_the_set_resumes_where_it_stopped_and_refuses_other_settings(tiny_raw):
    predictor = ThresholdPredictor()
    model = FakeModel(folds=(0,))
    settings = PseudoLabelFilter(volume_factor=10)
    folder = make_pseudo_labels(951, model, predict=predictor, settings=settings, keep_probabilities=True,
                                log=lambda _: None)
    state = json.loads((folder / SET_FILE).read_text())
    del state["cases"][TARGET_CASES[1]]  # as if killed after two cases
    state["complete"] = False
    (folder / SET_FILE).write_text(json.dumps(state))
    (folder / "fold_0" / f"{TARGET_CASES[1]}.npz").write_bytes(b"PK\x03\x04 cut off")  # a half-written prediction
    predictor.calls.clear()
    make_pseudo_labels(951, model, predict=predictor, settings=settings, log=lambda _: None)
    assert predictor.calls == [(0, [TARGET_CASES[1]])]
    assert set(json.loads((folder / SET_FILE).read_text())["cases"]) == set(TARGET_CASES)
    with pytest.raises(PseudoLabelError, match="filter"):
        make_pseudo_labels(951, model, predict=predictor, settings=PseudoLabelFilter(min_confidence=0.5),
                           log=lambda _: None)
    make_pseudo_labels(951, model, predict=predictor, settings=PseudoLabelFilter(min_confidence=0.5),
                       overwrite=True, log=lambda _: None)


def test_a_test_image_among_the_target_training_images_is_refused(tiny_raw):
    (tiny_raw / "imagesTargetTr" / f"{TEST_CASES[0]}_0000.nii.gz").write_bytes(
        (tiny_raw / "imagesTs" / f"{TEST_CASES[0]}_0000.nii.gz").read_bytes())
    predictor = ThresholdPredictor()
    with pytest.raises(Exception, match=TEST_CASES[0]):
        make_pseudo_labels(951, FakeModel(), predict=predictor, log=lambda _: None)
    assert predictor.calls == []
    assert not (tiny_raw / "pseudolabels").exists()


def test_the_command_names_a_missing_model(tiny_raw, capsys):
    assert main(["-d", "951", "-c", "3d_fullres", "-tr", "GLUATrainer", "-f", "0", "-device", "cpu"]) == 1
    assert "no trained model GLUATrainer" in capsys.readouterr().err


def test_the_picture_shows_kept_cases_with_their_ignored_voxels(tiny_raw, tmp_path):
    from PIL import Image

    from nnunet_glua.evaluation.figures import FigureError
    from nnunet_glua.evaluation.pseudo_label_figure import pseudo_label_figure

    folder = make_pseudo_labels(951, FakeModel(), predict=ThresholdPredictor(), log=lambda _: None,
                                settings=PseudoLabelFilter(volume_factor=10))
    for path in (folder / "labels").iterdir():  # organ2 untrusted, as a low-confidence ensemble would leave it
        label = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(label)
        array[array == 2] = 3
        ignored = sitk.GetImageFromArray(array)
        ignored.CopyInformation(label)
        sitk.WriteImage(ignored, str(path))
    png = pseudo_label_figure(folder, tiny_raw / "imagesTargetTr", tmp_path / "fig" / "pseudo.png")
    picture = np.asarray(Image.open(png).convert("RGB"))
    kept = [c for c, r in json.loads((folder / SET_FILE).read_text())["cases"].items() if r["status"] == "kept"]
    assert picture.shape[0] > 160 * len(kept) and picture.shape[1] > 3 * 160
    assert (picture == (255, 0, 255)).all(-1).any()  # the ignored voxels are drawn
    state = json.loads((folder / SET_FILE).read_text())
    for report in state["cases"].values():
        report["status"] = "dropped"
    (folder / SET_FILE).write_text(json.dumps(state))
    with pytest.raises(FigureError, match="keeps no case"):
        pseudo_label_figure(folder, tiny_raw / "imagesTargetTr", tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_agreement_counts_ignored_voxels_and_dropped_cases_as_not_covered():
    from nnunet_glua.evaluation.pseudo_label_quality import count_agreement

    reference = blobs()
    pseudo = reference.copy()
    pseudo[2:4, 2:6, 2:6] = 3  # half of organ1 ignored
    pseudo[0, 0, :4] = 2  # four wrong organ2 voxels
    counts = count_agreement(pseudo, reference, LABELS)
    assert (counts[1].labelled, counts[1].correct, counts[1].reference) == (32, 32, 64)
    assert counts[1].precision == 1.0 and counts[1].coverage == 0.5
    assert (counts[2].labelled, counts[2].correct) == (68, 64) and counts[2].precision == 64 / 68
    dropped = count_agreement(None, reference, LABELS)
    assert dropped[2].coverage == 0.0 and dropped[2].precision is None


def _reference_folder(raw: Path, out: Path) -> dict[str, np.ndarray]:
    """Reference labels of two target training cases: tgt_000 is src_000's image, so src_000's label is its truth;
    tgt_001's truth is what ThresholdPredictor finds there. tgt_002 gets none."""
    truth = {TARGET_CASES[0]: sitk.ReadImage(str(raw / "labelsTr" / "src_000.nii.gz"))}
    image = sitk.ReadImage(str(raw / "imagesTargetTr" / f"{TARGET_CASES[1]}_0000.nii.gz"))
    array = sitk.GetArrayFromImage(image)
    labels = np.zeros(array.shape, np.uint8)
    labels[(array > 60) & (array < 200)] = 1
    labels[array > 400] = 2
    truth[TARGET_CASES[1]] = sitk.GetImageFromArray(labels)
    truth[TARGET_CASES[1]].CopyInformation(image)
    out.mkdir()
    for case, label in truth.items():
        sitk.WriteImage(label, str(out / f"{case}.nii.gz"))
    return {case: sitk.GetArrayFromImage(label) for case, label in truth.items()}


def test_the_filter_quality_scores_each_variant_against_reference_labels(tiny_raw, tmp_path):
    from nnunet_glua.evaluation.pseudo_label_quality import FILTER_VARIANTS
    from nnunet_glua.evaluation.pseudo_label_quality import main as quality_main

    folder = make_pseudo_labels(951, FakeModel(folds=(0,)), predict=ThresholdPredictor(), keep_probabilities=True,
                                settings=PseudoLabelFilter(volume_factor=10), log=lambda _: None)
    truth = _reference_folder(tiny_raw, tmp_path / "reference")
    assert quality_main(["-d", "951", "--set", folder.name, "--reference", str(tmp_path / "reference")]) == 0
    result = json.loads((folder / "filter_quality.json").read_text())
    assert list(result["variants"]) == list(FILTER_VARIANTS)
    assert result["scored_cases"] == TARGET_CASES[:2] and result["unscored_cases"] == [TARGET_CASES[2]]
    as_made, unchecked = result["variants"]["as made"], result["variants"]["no volume check"]
    # as made, the source-contrast case is dropped: what is kept is right, but its structures are not covered
    assert as_made["cases_kept"] == 1 and unchecked["cases_kept"] == 2
    organ1 = {case: int((t == 1).sum()) for case, t in truth.items()}
    assert as_made["structures"]["organ1"]["precision"] == 1.0
    assert as_made["structures"]["organ1"]["coverage"] == pytest.approx(organ1["tgt_001"] / sum(organ1.values()))
    # without the volume check the model's labels of that case (its background read as organ1) are kept
    assert unchecked["structures"]["organ1"]["precision"] < 0.5
    assert unchecked["ignored_fraction"] < as_made["ignored_fraction"]
    assert "| as made | 1/2 |" in (folder / "filter_quality.md").read_text()


def test_the_filter_quality_names_what_is_missing(tiny_raw, tmp_path, capsys):
    from nnunet_glua.evaluation.pseudo_label_quality import main as quality_main
    from nnunet_glua.evaluation.pseudo_label_quality import measure_filter_quality

    folder = make_pseudo_labels(951, FakeModel(folds=(0,)), predict=ThresholdPredictor(), log=lambda _: None,
                                settings=PseudoLabelFilter(volume_factor=10))
    _reference_folder(tiny_raw, tmp_path / "reference")
    with pytest.raises(PseudoLabelError, match="--keep-probabilities"):
        measure_filter_quality(951, folder.name, tmp_path / "reference", log=lambda _: None)
    with pytest.raises(PseudoLabelError, match="holds no pseudo-label set"):
        measure_filter_quality(951, "no_such_set", tmp_path / "reference", log=lambda _: None)
    kept = make_pseudo_labels(951, FakeModel(folds=(0,)), "kept", predict=ThresholdPredictor(),
                              keep_probabilities=True, settings=PseudoLabelFilter(volume_factor=10), log=lambda _: None)
    with pytest.raises(PseudoLabelError, match="tgt_000.nii.gz"):  # the test labels are no target training case
        measure_filter_quality(951, kept.name, tiny_raw / "labelsTs", log=lambda _: None)
    wrong = tmp_path / "reference" / f"{TARGET_CASES[1]}.nii.gz"
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(wrong))
    with pytest.raises(PseudoLabelError, match=f"{TARGET_CASES[1]}.nii.gz: reference label .* does not match"):
        measure_filter_quality(951, kept.name, tmp_path / "reference", log=lambda _: None)
    assert quality_main(["-d", "951", "--set", kept.name, "--reference", str(tmp_path / "reference")]) == 1
    assert "does not match" in capsys.readouterr().err and not (kept / "filter_quality.json").exists()
