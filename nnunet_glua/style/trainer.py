"""Training loop of the style translator: :func:`train_translator`.

Works on two plain nnU-Net preprocessed case folders (source and target) and an output folder; knows nothing about
nnU-Net's folder layout (that is :mod:`nnunet_glua.style.integration`), so it is testable with any folders.

One iteration: sample ``batch_size`` source and target slices (:mod:`~nnunet_glua.style.slice_sampler`), run the
generators once (:func:`~nnunet_glua.style.losses.translation_pass`), update the discriminators on the detached
outputs, then the generators against the updated discriminators, then the generators' EMA. Adam for both sides with
a constant-then-linear-decay learning rate; mixed precision (float16 autocast + one ``GradScaler`` per optimiser) on
CUDA when ``config.amp``; exact float32 on the CPU.

Output folder::

    checkpoint_latest.pth    every ``checkpoint_every`` iterations, at the end, and on Ctrl-C between iterations
    checkpoint_final.pth     after the last iteration, with the style bank (this is what translation loads)
    style_bank.json          readable summary of the style bank
    translator_config.json   the configuration and identity of this run
    training_log.jsonl       loss records (see :mod:`~nnunet_glua.style.loss_log`)
    previews/                iter_XXXXXXX.png and latest.png (see :mod:`~nnunet_glua.style.preview`)

Reproducibility: with the same seed, folders and config, a CPU run gives bit-identical weights, and a run that is
interrupted and resumed gives the same weights as an uninterrupted one: the checkpoint holds networks, optimisers,
schedulers, scalers, EMA, the iteration and every RNG state (torch CPU/CUDA and both samplers' numpy generators).
CUDA runs are not bit-reproducible (cuDNN algorithm choice, atomics) but resume continues the same run.

Speed (H200, default network, 112x112 slices, batch 16): about 65-95 ms per iteration, bound by kernel launches
rather than arithmetic. ``torch.compile`` of the sub-networks was measured *slower* (83 vs 65 ms per iteration, plus
compilation), so training runs eagerly; translation, a single forward pass, does benefit and is compiled (see
:mod:`~nnunet_glua.style.translate`).
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from nnunet_glua.json_io import write_json
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.style.checkpoint import checkpoint_identity, load_checkpoint, save_checkpoint
from nnunet_glua.style.config import TranslatorConfig
from nnunet_glua.style.ema import ModelEMA
from nnunet_glua.style.identity import TranslatorIdentity
from nnunet_glua.style.loss_log import LossLog
from nnunet_glua.style.losses import discriminator_loss, generator_loss, translation_pass
from nnunet_glua.style.networks import build_discriminators, build_generators, padded_size
from nnunet_glua.style.preview import save_preview_grid
from nnunet_glua.style.slice_sampler import SliceSampler
from nnunet_glua.style.style_bank import StyleBank, build_style_bank, encode_styles

__all__ = ["train_translator", "TrainingResult", "LATEST_CHECKPOINT", "FINAL_CHECKPOINT", "MAX_DERIVED_SLICE_SIZE",
           "build_style_bank_from_folder"]

LATEST_CHECKPOINT = "checkpoint_latest.pth"
FINAL_CHECKPOINT = "checkpoint_final.pth"
#: cap for a slice size derived from the data (no plans given): larger slices cost memory without teaching style
MAX_DERIVED_SLICE_SIZE = 256
# the settings that may change when a run is resumed; everything else must equal the checkpoint's
_RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "preview_every", "log_every")


@dataclass
class TrainingResult:
    """``final_checkpoint`` is what :meth:`~nnunet_glua.style.translate.Translator.from_checkpoint` loads."""

    out_dir: Path
    final_checkpoint: Path
    iterations: int
    style_bank: StyleBank
    last_losses: dict[str, float]


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return device


def _lr_lambda(config: TranslatorConfig) -> Callable[[int], float]:
    total = config.iterations
    start = int(round(config.lr_decay_start * total))

    def factor(it: int) -> float:
        if it < start or total <= start:
            return 1.0
        frac = min(1.0, (it - start) / max(1, total - start))
        return 1.0 - (1.0 - config.lr_final_fraction) * frac

    return factor


def _rng_state(samplers: dict[str, SliceSampler]) -> dict:
    state = {"torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
             **{f"sampler_{k}": s.state_dict() for k, s in samplers.items()}}
    return state


def _restore_rng(state: dict, samplers: dict[str, SliceSampler]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, s in samplers.items():
        s.load_state_dict(state[f"sampler_{k}"])


def _check_resume_config(ckpt_cfg: TranslatorConfig, cfg: TranslatorConfig, path: Path) -> TranslatorConfig:
    """The checkpoint's config with the allowed changes of ``cfg`` applied; other differences raise."""
    theirs, mine = ckpt_cfg.to_dict(), cfg.to_dict()
    different = sorted(k for k in mine if mine[k] != theirs.get(k) and k not in _RESUMABLE_CHANGES)
    if different:
        raise ValueError(f"{path}: cannot resume with a different translator configuration (changed: {different}). "
                         f"Only {list(_RESUMABLE_CHANGES)} may change on resume; start a new run instead "
                         f"(another output folder, or --overwrite).")
    return ckpt_cfg.with_overrides({k: mine[k] for k in _RESUMABLE_CHANGES})


