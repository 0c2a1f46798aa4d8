"""The parts GLUATrainer composes, built and held outside nnU-Net's training loop.

- the frozen translator and its style bank (global alignment), from :mod:`nnunet_glua.style`
- the unlabelled target patch loader, from :mod:`nnunet_glua.data`
- one feature discriminator per tapped decoder stage, its optimizer and GradScaler, from
  :mod:`nnunet_glua.alignment`

What is missing is made first, before nnU-Net builds its loaders: the preprocessed target data
(:func:`prepare_target_data`), the translator and its translated source copies (:func:`prepare_translated_copies`),
on rank 0 only, behind a file lock (several folds may start at once), while every rank waits for them.
:func:`start_target_loader` starts the target loader beside nnU-Net's, from the same worker budget
(:func:`split_augmentation_workers`), and :func:`build_components` assembles the rest.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from nnunet_glua.alignment.discriminator import StageDiscriminators, update_discriminators
from nnunet_glua.data.patch_loader import augmentation_settings_from_trainer, make_augmenter, make_patch_loader
from nnunet_glua.data.target_preprocessing import preprocess_target, target_folder
from nnunet_glua.data.uda_dataset_info import load_uda_info
from nnunet_glua.training.rank_zero import run_on_rank_zero_first


class AdversarialDivergenceError(RuntimeError):
    """An adversarial or segmentation loss became NaN/inf or exploded; training stops instead of going on."""


def alignment_ramp(progress_epochs: float, ramp_epochs: float) -> float:
    """Weight multiplier in [0, 1] for the alignment loss: ``exp(-5 (1 - t)^2)`` with ``t = progress / ramp``
    clipped to [0, 1] (the usual sigmoid-shaped ramp-up), 1 after the ramp, 1 when ``ramp_epochs <= 0``."""
    if ramp_epochs <= 0:
        return 1.0
    t = min(1.0, max(0.0, progress_epochs / ramp_epochs))
    return math.exp(-5.0 * (1.0 - t) ** 2)


@dataclass
class GLUAComponents:
    """Everything GLUATrainer adds to nnU-Net's trainer state. See the module docstring."""

    device: torch.device
    translator: Any | None = None  # only when translating inside the step (translate_before_augmentation off)
    translator_checkpoint: str | None = None
    translator_identity: dict | None = None
    target_loader: Any | None = None
    target_cases: tuple[str, ...] = ()
    discriminator: nn.Module | None = None  # DDP-wrapped under DDP: use it for the discriminator's own update
    discriminator_module: StageDiscriminators | None = None  # the bare module: gap maps and alignment loss
    disc_optimizer: torch.optim.Optimizer | None = None
    disc_scaler: torch.amp.GradScaler | None = None
    settings: dict = field(default_factory=dict)

    # -------------------------------------------------------------- global alignment
    def translate(self, data: torch.Tensor, probability: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Translate each sample of ``data`` ``(B, C, *spatial)`` to the target style with probability
        ``probability`` (draws from the CPU ``generator``: which samples, which bank style); returns the new batch
        (same shape, dtype, device) and the bool vector of translated samples."""
        b = data.shape[0]
        chosen = torch.rand(b, generator=generator) < probability
        if chosen.any():
            idx = chosen.nonzero().flatten().to(data.device)
            data = data.clone()
            data[idx] = self.translator.translate_batch(data[idx], generator=generator)
        return data, chosen

    # -------------------------------------------------------------- target data
    def next_target_batch(self) -> dict:
        return next(self.target_loader)

    # -------------------------------------------------------------- discriminator
    def update_discriminator(self, source_features: Sequence[torch.Tensor], target_features: Sequence[torch.Tensor],
                             source_valid_voxels: torch.Tensor, target_valid_voxels: torch.Tensor,
                             min_valid_fraction: float, guard: Callable[[torch.Tensor], torch.Tensor] | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of the discriminators (:func:`~nnunet_glua.alignment.discriminator.update_discriminators`)."""
        return update_discriminators(self.discriminator, self.disc_optimizer, self.disc_scaler, source_features,
                                     target_features, source_valid_voxels, target_valid_voxels, min_valid_fraction,
                                     guard)

    # -------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict:
        state: dict[str, Any] = {"settings": dict(self.settings), "translator_checkpoint": self.translator_checkpoint,
                                 "translator_identity": self.translator_identity}
        if self.discriminator_module is not None:
            state["discriminator"] = self.discriminator_module.state_dict()
            state["disc_optimizer"] = self.disc_optimizer.state_dict()
            state["disc_scaler"] = self.disc_scaler.state_dict() if self.disc_scaler is not None else None
        return state

    def load_state_dict(self, state: dict) -> None:
        saved_settings = state.get("settings", {})
        changed = {k: (saved_settings[k], v) for k, v in self.settings.items()
                   if k in saved_settings and saved_settings[k] != v}
        if changed:
            raise RuntimeError("the checkpoint was trained with other GLUA settings; resume with the trainer class "
                               "that wrote it. Differences (checkpoint, now): " + str(changed))
        saved_id = state.get("translator_identity")
        now_id = self.translator_identity
        if saved_id is not None and now_id is not None and saved_id != now_id:
            raise RuntimeError(f"the checkpoint was trained with translator {saved_id}, but {now_id} is loaded "
                               f"now; resuming would mix two target-style generators")
        if self.discriminator_module is not None:
            if "discriminator" not in state:
                raise RuntimeError("the checkpoint has no feature discriminator state but this trainer aligns features")
            self.discriminator_module.load_state_dict(state["discriminator"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
            if self.disc_scaler is not None and state.get("disc_scaler") is not None:
                self.disc_scaler.load_state_dict(state["disc_scaler"])

    def describe(self) -> str:
        lines = ["GLUA components:"]
        lines.append(f"  translator: {self.translator_checkpoint or 'off'}")
        lines.append(f"  target loader: {len(self.target_cases)} unlabelled target cases" if self.target_loader
                     else "  target loader: off")
        if self.discriminator_module is not None:
            n = sum(p.numel() for p in self.discriminator_module.parameters())
            lines.append(f"  feature discriminators: {len(self.discriminator_module.stages)} stage(s), {n} parameters")
        lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        return "\n".join(lines)

    def shutdown(self) -> None:
        finish = getattr(self.target_loader, "_finish", None)
        if finish is not None:
            finish()


def _rank_zero_first(trainer, lock_path: Path, what: str, work: Callable[[], object]) -> None:
    """Run ``work()`` on rank 0 under a file lock (other processes, e.g. other folds, may want the same thing) and
    return on every DDP rank once it is done; ``what`` names it in errors. The other ranks wait outside any
    collective (see :mod:`nnunet_glua.training.rank_zero`): the work can outlast the process group's timeout."""
    run_on_rank_zero_first(work, lock_path, what, distributed=trainer.is_ddp)


def build_lock(trainer) -> Path:
    """The lock file behind which the target data, the translator and the translated copies of one dataset, plans
    and configuration are built (shared by every fold and rank)."""
    dataset, plans = trainer.plans_manager.dataset_name, trainer.plans_manager.plans_name
    return Path(os.environ["nnUNet_results"]) / dataset / f".glua_build_{plans}_{trainer.configuration_name}.lock"


def _ensure_translator(trainer, lock: Path) -> None:
    """Train the style translator on rank 0 if it does not exist yet (with the trainer's translator configuration and
    the run's translator seed); every rank returns once it exists."""
    from nnunet_glua.style.integration import ensure_translator

    _rank_zero_first(trainer, lock, "building the style translator", lambda: ensure_translator(
        trainer.plans_manager.dataset_name, trainer.configuration_name, trainer.plans_manager.plans_name,
        config=trainer.translator_config(), device=trainer.device, seed=trainer.random_streams.seed_of("translator"),
        log=trainer.print_to_log_file))


def adaptation_info(trainer):
    """The trainer's dataset's GLUA description, refused unless it is an adaptation dataset whose unlabelled target
    training cases do not include a target test case."""
    dataset = trainer.plans_manager.dataset_name
    info = load_uda_info(dataset)
    if info.role != "adaptation":
        raise RuntimeError(f"{dataset} is a {info.role!r} dataset (dataset.json 'glua' block); "
                           f"{trainer.__class__.__name__} needs an adaptation dataset with unlabelled target images")
    leaked = sorted(set(info.target_training_cases) & set(info.target_test_cases))
    if leaked:
        raise RuntimeError(f"{info.raw_folder / 'dataset.json'}: target test cases {leaked} are also listed as "
                           f"unlabelled training cases; test data must never be used for training")
    return info


def split_augmentation_workers(budget: int, source_batch: int, target_batch: int) -> tuple[int, int]:
    """(source workers, target workers): nnU-Net's worker budget of its training loader (``budget``,
    ``get_allowed_n_proc_DA()``) shared between the source loader and the target loader in proportion to the
    samples each augments per step, so GLUA starts no more augmentation processes than nnU-Net would. Each loader
    gets at least one worker when the budget has two; with a budget of 1 the target loader runs in the training
    process (0 workers), with 0 both do."""
    if budget <= 1:
        return max(budget, 0), 0
    target = round(budget * target_batch / (source_batch + target_batch))
    target = min(budget - 1, max(1, target))
    return budget - target, target


def target_batch_size(trainer) -> int:
    """Unlabelled target samples per step and rank: ``target_batch_size``, else ``target_batch_fraction`` of the
    rank's source batch (at least 1)."""
    return trainer.target_batch_size or max(1, int(trainer.batch_size * trainer.target_batch_fraction))


def prepare_target_data(trainer) -> None:
    """Preprocess the unlabelled target images with the trainer's plans if that was not done yet (rank 0, behind
    the build lock; every rank returns once they exist)."""
    dataset, plans = trainer.plans_manager.dataset_name, trainer.plans_manager.plans_name
    adaptation_info(trainer)
    _rank_zero_first(trainer, build_lock(trainer), "preprocessing the unlabelled target images",
                     lambda: preprocess_target(dataset, trainer.configuration_name, plans))


def start_target_loader(trainer, num_processes: int):
    """The augmented unlabelled target patch loader (nnU-Net's augmentation, ``num_processes`` workers seeded from
    the ``target_loader`` stream; 0: in this process), with its first batch requested so that its workers start
    now, like nnU-Net's loaders. Needs :func:`prepare_target_data` first."""
    dataset, plans = trainer.plans_manager.dataset_name, trainer.plans_manager.plans_name
    info = adaptation_info(trainer)
    loader = make_patch_loader(target_folder(dataset, trainer.configuration_name, plans, split="train"),
                               trainer.configuration_manager, batch_size=target_batch_size(trainer),
                               identifiers=tuple(info.target_training_cases),
                               forbidden_identifiers=info.target_test_cases,
                               settings=augmentation_settings_from_trainer(trainer), trainer=type(trainer))
    augmenter = make_augmenter(loader, num_processes=num_processes, pin_memory=trainer.device.type == "cuda",
                               worker_seeds=lambda n: trainer.random_streams.worker_seeds(
                                   "target_loader", n, trainer.current_epoch))
    next(augmenter)  # nnU-Net starts its loaders' workers the same way, by drawing (and dropping) a first batch
    return augmenter


def build_components(trainer, target_loader=None) -> GLUAComponents:
    """Build the GLUA parts for an initialised ``GLUATrainer`` (network, device, plans, dataset known) whose
    loaders exist: ``target_loader`` is :func:`start_target_loader`'s (needed with feature alignment)."""
    info = adaptation_info(trainer)
    target_cases = tuple(info.target_training_cases)

    comp = GLUAComponents(device=trainer.device)
    comp.settings = {k: getattr(trainer, k) for k in (
        "use_translation", "translate_probability", "use_feature_alignment", "mask_ratio", "soft_mask",
        "soft_mask_temperature", "lambda_align", "disc_width", "disc_layers", "structure_shift",
        "structure_shift_probability")}
    comp.settings["feature_stages"] = trainer._tap().feature_stages
    lock = build_lock(trainer)

    if trainer.use_feature_alignment:
        if target_loader is None:
            raise RuntimeError("feature alignment needs the target loader of start_target_loader()")
        comp.target_loader = target_loader
        comp.target_cases = target_cases

        tap = trainer._tap()
        dims = len(trainer.configuration_manager.patch_size)
        module = StageDiscriminators(tap.stage_channels(), dims, trainer.disc_width, trainer.disc_layers)
        module = module.to(trainer.device)
        comp.discriminator_module = module
        if trainer.is_ddp:
            device_ids = [trainer.device.index] if trainer.device.type == "cuda" else None
            comp.discriminator = DDP(module, device_ids=device_ids)
        else:
            comp.discriminator = module
        # fused on CUDA: its AMP step skips a non-finite update on the device, without a host synchronisation
        comp.disc_optimizer = torch.optim.Adam(module.parameters(), lr=trainer.disc_lr, betas=trainer.disc_betas,
                                               fused=trainer.device.type == "cuda")
        comp.disc_scaler = torch.amp.GradScaler("cuda") if trainer.device.type == "cuda" else None

    if trainer.use_translation:
        translates_in_step = not trainer.translate_before_augmentation
        translator, comp.translator_checkpoint = _translator_of(trainer, lock, on_device=translates_in_step)
        comp.translator_identity = translator.identity_dict()
        if translates_in_step:
            comp.translator = translator
    trainer._loaded_translator = None  # the copies are written: a translator held for them is not needed any more
    return comp


def _translator_of(trainer, lock: Path, on_device: bool) -> tuple[Any, str]:
    """The run's translator and its checkpoint path, trained first if missing, loaded once per process.

    ``on_device``: on the trainer's device, for translating there; otherwise on the CPU, where it costs no
    accelerator memory (enough for its identity). A translator already loaded on the device serves both."""
    from nnunet_glua.style.integration import load_translator_for

    # every rank calls this at the same points (the build step below waits for rank 0), so ranks agree on hits
    cached = trainer._loaded_translator
    if cached is not None and (cached[0].device == trainer.device or not on_device):
        return cached
    _ensure_translator(trainer, lock)
    info = load_uda_info(trainer.plans_manager.dataset_name)
    loaded = load_translator_for(trainer.plans_manager.dataset_name, trainer.configuration_name,
                                 trainer.plans_manager.plans_name,
                                 device=trainer.device if on_device else torch.device("cpu"),
                                 forbidden_cases=info.target_test_cases)
    trainer._loaded_translator = loaded
    return loaded


def prepare_translated_copies(trainer) -> Path:
    """Make sure the translator and the translated copies of every labelled source case exist
    (:mod:`nnunet_glua.style.translated_copies`; built on rank 0 behind the build lock, on the trainer's device) and
    return their folder. Called before nnU-Net builds its loaders, which sample the copies."""
    from nnunet_glua.style.translated_copies import copies_folder, copies_key, write_translated_copies
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    plans_identifier = trainer.plans_manager.plans_name
    configuration = trainer.configuration_name
    lock = build_lock(trainer)
    # only rank 0 writes copies (on the device); the other ranks need just the translator's identity for the key
    translator, _ = _translator_of(trainer, lock, on_device=trainer.local_rank == 0)
    source = trainer.preprocessed_dataset_folder
    cases = sorted(infer_dataset_class(source).get_identifiers(source))
    seed = trainer.random_streams.seed_of("translator")
    key = copies_key(translator.identity_dict(), cases, trainer.translated_styles_per_case, seed)
    folder = copies_folder(trainer.preprocessed_dataset_folder_base, plans_identifier, configuration, key)
    _rank_zero_first(trainer, lock, "translating the labelled source cases", lambda: write_translated_copies(
        source, folder, key, translator, cases, trainer.translated_styles_per_case, seed,
        trainer.configuration_manager.patch_size, log=trainer.print_to_log_file))
    trainer.print_to_log_file(f"translated source copies: {folder} ({len(cases)} cases x "
                              f"{trainer.translated_styles_per_case} styles, sampled with probability "
                              f"{trainer.translate_probability})")
    return folder
