"""GLUATrainer: nnU-Net training with Global-Local Union Alignment.

One training step (``train_step``):
  1. **Global alignment**: each source sample of nnU-Net's (augmented) batch is translated to the target style
     with the frozen translator, one target style per volume drawn from the style bank, with probability
     ``translate_probability`` (the rest stay untranslated, so the network keeps seeing real source images too).
     Then, for a ``structure_shift_probability`` fraction of the samples, every labelled structure gets its own
     random intensity offset (:mod:`~nnunet_glua.training.structure_shift`; source labels only).
  2. A batch of unlabelled target patches comes from the target loader (random locations, nnU-Net's
     augmentation, a validity mask marking padding and the outside of the body).
  3. Source and target go through the network in ONE forward pass (concatenated along the batch axis; nnU-Net's
     U-Nets use instance normalisation, so the samples do not mix). One pass keeps DDP's gradient hooks firing once
     per parameter and lets ``torch.compile`` see one graph. The supervised nnU-Net loss (deep supervision as
     usual) uses the source part only.
  4. **Local alignment**: the feature discriminator scores every location of the chosen decoder stage. For each
     target sample, the valid locations with the largest gap (top fraction ``mask_ratio``, or soft weights) get the
     alignment loss that pushes them towards the source domain; gradient reaches only them
     (:func:`~nnunet_glua.alignment.losses.masked_alignment_loss`). Its weight ramps up over
     ``align_rampup_epochs``.
  5. The discriminator is updated on detached features: source = the randomly located (not
     foreground-oversampled) samples of the translated source batch, target = the target batch, so both domains
     are sampled alike and the discriminator learns style, not content.

``self.network`` is nnU-Net's network wrapped (compile / DDP) as usual; underneath it is a
:class:`~nnunet_glua.training.feature_unet.FeatureTapUNet` that shares the U-Net's encoder and decoder, has the
same state-dict keys and returns plain logits unless asked for features, so nnU-Net's validation, checkpoints,
``nnUNetv2_predict`` and the export to plain nnU-Net work unchanged.

Start it from the source-only model of the same fold (``nnUNetv2_train ... -tr GLUATrainer -pretrained_weights
<SourceOnlyTrainer fold>/checkpoint_final.pth``): the network then already knows the anatomy and the steps above
only have to make it hold under the target's appearance. On the phantom this raised the target Dice from 0.29 (750
steps from scratch) to 0.46 (375 steps from the source-only model; docs/benchmarks.md); the demo and
``glua_benchmark`` train that way.

Hyper-parameters are class attributes; variants (ablations, schedules) are generated from the methods and schedules
tables (:mod:`nnunet_glua.training.methods`, :mod:`~nnunet_glua.training.schedules`) in
:mod:`nnunet_glua.training.variants`. Every random draw comes from the run's seeded streams
(:mod:`~nnunet_glua.training.random_streams`), saved in every checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import autocast

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_glua.alignment.local_mask import gap_map, soft_gap_weights, top_fraction_mask, valid_feature_locations
from nnunet_glua.alignment.losses import masked_alignment_loss
from nnunet_glua.data.pseudo_labelled_target import pseudo_labelled_samples
from nnunet_glua.data.translated_source import SourceWithTranslatedCopies, translated_samples
from nnunet_glua.training.augmentation import AppendValidityChannel, add_transforms, split_validity
from nnunet_glua.training.feature_unet import FeatureTapUNet, decoder_stage_at_stride
from nnunet_glua.training.seeded_trainer import SeededTrainer
from nnunet_glua.training.self_training import SelfTraining
from nnunet_glua.training.structure_shift import StructureShift
from nnunet_glua.training.glua_components import (AdversarialDivergenceError, GLUAComponents, alignment_ramp,
                                                  build_components, prepare_target_data, prepare_translated_copies,
                                                  split_augmentation_workers, start_target_loader,
                                                  target_batch_size)

GLUA_CHECKPOINT_VERSION = 1

# per-epoch values added to nnU-Net's logger (it only accepts registered keys, one value per epoch)
_LOG_KEYS = ("glua_seg_loss", "glua_align_loss", "glua_disc_loss", "glua_align_weight", "glua_mask_fraction",
             "glua_disc_acc_source", "glua_disc_acc_target", "glua_translated_fraction")


class GLUATrainer(SelfTraining, StructureShift, SeededTrainer):
    """nnU-Net trainer with global (style transfer) and local (masked feature adversarial) alignment."""

    # --- global alignment ---
    use_translation: bool = True
    translate_probability: float = 0.9
    # True: source images are translated before nnU-Net's augmentation: nnU-Net's loader samples translated copies of
    # the preprocessed source cases (translated_styles_per_case bank styles each), written once before training;
    # False: the augmented batch is translated inside the training step (measured side by side: docs/benchmarks.md)
    translate_before_augmentation: bool = True
    translated_styles_per_case: int = 4
    # when no translator exists yet, the trainer trains one: TranslatorConfig defaults changed by these overrides
    # (any TranslatorConfig field; "network" as a dict is merged), for ``translator_iterations`` (None: the config's)
    translator_config_overrides: dict | None = None
    translator_iterations: int | None = None
    # after translation, each labelled source structure of a structure_shift_probability fraction of the samples
    # gets its own random intensity offset in [-structure_shift, structure_shift] (normalised units; 0 = off), so
    # that a structure whose contrast to its neighbours flips between modalities is still recognised; both
    # attributes come from StructureShift (nnunet_glua.training.structure_shift; our addition to the method)

    # --- local alignment ---
    use_feature_alignment: bool = True
    # decoder stages to align (Python indexing into decoder.stages, -1 = full resolution); None: the stage at
    # feature_stride_auto of the input resolution, or the coarsest one the network has
    feature_stages: tuple[int, ...] | None = None
    feature_stride_auto: int = 4
    mask_ratio: float = 0.25  # top fraction of each target sample's valid locations; 1.0 = global alignment
    soft_mask: bool = False  # weight every valid location by its gap instead of a hard top fraction
    soft_mask_temperature: float = 1.0
    lambda_align: float = 0.01
    align_rampup_epochs: float = 0.1  # < 1: a fraction of num_epochs; >= 1: epochs
    target_batch_size: int | None = None  # None: target_batch_fraction of the source batch size (at least 1)
    target_batch_fraction: float = 0.5
    min_valid_fraction: float = 0.5  # feature location valid if this much of its voxels lies inside the image

    # --- feature discriminator ---
    disc_width: int = 64
    disc_layers: int = 3
    disc_lr: float = 1e-4
    disc_betas: tuple[float, float] = (0.9, 0.99)

    # --- safety ---
    max_adversarial_loss: float = 1e3  # an alignment or discriminator loss above this counts as diverged

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.configuration_manager.previous_stage_name is not None or "cascade" in configuration:
            raise RuntimeError(
                f"{self.__class__.__name__} does not support the cascade configuration {configuration!r}: the "
                f"unlabelled target domain has no low-resolution predictions to feed the second stage. Use "
                f"3d_fullres or 2d (or 3d_lowres on its own).")
        if self.label_manager.has_regions:
            raise RuntimeError(f"{self.__class__.__name__} needs one label per voxel; this dataset trains regions, "
                               f"which GLUA does not support")
        if not (self.use_translation or self.use_feature_alignment):
            raise ValueError(f"{self.__class__.__name__}: enable use_translation, use_feature_alignment or both")
        if self.probabilistic_oversampling:
            raise ValueError(f"{self.__class__.__name__}: probabilistic_oversampling hides which samples are placed "
                             f"at random, which the feature discriminator needs; keep it False")
        self.components: GLUAComponents | None = None
        self._pending_glua_state: dict | None = None
        self._step_in_epoch = 0
        self._copies_folder: Path | None = None
        self._loaded_translator = None  # (translator, checkpoint) while set-up needs it (glua_components)
        self._target_loader = None  # from get_dataloaders to prepare_training
        self._step_divergence: dict[str, torch.Tensor] = {}
        self.check_self_training()

    def _set_batch_size_and_oversample(self) -> None:
        """nnU-Net's per-rank batch size and oversampling, with one randomly placed sample kept per rank.

        nnU-Net forces foreground into the last ``round(B * p)`` samples of each batch and, under DDP, sets ``p`` per
        rank; with small per-rank batches a rank can get ``p = 1`` and no randomly placed sample at all. The
        discriminator's source samples must be randomly placed (foreground-forced patches differ from target patches
        in content, not style), so ``p`` is lowered just enough to leave one."""
        super()._set_batch_size_and_oversample()
        if not self.use_feature_alignment or self._num_randomly_sampled(self.batch_size) >= 1:
            return
        before = self.oversample_foreground_percent
        self.oversample_foreground_percent = (self.batch_size - 1) / self.batch_size
        self.print_to_log_file(f"foreground oversampling of this rank lowered from {before} to "
                               f"{self.oversample_foreground_percent:.3f}: one sample of its batch of "
                               f"{self.batch_size} stays randomly placed for the feature discriminator")

    @classmethod
    def translator_config(cls):
        """The :class:`~nnunet_glua.style.config.TranslatorConfig` a missing translator is trained with: the
        defaults changed by ``translator_config_overrides`` and ``translator_iterations`` (``None`` when neither
        is set: the defaults)."""
        from nnunet_glua.style.config import TranslatorConfig

        overrides = dict(cls.translator_config_overrides or {})
        if cls.translator_iterations is not None:
            overrides["iterations"] = int(cls.translator_iterations)
        return TranslatorConfig().with_overrides(overrides) if overrides else None

    # ------------------------------------------------------------------ nnU-Net's pieces, extended
    @classmethod
    def get_training_transforms(cls, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False, foreground_labels=None,
                                regions=None, ignore_label=None):
        """nnU-Net's augmentation with the structure shift before its intensity transforms and a validity channel
        (:mod:`~nnunet_glua.training.augmentation`) appended to the segmentation."""
        pipeline = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        return add_transforms(pipeline, before_label_removal=AppendValidityChannel(), owner=cls.__name__)

    def configure_optimizers(self):
        """nnU-Net's optimizer and schedule; on CUDA the SGD is the fused implementation (the same update), whose
        AMP step skips a non-finite step on the device instead of waiting for the host to decide."""
        optimizer, scheduler = super().configure_optimizers()
        if self.device.type != "cuda":
            return optimizer, scheduler
        fused = type(optimizer)(self.network.parameters(), **{**optimizer.defaults, "fused": True, "foreach": None})
        return fused, type(scheduler)(fused, self.initial_lr, self.num_epochs)

    def labelled_training_dataset(self, dataset_tr):
        """With translation before augmentation, the training cases come with their translated copies
        (:class:`~nnunet_glua.data.translated_source.SourceWithTranslatedCopies`)."""
        if self._copies_folder is not None:
            dataset_tr = SourceWithTranslatedCopies(dataset_tr, self._copies_folder, self.translated_styles_per_case,
                                                    self.translate_probability)
        return dataset_tr

    # ------------------------------------------------------------------ network
    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        """nnU-Net's network, viewed through :class:`FeatureTapUNet` (same parameters and state-dict keys, same
        outputs). nnU-Net compiles and DDP-wraps what this returns, so the features come out of the compiled,
        DDP-wrapped forward."""
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        stages = cls.feature_stages
        if stages is None:
            stages = (decoder_stage_at_stride(configuration_manager.network_arch_init_kwargs["strides"],
                                              cls.feature_stride_auto),)
        return FeatureTapUNet(unet, stages)

    def _tap(self) -> FeatureTapUNet:
        mod = self.network.module if self.is_ddp else self.network
        return getattr(mod, "_orig_mod", mod)

    # ------------------------------------------------------------------ set-up
    def initialize(self):
        if self.was_initialized:
            return
        super().initialize()
        for key in _LOG_KEYS:
            self.logger.local_logger.my_fantastic_logging.setdefault(key, [])

    def on_train_start(self):
        # before nnU-Net builds its loaders: they sample the translated copies, and the target loader starts with them
        if self.use_translation and self.translate_before_augmentation:
            self._copies_folder = prepare_translated_copies(self)
        if self.use_feature_alignment:
            prepare_target_data(self)
        super().on_train_start()

    def _augmentation_workers(self) -> tuple[int, int]:
        """(nnU-Net's training loader, target loader) workers: nnU-Net's budget shared by their samples per step."""
        return split_augmentation_workers(get_allowed_n_proc_DA(), self.batch_size, target_batch_size(self))

    def training_loader_workers(self) -> int | None:
        if not self.use_feature_alignment or get_allowed_n_proc_DA() == 0:
            return None
        return self._augmentation_workers()[0]

    def get_dataloaders(self):
        loaders = super().get_dataloaders()
        if self.use_feature_alignment:
            self._target_loader = start_target_loader(self, self._augmentation_workers()[1])
        return loaders

    def prepare_training(self) -> None:
        self.components = build_components(self, self._target_loader)
        self._target_loader = None  # the components own it now (and finish it)
        if self._pending_glua_state is not None:
            self.components.load_state_dict(self._pending_glua_state)
            self._pending_glua_state = None
        self.print_to_log_file(self.components.describe(), also_print_to_console=True)

    def on_train_end(self):
        super().on_train_end()
        if self.components is not None:
            self.components.shutdown()

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._step_in_epoch = 0
        if self.components is not None and self.components.discriminator is not None:
            self.components.discriminator.train()

    # ------------------------------------------------------------------ one step
    def _current_align_weight(self) -> float:
        progress = self.current_epoch + self._step_in_epoch / max(1, self.num_iterations_per_epoch)
        ramp_epochs = self.align_rampup_epochs * self.num_epochs if self.align_rampup_epochs < 1 \
            else self.align_rampup_epochs
        return self.lambda_align * alignment_ramp(progress, ramp_epochs)

    def _num_randomly_sampled(self, batch_size: int) -> int:
        # nnU-Net forces foreground into the LAST round(B * p) samples of each batch; the others are placed at random
        return round(batch_size * (1 - self.oversample_foreground_percent))

    def train_step(self, batch: dict) -> dict:
        comp = self.components
        target, valid_source = split_validity(batch["target"])
        data = batch["data"].to(self.device, non_blocking=True)
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        valid_source = valid_source.to(self.device, non_blocking=True)
        b = data.shape[0]
        self._step_divergence = {}

        # a CPU bool per sample: which samples are translated copies (or, below, translated in this step)
        translated_keys = translated_samples(batch["keys"])
        translated_fraction = float(translated_keys.mean())
        translated = torch.from_numpy(translated_keys)
        if comp.translator is not None:
            data, translated = comp.translate(data, self.translate_probability, self.random_streams.generator("style"))
            translated_fraction = float(translated.float().mean())  # a CPU tensor: no device to wait for
        data = self.shift_structures(data, target, self.random_streams.generator("structure_shift"))

        align = comp.discriminator is not None
        if align:
            tgt = comp.next_target_batch()
            valid_target = tgt["valid"].to(self.device, non_blocking=True)
            network_input = torch.cat((data, tgt["data"].to(self.device, non_blocking=True).to(data.dtype)), 0)
        else:
            network_input = data
        align_weight = self._current_align_weight() if align else 0.0

        self.optimizer.zero_grad(set_to_none=True)
        amp = autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()
        nothing = torch.full((), float("nan"), device=self.device)
        align_loss = mask_fraction = nothing
        with amp:
            if align:
                # target samples stop at the aligned stage: no finer decoder stage, no segmentation head for them
                output, features = self.network(network_input, return_features=True, num_segmented=b)
            else:
                output = self.network(network_input)
            seg_loss = self._guarded(self.loss(output, target), "segmentation")
            total = seg_loss
            if align:
                align_loss, mask_fraction = self._alignment_loss(features, b, valid_target)
                total = total + align_weight * self._guarded(align_loss, "alignment")
        self._backward_and_step(total)

        disc_loss = acc_s = acc_t = nothing
        if align:
            n_rand = self._num_randomly_sampled(b)
            source_valid = valid_source[:n_rand]
            # the discriminator's source domain: the translated source (with translation), never a real target
            # sample of self-training
            source_side = ~torch.from_numpy(pseudo_labelled_samples(batch["keys"][:n_rand]))
            if self.use_translation:
                source_side &= translated[:n_rand]
            source_valid = source_valid & source_side.to(self.device, non_blocking=True).view(
                -1, *([1] * (source_valid.ndim - 1)))
            disc_loss, acc_s, acc_t = comp.update_discriminator(
                [f[:n_rand].detach() for f in features], [f[b:].detach() for f in features], source_valid,
                valid_target, self.min_valid_fraction, guard=lambda loss: self._guarded(loss, "discriminator"))

        # CUDA: the flags of this step's guards, agreed over the ranks on the device (the CPU checked them already)
        diverged = torch.zeros(1, device=self.device)
        if self._step_divergence:
            diverged = torch.stack(list(self._step_divergence.values())).any().float().reshape(1)
            if self.is_ddp:
                dist.all_reduce(diverged, op=dist.ReduceOp.MAX)
        seg_value, align_value, disc_value, acc_s_value, acc_t_value, mask_value, diverged_value = \
            self._read_step_values(seg_loss.detach(), align_loss.detach(), disc_loss, acc_s, acc_t, mask_fraction,
                                   diverged[0])
        if diverged_value > 0:
            self._raise_diverged({"segmentation": seg_value, "alignment": align_value,
                                  "discriminator": disc_value}, on_this_rank=True)
        self._step_in_epoch += 1
        return {"loss": np.float32(seg_value), "glua_seg_loss": seg_value, "glua_align_loss": align_value,
                "glua_disc_loss": disc_value, "glua_align_weight": align_weight, "glua_mask_fraction": mask_value,
                "glua_disc_acc_source": acc_s_value, "glua_disc_acc_target": acc_t_value,
                "glua_translated_fraction": translated_fraction}

    @staticmethod
    def _read_step_values(*values: torch.Tensor) -> list[float]:
        """The step's one host-device synchronisation: its 0-d device tensors as Python floats, read together."""
        return torch.stack([v.float() for v in values]).cpu().tolist()

    def _alignment_loss(self, features: list[torch.Tensor], b: int,
                        valid_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked alignment loss of the target part of ``features`` (samples ``b:``), averaged over the tapped
        stages, and the fraction of valid target locations selected; both 0-d tensors on the device."""
        disc = self.components.discriminator_module
        disc.requires_grad_(False)
        terms, fractions = [], []
        for stage_disc, f in zip(disc.stages, features):
            f_t = f[b:]
            valid_t = valid_feature_locations(valid_target, tuple(f_t.shape[2:]), self.min_valid_fraction)
            with torch.no_grad():
                gap = gap_map(stage_disc(f_t.detach()))
            if self.soft_mask:
                weights = soft_gap_weights(gap, valid_t, self.soft_mask_temperature)
                selected = weights > 0
            else:
                weights = selected = top_fraction_mask(gap, valid_t, self.mask_ratio)
            fractions.append(selected.sum() / valid_t.sum().clamp_min(1))
            terms.append(masked_alignment_loss(stage_disc, f_t, weights))
        disc.requires_grad_(True)
        return torch.stack(terms).mean(), torch.stack(fractions).float().mean()

    def _backward_and_step(self, total: torch.Tensor) -> None:
        if self.grad_scaler is not None:
            self.grad_scaler.scale(total).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()

    def _guarded(self, loss: torch.Tensor, name: str) -> torch.Tensor:
        """``loss``, checked for divergence (NaN/inf, or an adversarial loss above ``max_adversarial_loss``) before
        it can change a weight. On the CPU the check happens here and raises :class:`AdversarialDivergenceError`
        (under DDP after all ranks agreed). On CUDA it stays on the device, so the host never waits: a diverged loss
        becomes NaN, the AMP GradScaler skips that optimizer step, and the step raises after its one
        synchronisation."""
        bad = self._diverged(name, loss.detach())
        if self.grad_scaler is None:
            flag = bad.float().reshape(1)
            if self.is_ddp:
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() > 0:
                self._raise_diverged({name: float(loss.detach())}, on_this_rank=bool(bad))
            return loss
        self._step_divergence[name] = bad
        return torch.where(bad, torch.full_like(loss, float("nan")), loss)

    def _diverged(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """The divergence rule, a bool tensor like ``loss``: not finite, or, for an adversarial loss (any but
        ``"segmentation"``), larger than ``max_adversarial_loss`` in magnitude."""
        bad = ~torch.isfinite(loss)
        if name != "segmentation":
            bad = bad | (loss.abs() > self.max_adversarial_loss)
        return bad

    def _raise_diverged(self, losses: dict[str, float], on_this_rank: bool) -> None:
        bad = {k: v for k, v in losses.items() if bool(self._diverged(k, torch.tensor(v)))}
        where = f"epoch {self.current_epoch}, iteration {self._step_in_epoch}"
        detail = ", ".join(f"{k} loss = {v}" for k, v in bad.items()) if on_this_rank and bad else "on another rank"
        msg = (f"GLUA training diverged at {where}: {detail}. Lower lambda_align or disc_lr (subclass "
               f"{self.__class__.__name__}), or resume from the last checkpoint with --c.")
        self.print_to_log_file(msg)
        raise AdversarialDivergenceError(msg)

    # ------------------------------------------------------------------ logging
    def on_train_epoch_end(self, train_outputs: list[dict]):
        super().on_train_epoch_end(train_outputs)
        outputs = collate_outputs(train_outputs)
        for key in _LOG_KEYS:
            values = np.asarray(outputs[key], dtype=np.float64)
            if self.is_ddp:
                gathered = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, values)
                values = np.concatenate(gathered)
            finite = values[np.isfinite(values)]
            self.logger.log(key, float(finite.mean()) if finite.size else float("nan"), self.current_epoch)

    def on_epoch_end(self):
        epoch = self.current_epoch
        get = self.logger.get_value
        self.print_to_log_file(
            "GLUA: translated fraction {:.2f}, align weight {:.4g}, align loss {:.4f}, disc loss {:.4f}, disc acc "
            "src/tgt {:.2f}/{:.2f}, mask fraction {:.3f}".format(
                get("glua_translated_fraction", epoch), get("glua_align_weight", epoch), get("glua_align_loss", epoch),
                get("glua_disc_loss", epoch), get("glua_disc_acc_source", epoch), get("glua_disc_acc_target", epoch),
                get("glua_mask_fraction", epoch)))
        super().on_epoch_end()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict:
        """nnU-Net's entries plus a ``glua`` entry: discriminator, its optimizer and GradScaler, translator identity
        and alignment settings (the random streams are the base class's)."""
        extras = super().checkpoint_extras()
        if self.components is not None:
            extras["glua"] = {"format_version": GLUA_CHECKPOINT_VERSION, **self.components.state_dict()}
        return extras

    def restore_checkpoint_extras(self, checkpoint: dict, filename: str) -> None:
        super().restore_checkpoint_extras(checkpoint, filename)
        state = checkpoint.get("glua")
        if state is None:
            self.print_to_log_file(f"{filename} holds no GLUA state (e.g. a source-only checkpoint): the "
                                   f"discriminator and the alignment schedule start fresh")
        elif state.get("format_version", 0) > GLUA_CHECKPOINT_VERSION:
            raise RuntimeError(f"{filename}: GLUA state format {state.get('format_version')} is newer than this "
                               f"nnunet-glua understands ({GLUA_CHECKPOINT_VERSION}); upgrade nnunet-glua")
        # components are built in on_train_start, after nnU-Net restores the checkpoint (--c); applied there
        self._pending_glua_state = state
