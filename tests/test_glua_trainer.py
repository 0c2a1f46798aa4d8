"""GLUATrainer through nnU-Net's trainer API on a tiny planned dataset (CPU): steps, logging, checkpoints,
resume, export to plain nnU-Net, and the structural guards against target-label leakage."""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tiny_dataset import plan_and_preprocess, weights_with_noisy_test_labels, write_tiny_uda_dataset

DATASET_ID = 974


@pytest.fixture(scope="module")
def planned_dataset(session_root):
    raw = Path(os.environ["nnUNet_raw"])
    folder = write_tiny_uda_dataset(raw, DATASET_ID, name="GLUATrainerTiny")
    plan_and_preprocess(DATASET_ID, configurations=("3d_fullres", "2d"))
    return folder


@pytest.fixture
def single_threaded_augmentation(monkeypatch):
    # planning dies with nnUNet_n_proc_DA=0 (nnU-Net sets torch threads from it), training is fine and deterministic
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")


def _plans_and_json(dataset_folder: Path):
    pre = Path(os.environ["nnUNet_preprocessed"]) / dataset_folder.name
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    return plans, json.loads((pre / "dataset.json").read_text())


def _make(trainer_cls, dataset_folder: Path, configuration: str = "3d_fullres", fold: int = 0, **attrs):
    plans, dataset_json = _plans_and_json(dataset_folder)
    trainer = trainer_cls(copy.deepcopy(plans), configuration, fold, dataset_json, torch.device("cpu"))
    for k, v in attrs.items():
        setattr(trainer, k, v)
    return trainer


def _short_feature_trainer():
    from nnunet_glua.training.variants import GLUATrainer_FeatureOnly_Short

    class Tiny(GLUATrainer_FeatureOnly_Short):
        schedule_num_epochs = 1
        schedule_iterations_per_epoch = 3
        schedule_val_iterations_per_epoch = 1
        lambda_align = 0.1
        align_rampup_epochs = 0  # full weight from the first step: the test checks the alignment is active
    return Tiny


def test_feature_alignment_trains_logs_and_selects_the_mask_fraction(planned_dataset, single_threaded_augmentation):
    trainer = _make(_short_feature_trainer(), planned_dataset)
    trainer.run_training()
    log = trainer.logger.local_logger.my_fantastic_logging
    for key in ("glua_align_loss", "glua_disc_loss", "glua_mask_fraction", "glua_align_weight"):
        assert len(log[key]) == 1 and np.isfinite(log[key][0]), key
    # ceil(rho * n_valid) of the valid locations per sample: within one location of rho
    assert log["glua_mask_fraction"][0] == pytest.approx(trainer.mask_ratio, abs=0.02)
    assert log["glua_align_weight"][0] == pytest.approx(trainer.lambda_align)
    final = Path(trainer.output_folder) / "checkpoint_final.pth"
    ckpt = torch.load(final, map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "Tiny"
    glua = ckpt["glua"]
    assert glua["format_version"] == 1 and "discriminator" in glua and "disc_optimizer" in glua
    assert glua["settings"]["mask_ratio"] == trainer.mask_ratio
    # the network's state dict is nnU-Net's: same keys as the bare U-Net
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    bare = nnUNetTrainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                    1, 3, True)
    assert set(ckpt["network_weights"]) == set(bare.state_dict())


def test_resume_restores_discriminator_optimizer_and_style_state(planned_dataset, single_threaded_augmentation):
    first = _make(_short_feature_trainer(), planned_dataset, fold=1)
    first.run_training()
    ckpt_path = str(Path(first.output_folder) / "checkpoint_final.pth")
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)["glua"]

    resumed = _make(_short_feature_trainer(), planned_dataset, fold=1)
    resumed.load_checkpoint(ckpt_path)  # what `nnUNetv2_train ... --c` does before run_training
    resumed.on_train_start()
    try:
        comp = resumed.components
        for k, v in saved["discriminator"].items():
            assert torch.equal(comp.discriminator_module.state_dict()[k], v), k
        opt_state = comp.disc_optimizer.state_dict()["state"]
        assert opt_state and all(torch.equal(opt_state[i]["exp_avg"], saved["disc_optimizer"]["state"][i]["exp_avg"])
                                 for i in opt_state)
        assert resumed.current_epoch == first.num_epochs
    finally:
        resumed.on_train_end()


