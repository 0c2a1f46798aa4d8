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

import math

import numpy as np
import torch
import torch.distributed as dist
from torch import autocast

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_glua.alignment.local_mask import gap_map, soft_gap_weights, top_fraction_mask, valid_feature_locations
from nnunet_glua.alignment.losses import masked_alignment_loss
from nnunet_glua.training.feature_unet import FeatureTapUNet, decoder_stage_at_stride
from nnunet_glua.training.seeded_trainer import SeededTrainer
from nnunet_glua.training.structure_shift import StructureShift
from nnunet_glua.training.glua_components import (AdversarialDivergenceError, GLUAComponents, alignment_ramp,
                                                  build_components)

GLUA_CHECKPOINT_VERSION = 1

# per-epoch values added to nnU-Net's logger (it only accepts registered keys, one value per epoch)
_LOG_KEYS = ("glua_seg_loss", "glua_align_loss", "glua_disc_loss", "glua_align_weight", "glua_mask_fraction",
             "glua_disc_acc_source", "glua_disc_acc_target", "glua_translated_fraction")


class GLUATrainer(StructureShift, SeededTrainer):
    """nnU-Net trainer with global (style transfer) and local (masked feature adversarial) alignment."""

    # --- global alignment ---
    use_translation: bool = True
    translate_probability: float = 0.9
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
        self.check_structure_shift()
        if not (self.use_translation or self.use_feature_alignment):
            raise ValueError(f"{self.__class__.__name__}: enable use_translation, use_feature_alignment or both")
        self.components: GLUAComponents | None = None
        self._pending_glua_state: dict | None = None
        self._step_in_epoch = 0

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

    def prepare_training(self) -> None:
        self.components = build_components(self)
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
        return max(1, round(batch_size * (1 - self.oversample_foreground_percent)))

    def train_step(self, batch: dict) -> dict:
        comp = self.components
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        b = data.shape[0]

        translated_fraction = 0.0
        if comp.translator is not None:
            data, translated = comp.translate(data, self.translate_probability,
                                              self.random_streams.generator("style"))
            translated_fraction = float(translated.float().mean())
        data = self.shift_structures(data, target, self.random_streams.generator("structure_shift"))

        align = comp.discriminator is not None
        if align:
            tgt = comp.next_target_batch()
            x_t = tgt["data"].to(self.device, non_blocking=True)
            valid_t_vox = tgt["valid"].to(self.device, non_blocking=True)
            network_input = torch.cat((data, x_t.to(data.dtype)), 0)
        else:
            network_input = data
        align_weight = self._current_align_weight() if align else 0.0

        self.optimizer.zero_grad(set_to_none=True)
        amp = autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()
        align_loss = torch.zeros((), device=self.device)
        mask_fraction = 0.0
        with amp:
            if align:
                output, features = self.network(network_input, return_features=True)
                output = [o[:b] for o in output] if isinstance(output, (list, tuple)) else output[:b]
            else:
                output = self.network(network_input)
            seg_loss = self.loss(output, target)
            if align:
                disc = comp.discriminator_module
                disc.requires_grad_(False)
                align_terms = []
                for stage_disc, f in zip(disc.stages, features):
                    f_t = f[b:]
                    valid_t = valid_feature_locations(valid_t_vox, tuple(f_t.shape[2:]), self.min_valid_fraction)
                    with torch.no_grad():
                        gap = gap_map(stage_disc(f_t.detach()))
                    if self.soft_mask:
                        weights = soft_gap_weights(gap, valid_t, self.soft_mask_temperature)
                        selected = weights > 0
                    else:
                        weights = selected = top_fraction_mask(gap, valid_t, self.mask_ratio)
                    mask_fraction += float(selected.sum()) / max(1, int(valid_t.sum())) / len(features)
                    align_terms.append(masked_alignment_loss(stage_disc, f_t, weights))
                disc.requires_grad_(True)
                align_loss = torch.stack(align_terms).mean()
            total = seg_loss + align_weight * align_loss

        # checked before any weight changes: a diverged step must not reach the weights
        losses = {"segmentation": seg_loss.detach()}
        if align:
            losses["alignment"] = align_loss.detach()
        self._stop_if_diverged(losses)
        self._backward_and_step(total)

        disc_loss_value = acc_s = acc_t = float("nan")
        if align:
            n_rand = self._num_randomly_sampled(b)
            disc_loss_value, acc_s, acc_t = comp.update_discriminator(
                [f[:n_rand].detach() for f in features], [f[b:].detach() for f in features], valid_t_vox,
                self.min_valid_fraction, check=lambda loss: self._stop_if_diverged({"discriminator": loss}))

        self._step_in_epoch += 1
        seg_value = losses["segmentation"]
        return {"loss": seg_value.cpu().numpy(), "glua_seg_loss": float(seg_value),
                "glua_align_loss": float(align_loss.detach()), "glua_disc_loss": disc_loss_value,
                "glua_align_weight": align_weight, "glua_mask_fraction": mask_fraction,
                "glua_disc_acc_source": acc_s, "glua_disc_acc_target": acc_t,
                "glua_translated_fraction": translated_fraction}

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

    def _stop_if_diverged(self, losses: dict[str, torch.Tensor]) -> None:
        """Raise :class:`AdversarialDivergenceError` on a NaN/inf loss, or an adversarial loss above
        ``max_adversarial_loss``, before the weights change. Under DDP the verdict is agreed across ranks first, so
        every rank raises together instead of one rank hanging in the next collective."""
        values = {k: float(v) for k, v in losses.items()}
        bad = {k: v for k, v in values.items()
               if not math.isfinite(v) or (k != "segmentation" and abs(v) > self.max_adversarial_loss)}
        flag = torch.tensor([1.0 if bad else 0.0], device=self.device)
        if self.is_ddp:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            where = f"epoch {self.current_epoch}, iteration {self._step_in_epoch}"
            detail = ", ".join(f"{k} loss = {v}" for k, v in bad.items()) or "on another rank"
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