def _derive_slice_size(config: TranslatorConfig, source: SliceSampler) -> tuple[int, int]:
    if config.slice_size is not None:
        return int(config.slice_size[0]), int(config.slice_size[1])
    minimum = 2 * config.network.spatial_multiple
    return tuple(int(np.clip(s, minimum, MAX_DERIVED_SLICE_SIZE)) for s in source.median_inplane_shape())  # type: ignore


@torch.no_grad()
def _write_preview(folder: Path, iteration: int, ema_gens: torch.nn.Module, src_batch, tgt_batch,
                   device: torch.device, note: str) -> None:
    """``folder/iter_XXXXXXX.png`` and a copy as ``folder/latest.png`` (both written atomically)."""
    xs = torch.from_numpy(src_batch.images).to(device)
    xt = torch.from_numpy(tgt_batch.images).to(device)
    n = min(len(xs), len(xt))
    xs, xt = xs[:n], xt[:n]
    c_s, s_s = ema_gens.encode(xs, "source")
    c_t, s_t = ema_gens.encode(xt, "target")
    # each row: the source slice in the style of the target slice beside it, and vice versa
    s2t = ema_gens.decode(c_s, s_t, "target")
    t2s = ema_gens.decode(c_t, s_s, "source")
    arrays = (xs.float().cpu().numpy(), s2t.float().cpu().numpy(), xt.float().cpu().numpy(),
              t2s.float().cpu().numpy(), src_batch.body[:n], tgt_batch.body[:n], f"iteration {iteration}{note}")
    path = save_preview_grid(folder / f"iter_{iteration:07d}.png", *arrays)
    with atomic_path(folder / "latest.png") as tmp:
        shutil.copyfile(path, tmp)


def build_style_bank_from_folder(style_encoder: torch.nn.Module, target: SliceSampler, config: TranslatorConfig,
                                 device: torch.device, seed: int, progress: bool = True) -> StyleBank:
    """Encode up to ``config.style_bank_slices`` evenly spread target slices and cluster them."""
    batches = (b.images for b in target.iter_fixed(config.style_bank_slices, 64))
    codes = encode_styles(style_encoder, batches, device, progress=progress)
    return build_style_bank(codes, config.style_bank_clusters, seed=seed, sampling=config.style_bank_sampling,
                            noise=config.style_bank_noise)


