"""Self-training through nnU-Net's trainer API on a tiny planned dataset (CPU): the pseudo-labelled target cases are
preprocessed with the source plans, sampled by nnU-Net's loader, masked by the ignore label, kept away from the
discriminator's source side, named in the checkpoint; sets that could leak test data or mix runs are refused."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scipy import ndimage
from test_pseudo_labels import FakeModel, ThresholdPredictor, one_hot
from tiny_dataset import (TARGET_CASES, TEST_CASES, plan_and_preprocess, weights_with_noisy_test_labels,
                          write_tiny_uda_dataset)

from nnunet_glua.data.pseudo_label_filter import PseudoLabelFilter
from nnunet_glua.data.pseudo_labelled_target import (PSEUDO_LABELS_ENV, find_pseudo_label_set,
                                                     pseudo_labelled_samples)
from nnunet_glua.data.pseudo_labels import SET_FILE, PseudoLabelError, make_pseudo_labels
from nnunet_glua.data.uda_dataset_info import load_uda_info

DATASET_ID = 977
IGNORE = 3  # tiny dataset: background, organ1, organ2 -> ignore label 3


@pytest.fixture(scope="module")
def planned_dataset(session_root):
    raw = Path(os.environ["nnUNet_raw"])
    folder = write_tiny_uda_dataset(raw, DATASET_ID, name="SelfTrainTiny")
    plan_and_preprocess(DATASET_ID, configurations=("3d_fullres",))
    return folder


class UnsureAtEdgesPredictor(ThresholdPredictor):
    """The threshold 'model', unsure (0.6) on the background voxels next to a structure: those become ignored."""

    def __call__(self, fold, input_files, output_folder: Path) -> None:
        super().__call__(fold, input_files, output_folder)
        for case in input_files:
            path = output_folder / f"{case}.npz"
            probs = np.load(path)["probabilities"]
            labels = probs.argmax(0)
            edge = ndimage.binary_dilation(labels > 0) & (labels == 0)
            probs = np.where(edge[None], one_hot(labels, 0.6), probs).astype(np.float32)
            np.savez_compressed(path, probabilities=probs)


def _make_set(name: str, min_confidence: float) -> Path:
    return make_pseudo_labels(DATASET_ID, FakeModel(folds=(0,)), name=name, predict=UnsureAtEdgesPredictor(),
                              settings=PseudoLabelFilter(min_confidence=min_confidence, volume_factor=10),
                              log=lambda _: None)


@pytest.fixture(scope="module")
def pseudo_set(planned_dataset):
    return _make_set("round1", 0.8)


def _make(trainer_cls, dataset_folder: Path, fold: int = 0, **attrs):
    pre = Path(os.environ["nnUNet_preprocessed"]) / dataset_folder.name
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((pre / "dataset.json").read_text())
    trainer = trainer_cls(copy.deepcopy(plans), "3d_fullres", fold, dataset_json, torch.device("cpu"))
    for k, v in attrs.items():
        setattr(trainer, k, v)
    return trainer


def _tiny(base):
    class Tiny(base):
        schedule_num_epochs = 1
        schedule_iterations_per_epoch = 4
        schedule_val_iterations_per_epoch = 1
        align_rampup_epochs = 0
    return Tiny


def _record_batches(trainer) -> list[dict]:
    """Wrap ``trainer.train_step`` to keep each batch's keys and full-resolution labels."""
    seen, step = [], trainer.train_step

    def recording(batch):
        target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
        seen.append({"keys": list(batch["keys"]), "labels": target[:, 0].clone()})
        return step(batch)

    trainer.train_step = recording
    return seen