def test_resume_refuses_other_glua_settings(planned_dataset, single_threaded_augmentation):
    first = _make(_short_feature_trainer(), planned_dataset, fold=2)
    first.run_training()
    ckpt_path = str(Path(first.output_folder) / "checkpoint_final.pth")
    other = _make(_short_feature_trainer(), planned_dataset, fold=2, mask_ratio=0.5)
    other.load_checkpoint(ckpt_path)
    with pytest.raises(RuntimeError, match="other GLUA settings"):
        other.on_train_start()
    other.components = None


def test_two_dimensional_configuration_trains(planned_dataset, single_threaded_augmentation):
    trainer = _make(_short_feature_trainer(), planned_dataset, configuration="2d")
    trainer.run_training()
    assert np.isfinite(trainer.logger.local_logger.my_fantastic_logging["glua_align_loss"][0])


def test_residual_encoder_plans_train_with_feature_alignment(planned_dataset, monkeypatch):
    """nnU-Net's recommended ResEnc presets (``-p nnUNetResEncUNetMPlans``) build a ResidualEncoderUNet; its decoder
    features must reach the discriminator and its target data must be preprocessed with those plans."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiments, preprocess

    plans_name = "nnUNetResEncUNetMPlans"
    plan_experiments([DATASET_ID], experiment_planner_class_name="nnUNetPlannerResEncM")
    preprocess([DATASET_ID], plans_identifier=plans_name, configurations=("3d_fullres",), num_processes=(1,),
               verbose=False, show_progress_bar=False)
    pre = Path(os.environ["nnUNet_preprocessed"]) / planned_dataset.name
    plans = json.loads((pre / f"{plans_name}.json").read_text())
    plans["continue_training"] = False
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    dataset_json = json.loads((pre / "dataset.json").read_text())
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # after planning, which refuses it (see the fixture above)
    trainer = _short_feature_trainer()(plans, "3d_fullres", 0, dataset_json, torch.device("cpu"))
    trainer.run_training()
    log = trainer.logger.local_logger.my_fantastic_logging
    assert np.isfinite(log["glua_align_loss"][0]) and np.isfinite(log["glua_disc_loss"][0])
    assert log["glua_mask_fraction"][0] == pytest.approx(trainer.mask_ratio, abs=0.02)
    assert Path(trainer.output_folder).parent.name == f"{type(trainer).__name__}__{plans_name}__3d_fullres"
    assert any(pre.glob(f"glua_target_{plans_name}_3d_fullres*")), "target data preprocessed with the ResEnc plans"


def test_cascade_is_refused_with_a_clear_message(planned_dataset):
    from nnunet_glua.training.glua_trainer import GLUATrainer
    plans, dataset_json = _plans_and_json(planned_dataset)
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    with pytest.raises(RuntimeError, match="cascade"):
        GLUATrainer(plans, "3d_cascade_fullres", 0, dataset_json, torch.device("cpu"))


def test_target_test_labels_never_reach_training(planned_dataset, single_threaded_augmentation, monkeypatch):
    """Two seeded runs, the second with the target test labels replaced by noise: identical weights."""
    monkeypatch.setenv("GLUA_SEED", "7")

    def train():
        trainer = _make(_short_feature_trainer(), planned_dataset, fold=3)
        trainer.run_training()
        return trainer._tap().state_dict()

    weights = weights_with_noisy_test_labels(planned_dataset, train)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_exported_model_predicts_with_plain_nnunet(planned_dataset, single_threaded_augmentation, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunet_glua.inference.export import export_for_plain_nnunet

    trainer = _make(_short_feature_trainer(), planned_dataset, fold=4)
    trainer.run_training()
    exported = export_for_plain_nnunet(trainer.output_folder_base, tmp_path / "plain", folds=[4])
    assert torch.load(exported / "fold_4" / "checkpoint_final.pth", weights_only=False)["trainer_name"] == \
        "nnUNetTrainer"
    # plain nnU-Net, with no access to the plugin's trainers
    os.environ.pop("nnUNet_extTrainer", None)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, device=torch.device("cpu"),
                                perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(exported), use_folds=(4,))
    image = str(planned_dataset / "imagesTs" / "tst_000_0000.nii.gz")
    seg = predictor.predict_from_files([[image]], None, save_probabilities=False, overwrite=True,
                                       num_processes_preprocessing=1, num_processes_segmentation_export=1)
    assert seg[0].shape == sitk.GetArrayFromImage(sitk.ReadImage(image)).shape


def test_pretrained_source_only_weights_warm_start_glua(planned_dataset, single_threaded_augmentation):
    """`nnUNetv2_train ... -tr GLUATrainer -pretrained_weights <source-only checkpoint>` (nnU-Net's own loader)."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from nnunet_glua.training.variants import SourceOnlyTrainer_Short

    class TinySourceOnly(SourceOnlyTrainer_Short):
        schedule_num_epochs = 1
        schedule_iterations_per_epoch = 2
        schedule_val_iterations_per_epoch = 1

    source_only = _make(TinySourceOnly, planned_dataset, fold=0)
    source_only.run_training()
    glua = _make(_short_feature_trainer(), planned_dataset, fold=0)
    glua.initialize()
    load_pretrained_weights(glua.network, str(Path(source_only.output_folder) / "checkpoint_final.pth"), verbose=False)
    trained = source_only.network.state_dict()
    loaded = glua._tap().state_dict()
    # nnU-Net transfers everything but the segmentation heads
    transferred = [k for k in trained if ".seg_layers." not in k]
    assert transferred and all(torch.equal(trained[k], loaded[k]) for k in transferred)


def test_diverged_step_stops_before_the_weights_change(planned_dataset, single_threaded_augmentation):
    from nnunet_glua.training.glua_components import AdversarialDivergenceError

    trainer = _make(_short_feature_trainer(), planned_dataset, fold=0)
    trainer.on_train_start()
    try:
        trainer.on_train_epoch_start()
        real_loss = trainer.loss
        trainer.loss = lambda output, target: real_loss(output, target) * float("nan")
        before = {k: v.clone() for k, v in trainer._tap().state_dict().items()}
        disc_before = {k: v.clone() for k, v in trainer.components.discriminator_module.state_dict().items()}
        with pytest.raises(AdversarialDivergenceError, match="segmentation loss = nan"):
            trainer.train_step(next(trainer.dataloader_train))
        assert all(torch.equal(before[k], v) for k, v in trainer._tap().state_dict().items())
        assert all(torch.equal(disc_before[k], v)
                   for k, v in trainer.components.discriminator_module.state_dict().items())
    finally:
        trainer.components.shutdown()


def test_gap_mask_figure_selects_the_trained_fraction_on_a_target_patch(planned_dataset,
                                                                         single_threaded_augmentation, tmp_path):
    from PIL import Image

    from nnunet_glua.data.target_preprocessing import target_folder
    from nnunet_glua.evaluation.gap_figure import gap_mask_figure

    trainer = _make(_short_feature_trainer(), planned_dataset, fold=4)
    trainer.run_training()
    summary = gap_mask_figure(trainer.output_folder, target_folder(DATASET_ID, "3d_fullres"), tmp_path / "gap.png")
    assert summary["mask_ratio"] == trainer.mask_ratio
    assert summary["selected_fraction"] == pytest.approx(trainer.mask_ratio, abs=0.05)
    with Image.open(tmp_path / "gap.png") as png:
        assert png.width >= 3 * 160 and png.height >= 160
    # a source-only checkpoint has no discriminator: refused with a message, nothing written
    from nnunet_glua.training.variants import SourceOnlyTrainer_Short
    plain = _make(SourceOnlyTrainer_Short, planned_dataset, fold=4)
    plain.num_epochs, plain.num_iterations_per_epoch, plain.num_val_iterations_per_epoch = 1, 1, 1
    plain.run_training()
    with pytest.raises(ValueError, match="no feature discriminator"):
        gap_mask_figure(plain.output_folder, target_folder(DATASET_ID, "3d_fullres"), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


# ---------------------------------------------------------------------------------------------------- full method
@pytest.fixture(scope="module")
def tiny_translator(planned_dataset):
    """A tiny translator for the 3d_fullres plans: trainers reuse a finished translator instead of training one."""
    from nnunet_glua.style.integration import ensure_translator
    from nnunet_glua.style.synthetic import tiny_config

    return ensure_translator(DATASET_ID, "3d_fullres", iterations=4, device="cpu", config=tiny_config(),
                             progress=False, seed=1)


def _tiny_glua():
    """GLUATrainer with everything on: translation of every sample, structure shift of every sample, local feature
    alignment at full weight from the first step; 2 epochs of 2 steps."""
    from nnunet_glua.training.variants import GLUATrainer_Short

    class TinyGLUA(GLUATrainer_Short):
        schedule_num_epochs = 2
        schedule_iterations_per_epoch = 2
        schedule_val_iterations_per_epoch = 1
        translate_probability = 1.0
        structure_shift_probability = 1.0
        lambda_align = 0.1
        align_rampup_epochs = 0
    return TinyGLUA


def _weights(trainer) -> dict[str, torch.Tensor]:
    state = {f"net.{k}": v.clone() for k, v in trainer._tap().state_dict().items()}
    state.update({f"disc.{k}": v.clone() for k, v in trainer.components.discriminator_module.state_dict().items()})
    return state


def test_resume_continues_every_random_stream_exactly(planned_dataset, tiny_translator, single_threaded_augmentation,
                                                     monkeypatch):
    """The full method (translation, shift, local alignment) trained straight through and interrupted after epoch
    1 then resumed with --c end with identical network and discriminator weights."""
    monkeypatch.setenv("GLUA_SEED", "11")
    tiny = _tiny_glua()
    straight = _make(tiny, planned_dataset, fold=1, save_every=1)
    straight.run_training()
    log = straight.logger.local_logger.my_fantastic_logging
    assert log["glua_translated_fraction"] == [1.0, 1.0]
    assert log["glua_mask_fraction"][0] == pytest.approx(straight.mask_ratio, abs=0.02)
    assert all(np.isfinite(log[k]).all() for k in ("glua_align_loss", "glua_disc_loss"))
    expected = _weights(straight)

    class Interrupted(tiny):
        def on_epoch_end(self):
            super().on_epoch_end()  # writes checkpoint_latest.pth after the first epoch (save_every = 1)
            raise KeyboardInterrupt

    interrupted = _make(Interrupted, planned_dataset, fold=1, save_every=1)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run_training()
    interrupted.components.shutdown()
    latest = str(Path(interrupted.output_folder) / "checkpoint_latest.pth")

    resumed = _make(tiny, planned_dataset, fold=1, save_every=1)
    resumed.load_checkpoint(latest)  # what `nnUNetv2_train ... --c` does
    resumed.run_training()
    got = _weights(resumed)
    assert set(got) == set(expected)
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f"resumed run differs from the uninterrupted one in {different[:5]}"


def test_resume_refuses_a_different_translator(planned_dataset, tiny_translator, single_threaded_augmentation):
    from nnunet_glua.style.integration import ensure_translator, load_context
    from nnunet_glua.style.synthetic import tiny_config

    first = _make(_tiny_glua(), planned_dataset, fold=2, save_every=1)
    first.run_training()
    checkpoint = str(Path(first.output_folder) / "checkpoint_final.pth")
    # the translator is retrained (e.g. after `glua_train_style --overwrite`): another run id
    shutil.rmtree(load_context(DATASET_ID, "3d_fullres").results_folder)
    ensure_translator(DATASET_ID, "3d_fullres", iterations=4, device="cpu", config=tiny_config(), progress=False,
                      seed=2)
    resumed = _make(_tiny_glua(), planned_dataset, fold=2)
    resumed.load_checkpoint(checkpoint)
    with pytest.raises(RuntimeError, match="translator"):
        resumed.on_train_start()
    resumed.components = None


def _stream_draws(trainer) -> dict[str, object]:
    streams = trainer.random_streams
    first_conv = next(p for n, p in trainer._tap().named_parameters() if n.endswith("weight"))
    return {"network init": first_conv.detach().flatten()[:8].clone(),
            "style": torch.rand(4, generator=streams.generator("style")),
            "structure shift": torch.rand(4, generator=streams.generator("structure_shift")),
            "process (numpy)": float(np.random.rand()),
            "nnU-Net loader workers": streams.worker_seeds("nnunet_loader", 2, 0),
            "target loader workers": streams.worker_seeds("target_loader", 2, 0),
            "translator": streams.seed_of("translator")}


def _same(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_glua_seed_seeds_every_stream_and_fold_all_has_its_own(planned_dataset, monkeypatch):
    from nnunet_glua.training.variants import GLUATrainer_Short

    runs = {}
    for seed, fold in ((5, 0), (5, 0), (6, 0), (5, "all")):
        monkeypatch.setenv("GLUA_SEED", str(seed))
        trainer = _make(GLUATrainer_Short, planned_dataset, fold=fold)
        trainer.initialize()
        runs.setdefault((seed, fold), []).append(_stream_draws(trainer))
    once, again = runs[(5, 0)]
    assert all(_same(once[k], again[k]) for k in once), "the same seed must repeat every stream"
    other_seed, fold_all = runs[(6, 0)][0], runs[(5, "all")][0]
    assert all(not _same(once[k], other_seed[k]) for k in once), "another seed must change every stream"
    # fold 'all' (nnU-Net keeps it as a string) has streams of its own, but shares the seed's translator
    assert all(not _same(once[k], fold_all[k]) for k in once if k != "translator")
    assert once["translator"] == fold_all["translator"]
    # what glua_demo trains the translator with before any trainer exists
    from nnunet_glua.training.random_streams import shared_stream_seed
    assert shared_stream_seed(5, "translator") == once["translator"]
    assert shared_stream_seed(6, "translator") == other_seed["translator"]


# ---------------------------------------------------------------------------------------------------- variants
def test_every_generated_trainer_has_the_settings_of_its_method_and_schedule(planned_dataset):
    import pickle

    from nnunet_glua.style.config import TranslatorConfig
    from nnunet_glua.training import variants
    from nnunet_glua.training.glua_trainer import GLUATrainer
    from nnunet_glua.training.methods import METHODS
    from nnunet_glua.training.schedules import SCHEDULES
    from nnunet_glua.training.source_only import SourceOnlyTrainer

    assert len(variants.TRAINERS) == len(METHODS) * len(SCHEDULES)
    plain = _make(GLUATrainer, planned_dataset)  # nnU-Net's schedule and GLUA's defaults
    cpu_translator = TranslatorConfig.preset("cpu_demo")
    for name, (cls, method, schedule) in variants.TRAINERS.items():
        assert cls.__name__ == name and getattr(variants, name) is cls
        assert cls.__module__ == (method.base.__module__ if cls is method.base else variants.__name__)
        assert pickle.loads(pickle.dumps(cls)) is cls  # nnU-Net's worker processes receive the class pickled
        assert issubclass(cls, method.base)
        trainer = _make(cls, planned_dataset)
        assert trainer.num_epochs == (schedule.epochs or plain.num_epochs), name
        assert trainer.num_iterations_per_epoch == (schedule.iterations or plain.num_iterations_per_epoch), name
        assert trainer.num_val_iterations_per_epoch == \
            (schedule.val_iterations or plain.num_val_iterations_per_epoch), name
        for key, value in method.settings.items():
            assert getattr(trainer, key) == value, (name, key)
        if issubclass(cls, SourceOnlyTrainer):
            assert trainer.structure_shift == method.settings.get("structure_shift", 0.0), name
            assert trainer.pseudo_label_fraction == method.settings.get("pseudo_label_fraction", 0.0), name
            assert trainer.augmentation == method.settings.get("augmentation", "default"), name
            assert trainer.class_intensity_augmentation == method.settings.get("class_intensity_augmentation", 0), name
            continue
        for key in ("mask_ratio", "soft_mask", "use_translation", "use_feature_alignment", "structure_shift",
                    "lambda_align", "translate_probability", "pseudo_label_fraction"):
            assert getattr(trainer, key) == method.settings.get(key, getattr(plain, key)), (name, key)
        assert trainer.target_batch_fraction == schedule.alignment.get("target_batch_fraction",
                                                                       plain.target_batch_fraction), name
        config = cls.translator_config()
        if not schedule.suffix:
            assert config is None, name  # nnU-Net's schedule: the default translator
        else:
            expected_iterations = schedule.alignment.get("translator_iterations", cpu_translator.iterations)
            assert config.network == cpu_translator.network and config.iterations == expected_iterations, name


def test_trainer_classes_are_written_once_and_listed_by_one_command():
    import re
    import subprocess
    import sys

    from nnunet_glua.training import variants

    package = Path(variants.__file__).parent
    written = sorted(m for f in package.glob("*.py") for m in re.findall(r"^class (\w*Trainer\w*)\(", f.read_text(),
                                                                             re.M))
    assert written == ["GLUATrainer", "SeededTrainer", "SourceOnlyTrainer"]
    out = subprocess.run([sys.executable, "-m", "nnunet_glua.training.variants", "--list"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("GLUATrainer_SoftMask_Demo", "GLUATrainer_Mask50_Short",
                 "SourceOnlyTrainer_StructureShift_DemoFineTune", "GLUATrainer_NoStructureShift"):
        assert re.search(rf"^\s+{name}\s", out, re.M), name
    assert f"{len(variants.TRAINERS)} trainers" in out


# ---------------------------------------------------------------------------------------------------- host syncs
_HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__")


def _count_host_reads_from(modules: tuple[str, ...], monkeypatch) -> list[str]:
    """Patch the Tensor methods that make the host wait for the device; record the calls made from ``modules``."""
    import sys

    calls: list[str] = []
    for name in _HOST_READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1)
            if any(caller.f_code.co_filename.endswith(m) for m in modules):
                calls.append(f"{_name} in {caller.f_code.co_name}")
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


def _device_path(trainer) -> None:
    """The CUDA code path on the CPU: a GradScaler makes the step keep its divergence checks on the device."""
    trainer.grad_scaler = torch.amp.GradScaler("cpu")
    trainer.components.disc_scaler = torch.amp.GradScaler("cpu")


def test_the_training_step_reads_from_the_device_once(planned_dataset, tiny_translator, single_threaded_augmentation,
                                                      monkeypatch):
    trainer = _make(_tiny_glua(), planned_dataset, fold=0)
    trainer.on_train_start()
    try:
        _device_path(trainer)
        trainer.on_train_epoch_start()
        batch = next(trainer.dataloader_train)
        ours = ("training/glua_trainer.py", "training/glua_components.py", "alignment/discriminator.py",
                "alignment/local_mask.py", "alignment/losses.py", "training/feature_unet.py",
                "training/augmentation.py")
        calls = _count_host_reads_from(ours, monkeypatch)
        out = trainer.train_step(batch)
        monkeypatch.undo()
        # one copy to the host, then read there
        assert calls == ["cpu in _read_step_values", "tolist in _read_step_values"], calls
        assert np.isfinite(out["glua_align_loss"]) and out["glua_translated_fraction"] > 0
    finally:
        trainer.components.shutdown()


def test_on_the_device_path_a_diverged_step_is_skipped_then_reported(planned_dataset, tiny_translator,
                                                                     single_threaded_augmentation):
    from nnunet_glua.training.glua_components import AdversarialDivergenceError

    trainer = _make(_tiny_glua(), planned_dataset, fold=0)
    trainer.on_train_start()
    try:
        _device_path(trainer)
        trainer.on_train_epoch_start()
        real_loss = trainer.loss
        trainer.loss = lambda output, target: real_loss(output, target) * float("nan")
        before = {k: v.clone() for k, v in trainer._tap().state_dict().items()}
        with pytest.raises(AdversarialDivergenceError, match="segmentation loss = nan"):
            trainer.train_step(next(trainer.dataloader_train))
        assert all(torch.equal(before[k], v) for k, v in trainer._tap().state_dict().items())
    finally:
        trainer.components.shutdown()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_training_step_synchronises_once(planned_dataset, tiny_translator, single_threaded_augmentation):
    import warnings

    plans, dataset_json = _plans_and_json(planned_dataset)
    trainer = _tiny_glua()(plans, "3d_fullres", 0, dataset_json, torch.device("cuda"))
    trainer.on_train_start()
    try:
        trainer.on_train_epoch_start()
        trainer.train_step(next(trainer.dataloader_train))  # warm-up: first-step allocations
        batch = next(trainer.dataloader_train)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train_step(batch)
        torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        assert len(syncs) <= 1, [str(w.message) for w in syncs]
    finally:
        trainer.components.shutdown()


# ---------------------------------------------------------------------------------------------------- loaders
def test_target_loader_workers_come_out_of_nnunets_budget():
    from nnunet_glua.training.glua_components import split_augmentation_workers

    # nnU-Net's batch 2, GLUA's target batch 1: a third of the samples, a third of the workers
    assert split_augmentation_workers(12, 2, 1) == (8, 4)
    assert split_augmentation_workers(2, 2, 1) == (1, 1)
    assert split_augmentation_workers(3, 40, 1) == (2, 1)  # at least one worker each
    assert split_augmentation_workers(3, 1, 40) == (1, 2)
    assert split_augmentation_workers(1, 2, 1) == (1, 0)  # the target loader runs in the training process
    assert split_augmentation_workers(0, 2, 1) == (0, 0)
    for budget in range(2, 33):
        assert sum(split_augmentation_workers(budget, 2, 1)) == budget


def test_glua_starts_its_target_loader_with_nnunets_loaders_and_within_their_budget(planned_dataset,
                                                                                    tiny_translator, monkeypatch):
    monkeypatch.setenv("nnUNet_n_proc_DA", "2")  # nnU-Net caps it at the machine's core count; CI has 2
    trainer = _make(_tiny_glua(), planned_dataset, fold=0)
    trainer.on_train_start()
    try:
        train, target = trainer.dataloader_train, trainer.components.target_loader
        # started: nnU-Net drew its first batch in get_dataloaders, the target loader beside it
        assert train.initialized and target.initialized
        assert train.num_processes + target.num_processes == 2  # nnU-Net alone would start 2 training workers
        assert target.num_processes == 1
        assert trainer.dataloader_val.num_processes == 1  # nnU-Net's own: half its budget
        assert np.isfinite(trainer.train_step(next(train))["glua_align_loss"])
    finally:
        trainer.components.shutdown()
        trainer.dataloader_train._finish()
        trainer.dataloader_val._finish()
