"""Translator training loop and translation API on tiny synthetic preprocessed folders (CPU).

Covers: seeded determinism, checkpoint round trip and resume (an interrupted + resumed run equals an uninterrupted
one), outputs of a run (log, previews, style bank), refusal of checkpoints from other plans, and the translation
API used by the segmentation trainer (shape/dtype/device, one style per volume, masks, 2D input) and the report.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunet_glua.style.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from nnunet_glua.style.identity import TranslatorIdentity, TranslatorMismatchError, identity_from_plans
from nnunet_glua.style.report import format_report, style_report
from nnunet_glua.style.synthetic import tiny_config, write_synthetic_domain_pair
from nnunet_glua.style.trainer import FINAL_CHECKPOINT, LATEST_CHECKPOINT, train_translator
from nnunet_glua.style.translate import Translator

IDENTITY = TranslatorIdentity("Dataset990_StyleTest", "nnUNetPlans", "3d_fullres", "0123456789abcdef")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_synthetic_domain_pair(tmp_path_factory.mktemp("style_data"), n_cases=3, shape=(6, 32, 40))


@pytest.fixture(scope="module")
def trained(folders, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("style_run")
    result = train_translator(*folders, config=tiny_config(), out_dir=out, seed=0, identity=IDENTITY,
                              progress=False)
    return result


def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt["generators"], ckpt["discriminators"], ckpt["ema_generators"]["model"]


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_writes_checkpoints_log_previews_and_style_bank(trained):
    out = trained.out_dir
    for name in (FINAL_CHECKPOINT, LATEST_CHECKPOINT, "style_bank.json", "translator_config.json",
                 "training_log.jsonl", "previews/latest.png", "previews/iter_0000004.png"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [2, 4]
    assert all(np.isfinite(r["self_rec"]) and np.isfinite(r["d_image"]) for r in records)
    final = load_checkpoint(out / FINAL_CHECKPOINT)
    assert final["format_version"] == FORMAT_VERSION and final["finished"] and final["iteration"] == 4
    assert final["identity"] == IDENTITY.to_dict() and final["slice_size"] == [32, 40]
    assert final["style_bank"]["centres"].shape == (3, 4)
    assert json.loads((out / "style_bank.json").read_text())["k"] == 3
    from PIL import Image
    assert Image.open(out / "previews/latest.png").size[0] >= 4 * 128


def test_same_seed_gives_identical_weights_other_seed_differs(folders, trained, tmp_path):
    again = train_translator(*folders, config=tiny_config(), out_dir=tmp_path / "a", seed=0, identity=IDENTITY,
                             progress=False)
    other = train_translator(*folders, config=tiny_config(), out_dir=tmp_path / "b", seed=1, identity=IDENTITY,
                             progress=False)
    ref = _weights(trained.final_checkpoint)
    assert all(_same(x, y) for x, y in zip(ref, _weights(again.final_checkpoint)))
    assert not _same(ref[0], _weights(other.final_checkpoint)[0])


def test_interrupted_and_resumed_run_equals_uninterrupted(folders, tmp_path):
    cfg = tiny_config(iterations=6, checkpoint_every=3, log_every=1)
    full = train_translator(*folders, config=cfg, out_dir=tmp_path / "full", seed=3, progress=False)

    def interrupt_at_4(iteration: int) -> None:
        if iteration == 4:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_translator(*folders, config=cfg, out_dir=run, seed=3, progress=False, callback=interrupt_at_4)
    saved = load_checkpoint(run / LATEST_CHECKPOINT)
    assert saved["iteration"] == 4 and not saved["finished"]
    assert not (run / FINAL_CHECKPOINT).exists()
    with pytest.raises(FileExistsError, match="--continue"):
        train_translator(*folders, config=cfg, out_dir=run, seed=3, progress=False)
    resumed = train_translator(*folders, config=cfg, out_dir=run, seed=3, progress=False, resume=True)
    assert resumed.iterations == 6
    a, b = load_checkpoint(full.final_checkpoint), load_checkpoint(resumed.final_checkpoint)
    for key in ("generators", "discriminators"):
        assert _same(a[key], b[key]), key
    assert _same(a["ema_generators"]["model"], b["ema_generators"]["model"])
    for key in ("opt_g", "opt_d"):
        sa, sb = a[key]["state"], b[key]["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa), key
    assert a["sched_g"]["last_epoch"] == b["sched_g"]["last_epoch"] == 6
    log = [json.loads(line)["iteration"] for line in (run / "training_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]  # nothing logged twice across the interruption
    # resuming a finished run is a no-op
    assert train_translator(*folders, config=cfg, out_dir=run, seed=3, progress=False, resume=True).iterations == 6
    # the network shape cannot change on resume
    with pytest.raises(ValueError, match="cannot resume"):
        train_translator(*folders, config=tiny_config(iterations=8, batch_size=3), out_dir=run, seed=3,
                         progress=False, resume=True)


def test_checkpoint_for_other_plans_is_refused_with_retrain_hint(trained):
    other = TranslatorIdentity("Dataset990_StyleTest", "nnUNetResEncUNetMPlans", "3d_fullres", "0123456789abcdef")
    with pytest.raises(TranslatorMismatchError) as err:
        Translator.from_checkpoint(trained.final_checkpoint, expected_identity=other)
    msg = str(err.value)
    assert "nnUNetPlans" in msg and "nnUNetResEncUNetMPlans" in msg
    assert "glua_train_style -d Dataset990_StyleTest -c 3d_fullres -p nnUNetResEncUNetMPlans" in msg
    replanned = TranslatorIdentity(IDENTITY.dataset_name, IDENTITY.plans_identifier, IDENTITY.configuration, "ff")
    with pytest.raises(TranslatorMismatchError, match="re-planning"):
        Translator.from_checkpoint(trained.final_checkpoint, expected_identity=replanned)
    Translator.from_checkpoint(trained.final_checkpoint, expected_identity=IDENTITY)  # the right one loads


def test_plans_fingerprint_tracks_preprocessing_not_batch_size():
    plans = {"dataset_name": "Dataset990_StyleTest", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
             "configurations": {"3d_fullres": {"data_identifier": "x", "spacing": [1, 1, 1], "batch_size": 2,
                                               "normalization_schemes": ["ZScoreNormalization"]},
                                "3d_lowres": {"inherits_from": "3d_fullres", "spacing": [2, 2, 2]}}}
    base = identity_from_plans(plans, "3d_fullres")
    plans["configurations"]["3d_fullres"]["batch_size"] = 7
    assert identity_from_plans(plans, "3d_fullres") == base
    plans["configurations"]["3d_fullres"]["spacing"] = [1, 1, 2]
    assert identity_from_plans(plans, "3d_fullres").plans_fingerprint != base.plans_fingerprint
    assert identity_from_plans(plans, "3d_lowres").plans_fingerprint != base.plans_fingerprint


def test_unfinished_and_foreign_checkpoints_give_clear_errors(trained, tmp_path):
    ckpt = load_checkpoint(trained.out_dir / LATEST_CHECKPOINT)
    ckpt["style_bank"] = None
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("kind", "format_version")}, tmp_path / "mid.pth")
    with pytest.raises(ValueError, match="no style bank"):
        Translator.from_checkpoint(tmp_path / "mid.pth")
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="format version"):
        Translator.from_checkpoint(tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="not found"):
        Translator.from_checkpoint(tmp_path / "missing.pth")


def test_translate_batch_keeps_shape_dtype_device_and_one_style_per_volume(trained):
    tr = Translator.from_checkpoint(trained.final_checkpoint)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 5, 37, 53, generator=gen, dtype=torch.float64)
    y = tr.translate_batch(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(y, tr.translate_batch(x, torch.Generator().manual_seed(1)))  # seeded styles
    # a volume of identical slices stays identical slice to slice (one style for the whole volume) ...
    one = torch.randn(1, 1, 1, 32, 40, generator=gen).expand(1, 1, 6, 32, 40)
    batch = torch.cat([one, one]).contiguous()
    out = tr.translate_batch(batch, torch.Generator().manual_seed(2))
    assert torch.allclose(out[0, :, 0], out[0, :, 5], atol=1e-5) and torch.allclose(out[1, :, 1], out[1, :, 4],
                                                                                     atol=1e-5)
    # ... while two volumes draw their own styles
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    # explicit styles: equal styles give equal volumes
    s = tr.sample_styles(1, torch.Generator().manual_seed(3)).expand(2, -1)
    out = tr.translate_batch(batch, styles=s)
    assert torch.allclose(out[0], out[1], atol=1e-6)


def test_translate_batch_2d_mask_and_errors(trained):
    tr = Translator.from_checkpoint(trained.final_checkpoint)
    x2d = torch.randn(3, 1, 30, 41)
    assert tr.translate_batch(x2d).shape == x2d.shape
    x = torch.randn(2, 1, 4, 32, 40)
    valid = torch.zeros(2, 1, 4, 32, 40, dtype=torch.bool)
    valid[..., 8:24, 8:30] = True
    y = tr.translate_batch(x, torch.Generator().manual_seed(0), valid_mask=valid)
    assert torch.equal(y[~valid.expand_as(y)], x[~valid.expand_as(x)])
    assert not torch.equal(y[valid], x[valid])
    with pytest.raises(ValueError, match="1-channel"):
        tr.translate_batch(torch.randn(1, 2, 4, 32, 40))
    with pytest.raises(ValueError, match=r"\(B, C, X, Y, Z\)"):
        tr.translate_batch(torch.randn(32, 40))
    # small chunks give the same result as one big chunk
    tr_small = Translator.from_checkpoint(trained.final_checkpoint, max_pixels_per_chunk=32 * 40 * 3)
    s = tr.sample_styles(2, torch.Generator().manual_seed(5))
    assert torch.allclose(tr.translate_batch(x, styles=s), tr_small.translate_batch(x, styles=s), atol=1e-5)


def test_style_report_on_labelled_phantoms(trained, folders, tmp_path):
    from nnunet_glua.style.synthetic import write_synthetic_folder

    labelled_target = write_synthetic_folder(tmp_path / "tl", "target", 2, (6, 32, 40), seed=9, with_labels=True)
    tr = Translator.from_checkpoint(trained.final_checkpoint)
    report = style_report(tr, *folders, target_labelled_folder=labelled_target, max_slices=12,
                          classifier_iterations=15, progress=False)
    json.dumps(report)  # JSON-safe
    tl, cp = report["target_likeness"], report["content_preservation"]
    assert set(tl["intensity"]) == {"source", "translated", "target_labelled"}
    assert set(tl["intensity"]["source"]["0"]) == {"0", "1", "2", "3"}
    assert tl["histogram"][0]["w1_source_vs_target"] > 0
    assert 0.0 <= tl["domain_classifier"]["held_out_accuracy_real"] <= 1.0
    assert cp["reconstruction"]["cross_cycle_l1"] > 0
    # the source phantom has sharp label-aligned edges: its edge Dice is high
    assert cp["edges"]["source"] > 0.3
    text = format_report(report)
    assert "gap closed" in text and "cross-cycle" in text and "target_labelled" in text