def test_source_only_self_training_samples_pseudo_labelled_cases_and_ignores_untrusted_voxels(
        planned_dataset, pseudo_set, monkeypatch):
    from nnunet_glua.training.variants import SourceOnlyTrainer_SelfTrain_Short

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.delenv(PSEUDO_LABELS_ENV, raising=False)  # the dataset's only set is taken
    trainer = _make(_tiny(SourceOnlyTrainer_SelfTrain_Short), planned_dataset)
    seen = _record_batches(trainer)
    trainer.run_training()

    kept = json.loads((pseudo_set / SET_FILE).read_text())
    kept = sorted(c for c, r in kept["cases"].items() if r["status"] == "kept")
    keys = [k for b in seen for k in b["keys"]]
    pseudo = pseudo_labelled_samples(keys)
    assert 0 < pseudo.mean() < 1, keys  # half the samples, drawn at random: both kinds in 4 steps
    assert {k[: -len("__pseudo")] for k in np.asarray(keys)[pseudo]} <= set(kept)
    labels = torch.cat([b["labels"] for b in seen])
    assert (labels[torch.from_numpy(pseudo)] == IGNORE).any()  # untrusted voxels reach the loss as ignored
    assert not (labels[torch.from_numpy(~pseudo)] == IGNORE).any()
    loss = trainer.loss.loss if hasattr(trainer.loss, "loss") else trainer.loss
    assert loss.ignore_label == IGNORE and not trainer.label_manager.has_ignore_label  # outputs stay nnU-Net's

    # the cases nnU-Net's loader read: preprocessed with the source plans, pseudo-labels with the ignore label,
    # foreground locations of the dataset's labels only
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    folder = Path(os.environ["nnUNet_preprocessed"]) / planned_dataset.name / "glua_pseudo_nnUNetPlans_3d_fullres" / \
        "round1"
    data = nnUNetDatasetBlosc2(str(folder))
    assert sorted(data.identifiers) == kept
    _, seg, _, properties = data.load_case(kept[0])
    assert set(np.unique(np.asarray(seg))) <= {-1, 0, 1, 2, IGNORE} and (np.asarray(seg) == IGNORE).any()
    assert set(properties["class_locations"]) == {1, 2}

    ckpt = torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    entry = ckpt["glua_self_training"]
    assert entry["set"] == "round1" and entry["cases"] == kept and entry["pseudo_label_fraction"] == 0.5
    log = Path(trainer.log_file).read_text()
    assert "pseudo-label set round1" in log and entry["set_sha256"][:12] in log


def test_glua_self_training_keeps_real_target_samples_off_the_discriminator_source_side(
        planned_dataset, pseudo_set, monkeypatch):
    from nnunet_glua.training.variants import GLUATrainer_SelfTrain_Short

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv(PSEUDO_LABELS_ENV, "round1")
    # feature alignment and shift on, no translator to train: the discriminator's source side is every randomly
    # placed source sample, so a pseudo-labelled target sample there would be visible
    trainer = _make(_tiny(GLUATrainer_SelfTrain_Short), planned_dataset, fold=1, use_translation=False)
    seen = _record_batches(trainer)
    source_sides, prepare = [], trainer.prepare_training

    def prepare_and_record():  # after the components exist: record the discriminator's source side of each step
        prepare()
        update = trainer.components.update_discriminator

        def recording(source, target, source_valid, *args, **kwargs):
            source_sides.append(source_valid.flatten(1).any(1).clone())
            return update(source, target, source_valid, *args, **kwargs)
        trainer.components.update_discriminator = recording

    trainer.prepare_training = prepare_and_record
    trainer.run_training()
    assert len(source_sides) == len(seen) == 4
    pseudo_seen = False
    for batch, side in zip(seen, source_sides):
        pseudo = pseudo_labelled_samples(batch["keys"][: len(side)])
        pseudo_seen |= bool(pseudo.any())
        assert not side[torch.from_numpy(pseudo)].any(), batch["keys"]
    assert pseudo_seen, "no pseudo-labelled sample among the randomly placed ones: the check saw nothing"
    log = trainer.logger.local_logger.my_fantastic_logging
    assert np.isfinite(log["glua_align_loss"][0]) and np.isfinite(log["glua_seg_loss"][0])


def test_resume_refuses_another_pseudo_label_set(planned_dataset, pseudo_set, monkeypatch):
    from nnunet_glua.training.variants import SourceOnlyTrainer_SelfTrain_Short

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv(PSEUDO_LABELS_ENV, "round1")
    first = _make(_tiny(SourceOnlyTrainer_SelfTrain_Short), planned_dataset, fold=2)
    first.run_training()
    other = _make_set("round2", 0.5)
    try:
        monkeypatch.setenv(PSEUDO_LABELS_ENV, "round2")
        resumed = _make(_tiny(SourceOnlyTrainer_SelfTrain_Short), planned_dataset, fold=2)
        resumed.load_checkpoint(str(Path(first.output_folder) / "checkpoint_final.pth"))
        with pytest.raises(RuntimeError, match="round1"):
            resumed.on_train_start()
    finally:
        import shutil
        shutil.rmtree(other)


