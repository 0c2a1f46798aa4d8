"""Target-domain preprocessing with the source plans, the UDA dataset facts, and the unlabelled patch loader.

One tiny raw dataset is planned and preprocessed by nnU-Net once per session (see tests/tiny_dataset.py).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_dataset as tiny
from nnunet_glua.data.patch_loader import (ForegroundInUnlabelledDataError, UnlabelledPatchLoader,
                                           augmentation_settings, build_patch_transforms, make_augmenter,
                                           make_patch_loader)
from nnunet_glua.data.target_preprocessing import (MANIFEST_NAME, build_target_data, load_plans_and_configuration,
                                                   main, preprocess_target, target_folder, target_is_up_to_date,
                                                   target_root)
from nnunet_glua.data.uda_dataset_info import UDADatasetError, load_uda_info

DATASET_ID = 981
NO_GLUA_ID = 982
EMPTY_TARGET_ID = 983
PLANS = "nnUNetPlans"


def _raw_root() -> Path:
    return Path(os.environ["nnUNet_raw"])


def _pre_root() -> Path:
    return Path(os.environ["nnUNet_preprocessed"])


@pytest.fixture(scope="session")
def planned() -> Path:
    """The tiny UDA dataset, planned and preprocessed (3d_fullres and 2d) by nnU-Net; returns its raw folder."""
    raw = tiny.write_tiny_uda_dataset(_raw_root(), DATASET_ID)
    tiny.plan_and_preprocess(DATASET_ID)
    return raw


@pytest.fixture(scope="session")
def target_3d(planned) -> Path:
    """Target train data for 3d_fullres, built with a 2-process spawn pool (the production path)."""
    return preprocess_target(DATASET_ID, "3d_fullres", num_processes=2, verbose=False)


@pytest.fixture
def plans_copy(planned, request):
    """A private copy of the plans under a new identifier, so a test may change it without affecting others."""
    identifier = f"GLUATest{request.node.name.replace('_', '').replace('test', '')[:30]}Plans"
    folder = _pre_root() / planned.name
    plans = json.loads((folder / f"{PLANS}.json").read_text())
    plans["plans_name"] = identifier
    path = folder / f"{identifier}.json"
    path.write_text(json.dumps(plans, indent=2))
    yield identifier, path
    path.unlink(missing_ok=True)
    shutil.rmtree(folder / f"glua_target_{identifier}_3d_fullres", ignore_errors=True)


def _load(folder: Path, case: str):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    data, seg, _, props = nnUNetDatasetBlosc2(str(folder)).load_case(case)
    return np.asarray(data[:]), np.asarray(seg[:]), props


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------------------------
# dataset facts
# ------------------------------------------------------------------------------------------------------------------
def test_load_uda_info_reads_glua_block(planned):
    info = load_uda_info(DATASET_ID)
    assert info.dataset_name == planned.name and info.dataset_id == DATASET_ID
    assert (info.source_modality, info.target_modality, info.direction) == ("MR", "CT", "MR2CT")
    assert info.unlabelled_target_folder == planned / "imagesTargetTr"
    assert info.test_images_folder == planned / "imagesTs" and info.test_labels_folder == planned / "labelsTs"
    assert info.target_training_cases == tuple(tiny.TARGET_CASES)
    assert info.target_test_cases == tuple(tiny.TEST_CASES)
    files = info.target_image_files("train")
    assert sorted(files) == tiny.TARGET_CASES and all(len(v) == 1 and v[0].is_file() for v in files.values())


def test_load_uda_info_rejects_train_test_overlap_and_unlisted_images(planned):
    json_path = planned / "dataset.json"
    original = json_path.read_text()
    try:
        dj = json.loads(original)
        dj["glua"]["target_training_cases"] = tiny.TARGET_CASES + [tiny.TEST_CASES[0]]
        json_path.write_text(json.dumps(dj))
        with pytest.raises(UDADatasetError, match="both unlabelled training and test"):
            load_uda_info(DATASET_ID)
        dj["glua"]["target_training_cases"] = tiny.TARGET_CASES[:2]
        json_path.write_text(json.dumps(dj))
        with pytest.raises(UDADatasetError, match=r"does not list: \['tgt_002'\]"):
            load_uda_info(DATASET_ID).target_image_files("train")
    finally:
        json_path.write_text(original)


# ------------------------------------------------------------------------------------------------------------------
# target preprocessing
# ------------------------------------------------------------------------------------------------------------------
def test_target_case_equals_nnunet_source_preprocessing(planned, target_3d):
    # tgt_000 is a copy of the source image src_000: preprocessed as target it must be what nnU-Net made of it
    info = load_uda_info(DATASET_ID)
    source_folder = info.preprocessed_folder / "nnUNetPlans_3d_fullres"
    t_data, t_seg, t_props = _load(target_3d, "tgt_000")
    s_data, s_seg, s_props = _load(source_folder, "src_000")
    assert t_data.dtype == np.float32 and t_data.shape == s_data.shape
    np.testing.assert_array_equal(t_data, s_data)
    for key in ("spacing", "shape_before_cropping", "bbox_used_for_cropping",
                "shape_after_cropping_and_before_resampling"):
        assert np.array_equal(np.asarray(t_props[key]), np.asarray(s_props[key])), key
    # no labels: only "outside the nonzero region" (-1) and "inside" (0), same region as the source's
    assert set(np.unique(t_seg).tolist()) == {-1, 0}
    np.testing.assert_array_equal(t_seg == -1, s_seg == -1)
    assert t_props["class_locations"] == {}


def test_resampled_target_case_has_configuration_spacing_and_zscores(planned, target_3d):
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    info = load_uda_info(DATASET_ID)
    pm, cm, _ = load_plans_and_configuration(info, PLANS, "3d_fullres")
    data, seg, props = _load(target_3d, "tgt_001")
    original_spacing = [props["spacing"][i] for i in pm.transpose_forward]
    assert not np.allclose(original_spacing, cm.spacing)  # the case really was resampled
    expected = compute_new_shape(props["shape_after_cropping_and_before_resampling"], original_spacing, cm.spacing)
    assert data.shape == (1, *expected) and seg.shape == data.shape
    inside = data[0][seg[0] >= 0]
    assert cm.use_mask_for_norm[0]
    assert abs(inside.mean()) < 0.1 and abs(inside.std() - 1) < 0.1  # z-scored per image (then resampled)


def test_target_folder_is_next_to_not_inside_the_source_data(planned, target_3d):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class, nnUNetDatasetBlosc2

    info = load_uda_info(DATASET_ID)
    source_folder = info.preprocessed_folder / "nnUNetPlans_3d_fullres"
    assert target_3d == target_folder(DATASET_ID, "3d_fullres", PLANS, "train")
    assert target_3d.parent.parent == info.preprocessed_folder
    assert source_folder not in target_3d.parents and target_3d != source_folder
    # nnU-Net's own training set is untouched: source cases only
    assert sorted(nnUNetDatasetBlosc2.get_identifiers(str(source_folder))) == tiny.SOURCE_CASES
    assert infer_dataset_class(str(target_3d)) is nnUNetDatasetBlosc2
    assert sorted(nnUNetDatasetBlosc2.get_identifiers(str(target_3d))) == tiny.TARGET_CASES
    manifest = json.loads((target_3d.parent / MANIFEST_NAME).read_text())
    assert manifest["splits"]["train"]["complete"] and manifest["splits"]["train"]["cases"] == tiny.TARGET_CASES


def test_second_call_does_no_work(planned, target_3d):
    root = target_root(DATASET_ID, "3d_fullres")
    before = _mtimes(root)
    assert target_is_up_to_date(DATASET_ID, "3d_fullres")
    reports = build_target_data(DATASET_ID, "3d_fullres", num_processes=1, verbose=False)
    assert [(r.action, r.num_processed) for r in reports] == [("up to date", 0)]
    assert _mtimes(root) == before


def test_changed_input_image_invalidates_the_cache(planned, target_3d):
    image = planned / "imagesTargetTr" / "tgt_001_0000.nii.gz"
    st = image.stat()
    try:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert not target_is_up_to_date(DATASET_ID, "3d_fullres")
    finally:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target_is_up_to_date(DATASET_ID, "3d_fullres")


def test_replanning_rebuilds_and_never_reuses_stale_cases(plans_copy):
    identifier, plans_path = plans_copy
    first = build_target_data(DATASET_ID, "3d_fullres", identifier, num_processes=1, verbose=False)
    assert [(r.action, r.num_processed) for r in first] == [("built", 3)]
    folder = target_folder(DATASET_ID, "3d_fullres", identifier)
    old_shape = _load(folder, "tgt_000")[0].shape

    plans = json.loads(plans_path.read_text())
    plans["configurations"]["3d_fullres"]["batch_size"] = 5  # training-only entry: keeps the cache
    plans_path.write_text(json.dumps(plans))
    assert target_is_up_to_date(DATASET_ID, "3d_fullres", identifier)

    plans["configurations"]["3d_fullres"]["spacing"] = [1.5, 2.0, 2.0]  # a re-plan with coarser spacing
    plans_path.write_text(json.dumps(plans))
    assert not target_is_up_to_date(DATASET_ID, "3d_fullres", identifier)
    second = build_target_data(DATASET_ID, "3d_fullres", identifier, num_processes=1, verbose=False)
    assert [(r.action, r.num_processed) for r in second] == [("rebuilt", 3)]
    new_shape = _load(folder, "tgt_000")[0].shape
    assert new_shape[2] < old_shape[2] and new_shape[3] < old_shape[3]
    assert target_is_up_to_date(DATASET_ID, "3d_fullres", identifier)


def test_interrupted_build_resumes_with_missing_cases_only(plans_copy):
    identifier, _ = plans_copy
    build_target_data(DATASET_ID, "3d_fullres", identifier, num_processes=1, verbose=False)
    folder = target_folder(DATASET_ID, "3d_fullres", identifier)
    # simulate a crash between moving a case's arrays and its .pkl, plus a leftover staging file
    (folder / "tgt_001.pkl").unlink()
    staging = folder.parent / ".staging-train"
    staging.mkdir()
    (staging / "tgt_001.b2nd").write_bytes(b"partial")
    kept = {k: v for k, v in _mtimes(folder).items() if not k.startswith("tgt_001")}
    assert not target_is_up_to_date(DATASET_ID, "3d_fullres", identifier)
    reports = build_target_data(DATASET_ID, "3d_fullres", identifier, num_processes=1, verbose=False)
    assert [(r.action, r.num_processed) for r in reports] == [("resumed", 1)]
    assert {k: v for k, v in _mtimes(folder).items() if not k.startswith("tgt_001")} == kept
    assert (folder / "tgt_001.pkl").is_file() and not staging.exists()


def test_target_test_labels_are_never_opened(planned, target_3d):
    labels = planned / "labelsTs"
    hidden = planned / "labelsTs_hidden_for_test"
    labels.rename(hidden)
    try:
        labels.mkdir()
        for case in tiny.TEST_CASES:  # corrupt label files: any attempt to read them would fail
            (labels / f"{case}.nii.gz").write_bytes(b"not an image")
        reports = build_target_data(DATASET_ID, "3d_fullres", include_test=True, num_processes=1, verbose=False)
        assert [r.split for r in reports] == ["train", "test"]
        assert reports[0].action == "up to date" and reports[1].num_processed == len(tiny.TEST_CASES)
        test_folder = target_folder(DATASET_ID, "3d_fullres", split="test")
        for case in tiny.TEST_CASES:
            _, seg, props = _load(test_folder, case)
            assert seg.max() == 0 and props["class_locations"] == {}
        shutil.rmtree(labels)
        with open(labels, "wb") as f:  # not even a folder any more
            f.write(b"\0")
        assert target_is_up_to_date(DATASET_ID, "3d_fullres", split="test")
    finally:
        if labels.is_dir():
            shutil.rmtree(labels)
        else:
            labels.unlink(missing_ok=True)
        hidden.rename(labels)


def test_clear_errors(planned, plans_copy, tmp_path):
    identifier, plans_path = plans_copy
    with pytest.raises(UDADatasetError, match="unknown dataset 989"):
        preprocess_target(989, "3d_fullres", verbose=False)
    with pytest.raises(UDADatasetError, match=r"'3d_lowres' is not in plans .*\['2d', '3d_fullres'\]"):
        preprocess_target(DATASET_ID, "3d_lowres", verbose=False)
    with pytest.raises(UDADatasetError, match="NoSuchPlans.*nnUNetv2_plan_and_preprocess -d 981 -c 3d_fullres"):
        preprocess_target(DATASET_ID, "3d_fullres", plans_identifier="NoSuchPlans", verbose=False)

    plans = json.loads(plans_path.read_text())
    plans["configurations"]["3d_lowres"] = {"inherits_from": "3d_fullres", "data_identifier": "x_lowres",
                                            "next_stage": "3d_cascade_fullres"}
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    plans_path.write_text(json.dumps(plans))
    for cascade in ("3d_lowres", "3d_cascade_fullres"):
        with pytest.raises(UDADatasetError, match="cascade.*not supported"):
            preprocess_target(DATASET_ID, cascade, plans_identifier=identifier, verbose=False)

    no_glua = tiny.write_tiny_uda_dataset(_raw_root(), NO_GLUA_ID, name="NoGlua")
    empty = tiny.write_tiny_uda_dataset(_raw_root(), EMPTY_TARGET_ID, name="EmptyTarget")
    try:
        dj = json.loads((no_glua / "dataset.json").read_text())
        del dj["glua"]
        (no_glua / "dataset.json").write_text(json.dumps(dj))
        with pytest.raises(UDADatasetError, match="no 'glua' block"):
            preprocess_target(NO_GLUA_ID, "3d_fullres", verbose=False)
        for f in (empty / "imagesTargetTr").iterdir():
            f.unlink()
        with pytest.raises(UDADatasetError, match="imagesTargetTr: the target train image folder holds no"):
            preprocess_target(EMPTY_TARGET_ID, "3d_fullres", verbose=False)
    finally:
        shutil.rmtree(no_glua)
        shutil.rmtree(empty)


def test_cli(planned, target_3d, capsys):
    assert main(["-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1"]) == 0
    assert "target train: up to date, 3 cases" in capsys.readouterr().out
    assert main(["-d", str(DATASET_ID), "-c", "3d_nope", "-q"]) == 1
    assert "Available configurations: ['2d', '3d_fullres']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--include-test" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------------
# unlabelled patch loader
# ------------------------------------------------------------------------------------------------------------------
def _cm(configuration: str):
    return load_plans_and_configuration(load_uda_info(DATASET_ID), PLANS, configuration)[1]


def _write_case(folder: Path, case: str, data: np.ndarray, seg: np.ndarray, class_locations: dict) -> None:
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    folder.mkdir(parents=True, exist_ok=True)
    blocks, chunks = comp_blosc2_params(data.shape, (16, 20, 20), 4)
    nnUNetDatasetBlosc2.save_case(data.astype(np.float32), seg.astype(np.int16),
                                  {"class_locations": class_locations}, str(folder / case), chunks=chunks,
                                  blocks=blocks, chunks_seg=chunks, blocks_seg=blocks)


def test_loader_batch_3d(planned, target_3d):
    cm = _cm("3d_fullres")
    loader = make_patch_loader(target_3d, cm, batch_size=3, forbidden_identifiers=tiny.TEST_CASES)
    assert isinstance(loader, UnlabelledPatchLoader) and loader.oversample_foreground_percent == 0
    assert loader.identifiers == tuple(tiny.TARGET_CASES)
    assert sorted(loader.identifiers) == sorted(load_uda_info(DATASET_ID).target_training_cases)
    batch = next(loader)
    assert batch["data"].dtype == torch.float32 and batch["data"].shape == (3, 1, *cm.patch_size)
    assert batch["valid"].dtype == torch.bool and batch["valid"].shape == (3, 1, *cm.patch_size)
    assert set(batch["keys"]) <= set(tiny.TARGET_CASES)
    assert batch["valid"].any() and not batch["valid"].all()  # the body and its surroundings
    # use_mask_for_norm: nnU-Net zeroes the image outside the nonzero region, which valid must mark invalid
    assert cm.use_mask_for_norm[0] and torch.all(batch["data"][~batch["valid"]] == 0)
    assert torch.isfinite(batch["data"]).all()


def test_loader_valid_mask_marks_outside_and_padding_exactly(planned, tmp_path):
    cm = _cm("3d_fullres")  # patch (16, 20, 20): larger than the case in every axis, so every patch is padded
    data = np.ones((1, 10, 12, 12), np.float32)
    seg = np.zeros((1, 10, 12, 12), np.int16)
    seg[:, :2] = -1  # outside the image's nonzero region, as nnU-Net's cropping marks it
    _write_case(tmp_path, "case", data, seg, {})
    loader = make_patch_loader(tmp_path, cm, batch_size=2, augment=False)
    batch = next(loader)
    for b in range(2):
        image, valid = batch["data"][b, 0], batch["valid"][b, 0]
        assert image.sum() == data.sum()  # the whole case lies inside the patch, the rest is zero padding
        assert valid.sum() == (seg == 0).sum()
        assert torch.all(image[valid] == 1)


def test_loader_2d_configuration(planned):
    cm = _cm("2d")
    folder = preprocess_target(DATASET_ID, "2d", num_processes=1, verbose=False)
    assert folder.name == "train" and folder.parent.name == "glua_target_nnUNetPlans_2d"
    loader = make_patch_loader(folder, cm, batch_size=4)
    batch = next(loader)
    assert len(cm.patch_size) == 2
    assert batch["data"].shape == (4, 1, *cm.patch_size) and batch["valid"].shape == (4, 1, *cm.patch_size)
    assert batch["valid"].any()


def test_loader_foreground_guard(planned, tmp_path):
    cm = _cm("3d_fullres")
    source_folder = load_uda_info(DATASET_ID).preprocessed_folder / "nnUNetPlans_3d_fullres"
    with pytest.raises(ForegroundInUnlabelledDataError, match="preprocessed WITH labels"):
        make_patch_loader(source_folder, cm)
    # labelled voxels without foreground locations in the properties are caught in the patch itself
    seg = np.zeros((1, 8, 8, 8), np.int16)
    seg[0, 2:6, 2:6, 2:6] = 1
    _write_case(tmp_path, "sneaky", np.ones((1, 8, 8, 8), np.float32), seg, {})
    loader = make_patch_loader(tmp_path, cm, batch_size=1, augment=False)
    with pytest.raises(ForegroundInUnlabelledDataError, match="segmentation > 0"):
        next(loader)
    # the same class on the labelled SOURCE data, no foreground oversampling, labels reduced to validity
    source = make_patch_loader(source_folder, cm, batch_size=2, forbid_foreground=False)
    assert source.oversample_foreground_percent == 0
    batch = next(source)
    assert set(batch) == {"data", "valid", "keys"} and batch["valid"].any() and not batch["valid"].all()


def test_loader_refuses_forbidden_and_unknown_identifiers(planned, target_3d):
    cm = _cm("3d_fullres")
    with pytest.raises(ValueError, match="forbidden"):
        make_patch_loader(target_3d, cm, identifiers=["tgt_000", "tgt_001"], forbidden_identifiers=["tgt_001"])
    with pytest.raises(ValueError, match="not in this folder"):
        make_patch_loader(target_3d, cm, identifiers=["tst_000"])
    loader = make_patch_loader(target_3d, cm, batch_size=2, identifiers=["tgt_002"], augment=False)
    assert set(next(loader)["keys"]) == {"tgt_002"}


def test_transforms_keep_padding_marker():
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform

    class _CM:
        patch_size = [16, 20, 20]

    transforms = build_patch_transforms(_CM.patch_size, augmentation_settings(_CM()), [True])
    names = [type(t) for t in transforms.transforms]
    assert RemoveLabelTransform not in names and DownsampleSegForDSTransform not in names
    # the -1 marker survives the whole pipeline (nnU-Net's own pipeline would have turned it into 0)
    seg = torch.zeros((1, 16, 20, 20), dtype=torch.int16)
    seg[:, :8] = -1
    for _ in range(5):
        out = transforms(image=torch.ones((1, 16, 20, 20)), segmentation=seg.clone())
        assert out["segmentation"].shape == (1, 16, 20, 20) and (out["segmentation"] == -1).any()


@pytest.mark.parametrize("num_processes", [0, 1])
def test_augmenter_factory(planned, target_3d, num_processes):
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
    from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

    cm = _cm("3d_fullres")
    loader = make_patch_loader(target_3d, cm, batch_size=2)
    augmenter = make_augmenter(loader, num_processes=num_processes, num_cached=2)
    try:
        expected = SingleThreadedAugmenter if num_processes == 0 else NonDetMultiThreadedAugmenter
        assert isinstance(augmenter, expected)
        batch = next(augmenter)
        assert batch["data"].shape == (2, 1, *cm.patch_size) and batch["valid"].dtype == torch.bool
    finally:
        if hasattr(augmenter, "_finish"):
            augmenter._finish()


def test_concurrent_callers_build_once(plans_copy):
    # several folds start at once: the lock lets one build while the others wait and then find it up to date
    from concurrent.futures import ThreadPoolExecutor

    identifier, _ = plans_copy
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: build_target_data(DATASET_ID, "3d_fullres", identifier, num_processes=1,
                                                            verbose=False)[0], range(3)))
    assert sorted((r.action, r.num_processed) for r in results) == [("built", 3), ("up to date", 0),
                                                                    ("up to date", 0)]


def test_augmentation_settings_match_nnunet_trainer(planned):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_glua.data.patch_loader import augmentation_settings_from_trainer

    info = load_uda_info(DATASET_ID)
    for configuration in ("3d_fullres", "2d"):
        plans = json.loads((info.preprocessed_folder / f"{PLANS}.json").read_text())
        plans["continue_training"] = False  # nnUNetTrainer pops this (nnUNetv2_train sets it)
        trainer = nnUNetTrainer(plans, configuration, 0, info.dataset_json, device=torch.device("cpu"))
        ours = augmentation_settings(trainer.configuration_manager)
        assert ours == augmentation_settings_from_trainer(trainer)
        assert len(ours.initial_patch_size) == len(trainer.configuration_manager.patch_size)