def train_translator(source_folder: str | os.PathLike, target_folder: str | os.PathLike, *,
                     config: TranslatorConfig | None = None,
                     out_dir: str | os.PathLike,
                     device: str | torch.device = "cpu",
                     seed: int = 0,
                     identity: TranslatorIdentity | None = None,
                     resume: bool = False,
                     source_identifiers: Iterable[str] | None = None,
                     target_identifiers: Iterable[str] | None = None,
                     forbidden_identifiers: Iterable[str] = (),
                     progress: bool = True,
                     callback: Callable[[int], None] | None = None) -> TrainingResult:
    """Train the source<->target translator on two nnU-Net preprocessed case folders.

    Parameters
    ----------
    source_folder, target_folder : nnU-Net preprocessed case folders (same plans and configuration, same channels).
        Source labels are never read beyond the body mask; target cases must be unlabelled.
    config : hyper-parameters (default :class:`TranslatorConfig`); ``config.slice_size`` None derives the slice size
        from the source cases' median in-plane shape (capped at :data:`MAX_DERIVED_SLICE_SIZE`).
    out_dir : output folder (layout in the module docstring). Must not hold a run unless ``resume``.
    device : ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    seed : seeds network initialisation, slice sampling/augmentation and the style bank's k-means.
    identity : what the data was preprocessed with (recorded in checkpoints, checked on resume).
    resume : continue from ``out_dir/checkpoint_latest.pth`` if present (a finished run returns at once, or
        continues if ``config.iterations`` was raised).
    forbidden_identifiers : case ids that must not occur in either folder (target test cases); raises if they do.
    callback : called with the iteration number after each completed iteration (after checkpointing).

    Returns the :class:`TrainingResult`; the translator to use is ``result.final_checkpoint``.
    """
    config = TranslatorConfig() if config is None else config
    config.validate()
    device = _resolve_device(device)
    identity = identity or TranslatorIdentity()
    out_dir = Path(out_dir)
    latest, final = out_dir / LATEST_CHECKPOINT, out_dir / FINAL_CHECKPOINT
    ckpt = None
    if resume and latest.is_file():
        ckpt = load_checkpoint(latest)
        checkpoint_identity(ckpt).check_matches(identity, str(latest))
        config = _check_resume_config(TranslatorConfig.from_dict(ckpt["config"]), config, latest)
        seed = int(ckpt.get("seed", seed))  # the style bank's k-means keeps the run's seed
        if ckpt["finished"] and ckpt["iteration"] >= config.iterations and final.is_file():
            final_ckpt = load_checkpoint(final)
            return TrainingResult(out_dir, final, int(final_ckpt["iteration"]),
                                  StyleBank.from_state(final_ckpt["style_bank"]), {})
    elif not resume and (latest.exists() or final.exists()):
        raise FileExistsError(f"{out_dir}: already holds a translator training run. Continue it with resume=True "
                              f"(--continue), or remove the folder (--overwrite) to start again.")
    out_dir.mkdir(parents=True, exist_ok=True)

    seeds = np.random.SeedSequence(seed).spawn(2)
    forbidden = set(forbidden_identifiers)
    cache = int(config.case_cache_gib * (1 << 30)) // 2
    multiple = config.network.spatial_multiple
    # the crop size depends on the slice size, which may derive from the source data: index the source first
    source = SliceSampler(source_folder, (multiple, multiple), identifiers=source_identifiers,
                          min_body_fraction=config.min_body_fraction, augmentation=config.augmentation,
                          seed=int(seeds[0].generate_state(1)[0]), cache_bytes=cache, name="source",
                          forbidden_identifiers=forbidden, progress=progress)
    slice_size = _derive_slice_size(config, source)
    crop = padded_size(slice_size, multiple)
    source.crop_size = crop
    target = SliceSampler(target_folder, crop, identifiers=target_identifiers,
                          min_body_fraction=config.min_body_fraction, augmentation=config.augmentation,
                          seed=int(seeds[1].generate_state(1)[0]), cache_bytes=cache, name="target",
                          forbidden_identifiers=forbidden, expect_unlabelled=True, progress=progress)
    if source.channels != target.channels:
        raise ValueError(f"source folder {source_folder} has {source.channels} channels but target folder "
                         f"{target_folder} has {target.channels}; both must be preprocessed with the same plans")
    channels = source.channels
    if ckpt is not None and (tuple(ckpt["crop_size"]) != tuple(crop) or ckpt["in_channels"] != channels):
        raise ValueError(f"{latest}: was trained on {ckpt['in_channels']}-channel {tuple(ckpt['crop_size'])} crops, "
                         f"the data now gives {channels}-channel {crop} crops; start a new run (--overwrite)")

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        gens = build_generators(channels, config.network).to(device)
        discs = build_discriminators(channels, config.network, crop).to(device)
    ema = ModelEMA(gens, config.ema_decay)
    opt_g = torch.optim.Adam(gens.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    opt_d = torch.optim.Adam(discs.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, _lr_lambda(config))
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, _lr_lambda(config))
    use_amp = bool(config.amp and device.type == "cuda")
    scaler_g = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_d = torch.amp.GradScaler("cuda", enabled=use_amp)
    samplers = {"source": source, "target": target}
    log = LossLog(out_dir / "training_log.jsonl")

    iteration = 0
    run_id = uuid.uuid4().hex
    if ckpt is not None:
        run_id = str(ckpt.get("run_id") or run_id)
        gens.load_state_dict(ckpt["generators"])
        discs.load_state_dict(ckpt["discriminators"])
        ema.load_state_dict(ckpt["ema_generators"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        sched_g.load_state_dict(ckpt["sched_g"])
        sched_d.load_state_dict(ckpt["sched_d"])
        # a run may move between CPU (scaler disabled, empty state) and CUDA: only restore a real scaler state
        for scaler, key in ((scaler_g, "scaler_g"), (scaler_d, "scaler_d")):
            if use_amp and ckpt[key]:
                scaler.load_state_dict(ckpt[key])
        # a raised iteration count changes the schedule; LambdaLR's saved lambdas are not used (functions)
        sched_g.lr_lambdas[0] = sched_d.lr_lambdas[0] = _lr_lambda(config)
        _restore_rng(ckpt["rng"], samplers)
        iteration = int(ckpt["iteration"])
        log.truncate_after(iteration)
        del ckpt
    write_json({"config": config.to_dict(), "identity": identity.to_dict(), "seed": seed,
                "slice_size": list(slice_size), "crop_size": list(crop), "in_channels": channels,
                "source_folder": str(source_folder), "target_folder": str(target_folder)},
               out_dir / "translator_config.json")

    def state(finished: bool, bank: StyleBank | None = None) -> dict:
        return {"identity": identity.to_dict(), "config": config.to_dict(), "in_channels": channels,
                "slice_size": list(slice_size), "crop_size": list(crop), "iteration": iteration,
                "finished": finished, "seed": seed, "run_id": run_id,
                "generators": gens.state_dict(), "discriminators": discs.state_dict(),
                "ema_generators": ema.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                "sched_g": sched_g.state_dict(), "sched_d": sched_d.state_dict(),
                "scaler_g": scaler_g.state_dict(), "scaler_d": scaler_d.state_dict(),
                "rng": _rng_state(samplers), "source_identifiers": source.identifiers,
                "target_identifiers": target.identifiers,
                "style_bank": None if bank is None else bank.to_state()}

    preview_src = source.fixed_batch(source.representative(config.preview_rows))
    preview_tgt = target.fixed_batch(target.representative(config.preview_rows))
    previews = out_dir / "previews"
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp)
    gens.train()
    discs.train()
    step_complete = True
    bar = tqdm(total=config.iterations, initial=iteration, desc="Training style translator", disable=not progress,
               dynamic_ncols=True)
    try:
        while iteration < config.iterations:
            step_complete = False
            xs = torch.from_numpy(source.sample(config.batch_size).images).to(device, non_blocking=True)
            xt = torch.from_numpy(target.sample(config.batch_size).images).to(device, non_blocking=True)
            with autocast:
                p = translation_pass(gens, xs, xt)
            discs.requires_grad_(True)
            with autocast:
                d_total, d_parts = discriminator_loss(p.detached(), discs, xs, xt, config.losses)
            opt_d.zero_grad(set_to_none=True)
            scaler_d.scale(d_total).backward()
            scaler_d.step(opt_d)
            scaler_d.update()
            discs.requires_grad_(False)
            with autocast:
                g_total, g_parts = generator_loss(p, discs, xs, xt, config.losses)
            opt_g.zero_grad(set_to_none=True)
            scaler_g.scale(g_total).backward()
            scaler_g.step(opt_g)
            scaler_g.update()
            with warnings.catch_warnings():
                # GradScaler skips the optimiser step of an overflowing iteration (always the first ones); torch
                # then warns that the scheduler stepped first, which is expected here
                warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
                sched_g.step()
                sched_d.step()
            ema.update(gens)
            iteration += 1
            step_complete = True
            log.add({**g_parts, **d_parts, "g_total": g_total.detach(), "d_total": d_total.detach()})
            bar.update(1)
            if iteration % config.log_every == 0 or iteration == config.iterations:
                means = log.flush(iteration, sched_g.get_last_lr()[0])
                bar.set_postfix(log.postfix())
                bad = [k for k, v in means.items() if not np.isfinite(v)]
                if bad:
                    raise FloatingPointError(
                        f"translator training diverged at iteration {iteration} (non-finite {bad}). Start a new run "
                        f"(--overwrite) with a lower 'lr'{' or with amp disabled' if use_amp else ''}; the last "
                        f"checkpoint in {out_dir} is from before the divergence.")
            if iteration % config.checkpoint_every == 0 and iteration < config.iterations:
                save_checkpoint(state(False), latest)
            if iteration % config.preview_every == 0 and iteration < config.iterations:
                _write_preview(previews, iteration, ema.model, preview_src, preview_tgt, device, "")
            if callback is not None:
                callback(iteration)
    except KeyboardInterrupt:
        if step_complete and iteration > 0:
            save_checkpoint(state(False), latest)
            print(f"\nInterrupted: saved iteration {iteration} to {latest}; continue with --continue")
        else:
            print(f"\nInterrupted mid-iteration: {latest} (the last periodic checkpoint) is kept; continue with "
                  f"--continue")
        raise
    finally:
        bar.close()

    bank = build_style_bank_from_folder(ema.model.style_encoders["target"], target, config, device, seed, progress)
    save_checkpoint(state(True), latest)
    save_checkpoint(state(True, bank), final)
    write_json(bank.summary(), out_dir / "style_bank.json")
    _write_preview(previews, iteration, ema.model, preview_src, preview_tgt, device, " (final)")
    return TrainingResult(out_dir, final, iteration, bank, dict(log.last))
