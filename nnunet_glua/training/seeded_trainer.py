"""The base of every trainer of this package: nnU-Net's trainer with seeded, checkpointed random streams, a schedule
given as class attributes, and checkpoints that carry extra state.

nnU-Net's convention: a variant is a subclass that changes class attributes. The constructor signature must stay
exactly nnU-Net's because nnU-Net records ``locals()`` of it in its checkpoints.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
from typing import Any, Iterator

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_glua.training.pretrained_head import load_segmentation_head, pretrained_weights_file
from nnunet_glua.training.random_streams import RandomStreams, seed_from_environment

#: checkpoint key of the random streams of every rank
STREAMS_CHECKPOINT_KEY = "glua_random_streams"


@contextlib.contextmanager
def nnunet_loader_overrides(streams: RandomStreams, stream: str, start: int,
                            training_workers: int | None = None) -> Iterator[None]:
    """While active, the loaders nnU-Net's trainer builds in ``get_dataloaders`` honour what it offers no hook
    for: augmentation worker pools (``NonDetMultiThreadedAugmenter``) get worker seeds from ``stream`` instead of OS
    entropy (``start``, e.g. the current epoch, tells pools apart), the training pool (nnU-Net builds it first) runs
    ``training_workers`` workers instead of ``get_allowed_n_proc_DA()`` when given, and a dataset with a
    ``sampling_probabilities`` attribute is sampled with those probabilities (nnU-Net passes ``None``). The classes
    nnU-Net looks up are swapped for the duration of that call only.
    """
    module = sys.modules[nnUNetTrainer.__module__]
    original_pool, original_loader = module.NonDetMultiThreadedAugmenter, module.nnUNetDataLoader
    pool_index = itertools.count()

    def seeded_pool(*args: Any, **kwargs: Any):
        index = next(pool_index)
        if index == 0 and training_workers is not None:
            kwargs["num_processes"] = training_workers
        kwargs["seeds"] = streams.worker_seeds(stream, int(kwargs["num_processes"]), 1000 * start + index)
        return original_pool(*args, **kwargs)

    def weighted_loader(data, *args: Any, **kwargs: Any):
        loader = original_loader(data, *args, **kwargs)
        weights = getattr(data, "sampling_probabilities", None)
        if weights is not None:
            loader.sampling_probabilities = weights
        return loader

    module.NonDetMultiThreadedAugmenter, module.nnUNetDataLoader = seeded_pool, weighted_loader
    try:
        yield
    finally:
        module.NonDetMultiThreadedAugmenter, module.nnUNetDataLoader = original_pool, original_loader


class SeededTrainer(nnUNetTrainer):
    """nnU-Net's trainer with the random streams of :mod:`~nnunet_glua.training.random_streams` and a schedule.

    Schedule (class attributes, ``None`` keeps nnU-Net's): ``schedule_num_epochs``,
    ``schedule_iterations_per_epoch``, ``schedule_val_iterations_per_epoch``.

    A second stage started with ``-pretrained_weights`` from a model of the same labels keeps that model's
    segmentation head (``keep_pretrained_segmentation_head``; nnU-Net re-initialises it).

    Hooks for subclasses: :meth:`prepare_training` (runs at the end of ``on_train_start``, before the random streams
    of a resumed run are restored, so whatever it draws does not shift them), :meth:`checkpoint_extras` (entries
    added to every checkpoint; called on every DDP rank, so it may use collectives) and
    :meth:`restore_checkpoint_extras` (reads them back on ``--c``).
    """

    schedule_num_epochs: int | None = None
    schedule_iterations_per_epoch: int | None = None
    schedule_val_iterations_per_epoch: int | None = None
    #: a second stage (``-pretrained_weights`` of a model with the same labels) starts with that model's head
    keep_pretrained_segmentation_head: bool = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for attribute, nnunet_name in (("schedule_num_epochs", "num_epochs"),
                                       ("schedule_iterations_per_epoch", "num_iterations_per_epoch"),
                                       ("schedule_val_iterations_per_epoch", "num_val_iterations_per_epoch")):
            value = getattr(self, attribute)
            if value is not None:
                setattr(self, nnunet_name, int(value))
        # seeded here, before initialize() builds the network, so that its initialisation is seeded too
        self.random_streams = RandomStreams(seed_from_environment(), fold, self.local_rank)
        self._pending_streams: dict | None = None
        self.print_to_log_file(self.random_streams.describe())

    # ------------------------------------------------------------------ training start
    def get_dataloaders(self):
        with nnunet_loader_overrides(self.random_streams, "nnunet_loader", self.current_epoch,
                                     self.training_loader_workers()):
            return super().get_dataloaders()

    def training_loader_workers(self) -> int | None:
        """Workers of nnU-Net's training loader; ``None``: nnU-Net's ``get_allowed_n_proc_DA()``. A subclass with
        a loader of its own gives part of that budget to it."""
        return None

    def prepare_training(self) -> None:
        """Build what a subclass adds to training (called once per run, at the end of ``on_train_start``)."""

    def on_train_start(self):
        super().on_train_start()
        self._keep_pretrained_segmentation_head()
        self.prepare_training()
        if self._pending_streams is not None:
            note = self.random_streams.load_gathered_state(self._pending_streams)
            self._pending_streams = None
            if note:
                self.print_to_log_file(note, also_print_to_console=True)

    def _keep_pretrained_segmentation_head(self) -> None:
        """Put back the head that nnU-Net's ``-pretrained_weights`` loader re-initialised, when the checkpoint
        segments the same labels (:mod:`~nnunet_glua.training.pretrained_head`); a resumed run keeps its own."""
        checkpoint = pretrained_weights_file(sys.argv)
        if checkpoint is None or not self.keep_pretrained_segmentation_head or self.current_epoch != 0:
            return
        self.print_to_log_file(load_segmentation_head(self.network, checkpoint, self.dataset_json),
                               also_print_to_console=True)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        """Entries added to every checkpoint next to nnU-Net's (override and extend; called on every rank)."""
        return {STREAMS_CHECKPOINT_KEY: self.random_streams.gathered_state()}

    def restore_checkpoint_extras(self, checkpoint: dict[str, Any], filename: str) -> None:
        """Read back :meth:`checkpoint_extras` from a checkpoint being resumed (``filename`` for messages)."""
        self._pending_streams = checkpoint.get(STREAMS_CHECKPOINT_KEY)
        if self._pending_streams is None:
            self.print_to_log_file(f"{filename} holds no random streams: they continue from this run's seed")

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint (same keys, so nnU-Net's tools read it) plus :meth:`checkpoint_extras`, written
        under a temporary name and renamed, so an interrupted save never leaves a truncated checkpoint."""
        if self.disable_checkpointing:
            if self.local_rank == 0:
                self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        extras = self.checkpoint_extras()  # every rank: it may gather
        if self.local_rank != 0:
            return
        mod = self.network.module if self.is_ddp else self.network
        mod = getattr(mod, "_orig_mod", mod)
        checkpoint = {
            "network_weights": mod.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            **extras,
        }
        tmp = f"{filename}.partial"
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        if not isinstance(filename_or_checkpoint, str):
            raise TypeError("pass the checkpoint's path: nnU-Net 2.8's load_checkpoint cannot take a dict")
        super().load_checkpoint(filename_or_checkpoint)
        # nnU-Net's loader does not hand the dict out; reading the file again is cheap next to a training run
        checkpoint = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False)
        self.restore_checkpoint_extras(checkpoint, filename_or_checkpoint)