def test_sets_that_could_leak_or_are_unfinished_are_refused(planned_dataset, pseudo_set, monkeypatch):
    info = load_uda_info(DATASET_ID)
    assert find_pseudo_label_set(info, "round1", IGNORE).cases  # the good set
    with pytest.raises(PseudoLabelError, match="ignore label"):
        find_pseudo_label_set(info, "round1", 5)
    set_file = pseudo_set / SET_FILE
    original = set_file.read_text()
    try:
        state = json.loads(original)
        state["cases"][TEST_CASES[0]] = dict(state["cases"][TARGET_CASES[1]])
        set_file.write_text(json.dumps(state))
        with pytest.raises(PseudoLabelError, match=TEST_CASES[0]):
            find_pseudo_label_set(info, "round1", IGNORE)
        state = json.loads(original)
        state["complete"] = False
        set_file.write_text(json.dumps(state))
        with pytest.raises(PseudoLabelError, match="incomplete"):
            find_pseudo_label_set(info, "round1", IGNORE)
    finally:
        set_file.write_text(original)
    second = pseudo_set.parent / "copy"
    second.mkdir()
    (second / SET_FILE).write_text(original)
    try:
        monkeypatch.delenv(PSEUDO_LABELS_ENV, raising=False)
        with pytest.raises(PseudoLabelError, match=PSEUDO_LABELS_ENV):
            find_pseudo_label_set(info, None, IGNORE)
    finally:
        (second / SET_FILE).unlink()
        second.rmdir()


def test_target_test_labels_never_reach_self_training(planned_dataset, pseudo_set, monkeypatch):
    """Two seeded self-training runs, the second with the target test labels replaced by noise: identical weights."""
    from nnunet_glua.training.variants import SourceOnlyTrainer_SelfTrain_Short

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("GLUA_SEED", "7")
    monkeypatch.setenv(PSEUDO_LABELS_ENV, "round1")

    def train():
        trainer = _make(_tiny(SourceOnlyTrainer_SelfTrain_Short), planned_dataset, fold=3)
        trainer.run_training()
        return trainer.network.state_dict()

    weights = weights_with_noisy_test_labels(planned_dataset, train)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_steered_shift_takes_the_random_shifts_place_with_the_pseudo_labels_estimates(
        planned_dataset, pseudo_set, monkeypatch):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    from nnunet_glua.data.pseudo_labelled_target import structure_means
    from nnunet_glua.training.structure_shift import SteeredStructureShiftTransform, StructureShiftTransform
    from nnunet_glua.training.variants import GLUATrainer_SelfTrainSteered_Short

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv(PSEUDO_LABELS_ENV, "round1")
    trainer = _make(_tiny(GLUATrainer_SelfTrainSteered_Short), planned_dataset, fold=4, use_translation=False)
    trainer.on_train_start()
    try:
        steps = trainer.dataloader_train.data_loader.transforms.transforms
        steered = [t for t in steps if isinstance(t, SteeredStructureShiftTransform)]
        assert len(steered) == 1 and not any(isinstance(t, StructureShiftTransform) for t in steps)
        # the estimates: per label, the median over the pseudo-labelled cases of the label's mean intensity
        folder = Path(os.environ["nnUNet_preprocessed"]) / planned_dataset.name / \
            "glua_pseudo_nnUNetPlans_3d_fullres" / "round1"
        cases = sorted(nnUNetDatasetBlosc2(str(folder)).identifiers)
        expected = []
        for label in (1, 2):
            per_case = []
            for case in cases:
                data, seg, _, _ = nnUNetDatasetBlosc2(str(folder)).load_case(case)
                per_case.append(np.asarray(data[0])[np.asarray(seg[0]) == label].mean())
            expected.append(np.median(per_case))
        assert steered[0].targets[1:3].numpy() == pytest.approx(expected, rel=1e-5)
        assert structure_means(folder, cases, 3)[1:] == pytest.approx(expected, rel=1e-5)
        assert "steered structure shift" in Path(trainer.log_file).read_text()
        # the hook lives only while the loaders are built
        assert trainer.get_training_transforms.__func__ is type(trainer).get_training_transforms.__func__
    finally:
        trainer.on_train_end()
