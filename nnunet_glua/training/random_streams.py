"""Every random stream of a training run, seeded from one number and saved in its checkpoints.

A run's seed is ``$GLUA_SEED`` (or, when unset, one drawn from the OS and written to the log, so the run can be
repeated). From it, the seed of each named stream is derived together with the fold and the DDP rank, so that
folds, ranks and streams never share draws:

=====================  =============================================================================
stream                 what draws from it
=====================  =============================================================================
global (process)       network initialisation, nnU-Net's patch sampling and augmentation in this process
                       (``random``, ``numpy.random``, ``torch``), the feature discriminator's initialisation
``nnunet_loader``      seeds of nnU-Net's augmentation worker processes (``nnUNet_n_proc_DA`` > 0)
``target_loader``      seeds of the unlabelled target loader's worker processes
``translator``         training of a missing style translator
``style``              which source samples are translated, with which bank style
``structure_shift``    which samples' structures are shifted, and by how much
=====================  =============================================================================

:meth:`RandomStreams.state_dict` holds the process-global generators and every named ``torch.Generator``; a run
resumed with ``--c`` restores them all, so with nnU-Net's single-process augmentation (``nnUNet_n_proc_DA=0``) a
resumed run draws exactly what the uninterrupted one would have. Worker processes are reseeded on resume with seeds
derived from the epoch (their internal state cannot be saved), so they do not repeat the first epochs' draws.
Under DDP each rank saves and restores its own streams.
"""
from __future__ import annotations

import os
import random
import secrets
import zlib
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["SEED_ENV", "seed_from_environment", "fold_number", "derive_seed", "RandomStreams"]

SEED_ENV = "GLUA_SEED"

#: the named streams; a name not listed here is refused, so that a typo cannot create a silent new stream
STREAM_NAMES = ("nnunet_loader", "target_loader", "translator", "style", "structure_shift")
#: streams of what one run makes for all its folds (the translator is shared by the folds of a dataset): they
#: depend on the seed only, so which fold happens to make it does not change it
SHARED_STREAMS = ("translator",)


def seed_from_environment() -> int | None:
    """``int($GLUA_SEED)``, or ``None`` when it is unset or empty; ``ValueError`` naming the variable otherwise."""
    value = os.environ.get(SEED_ENV, "").strip()
    if not value:
        return None
    try:
        seed = int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be a whole number >= 0, got {value!r}") from None
    if seed < 0:
        raise ValueError(f"{SEED_ENV} must be a whole number >= 0, got {seed}")
    return seed


def fold_number(fold: int | str) -> int:
    """nnU-Net's fold as a number for seeding: ``0..n`` as they are, ``"all"`` (nnU-Net keeps it as that string)
    as ``-1``, any other string by its CRC-32 (a custom split name), so no two folds share streams."""
    if isinstance(fold, (int, np.integer)):
        return int(fold)
    text = str(fold)
    if text.isdigit():
        return int(text)
    if text == "all":
        return -1
    return zlib.crc32(text.encode())


def derive_seed(seed: int, fold: int | str, rank: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` of run ``seed``, fold ``fold`` and rank ``rank``, from numpy's
    ``SeedSequence`` (well mixed: neighbouring inputs give unrelated seeds)."""
    entropy = [int(seed), fold_number(fold) & 0xFFFFFFFF, int(rank), zlib.crc32(stream.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def shared_stream_seed(run_seed: int, stream: str) -> int:
    """The seed (< 2**31) of a stream every fold and rank of run ``run_seed`` share (:data:`SHARED_STREAMS`), e.g.
    the translator's: for code that prepares what a run will use, without creating the run's streams."""
    if stream not in SHARED_STREAMS:
        raise KeyError(f"{stream!r} is not a shared random stream; shared: {', '.join(SHARED_STREAMS)}")
    return derive_seed(int(run_seed), "shared", 0, stream) % 2**31


class RandomStreams:
    """The random streams of one process of a training run (see the module docstring).

    ``seed``: the run's seed (``None``: draw one); ``fold``: nnU-Net's fold (int or ``"all"``); ``rank``: the DDP
    rank (0 without DDP). Construction seeds the process-global generators, so build it before the network.
    """

    def __init__(self, seed: int | None, fold: int | str, rank: int = 0):
        self.drawn = seed is None
        self.seed = secrets.randbelow(2**31) if seed is None else int(seed)
        self.fold = fold
        self.rank = int(rank)
        self._generators: dict[str, torch.Generator] = {}
        global_seed = derive_seed(self.seed, fold, self.rank, "global")
        random.seed(global_seed)
        np.random.seed(global_seed % 2**32)
        torch.manual_seed(global_seed)

    def seed_of(self, stream: str) -> int:
        """The derived seed of ``stream`` (for code that takes a seed, e.g. translator training)."""
        if stream not in STREAM_NAMES:
            raise KeyError(f"unknown random stream {stream!r}; known: {', '.join(STREAM_NAMES)}")
        if stream in SHARED_STREAMS:
            return shared_stream_seed(self.seed, stream)
        return derive_seed(self.seed, self.fold, self.rank, stream)

    def worker_seeds(self, stream: str, count: int, start: int) -> list[int]:
        """Seeds (< 2**32, what numpy accepts) for ``count`` worker processes of ``stream``; ``start`` tells pools
        apart (e.g. the epoch they start at, so a resumed run does not replay the first epochs' draws)."""
        base = self.seed_of(stream)
        return [derive_seed(base, start, i, stream) % 2**32 for i in range(count)]

    def generator(self, stream: str) -> torch.Generator:
        """The CPU ``torch.Generator`` of ``stream``, created (seeded) on first use and kept for the run."""
        if stream not in self._generators:
            self._generators[stream] = torch.Generator().manual_seed(self.seed_of(stream))
        return self._generators[stream]

    def describe(self) -> str:
        source = f"drawn (set {SEED_ENV}={self.seed} to repeat this run)" if self.drawn else f"{SEED_ENV}={self.seed}"
        return f"random streams: seed {source}, fold {self.fold}, rank {self.rank}"

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """This process's streams: the seed and the states of every generator (CPU tensors and plain data)."""
        state = {"seed": self.seed, "fold": str(self.fold), "rank": self.rank,
                 "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                 "generators": {name: g.get_state() for name, g in self._generators.items()}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (of this rank)."""
        if self.drawn:  # an unseeded run resumed: continue with the seed it drew
            self.seed, self.drawn = int(state["seed"]), False
            self._generators.clear()
        if int(state["seed"]) != self.seed or str(state["fold"]) != str(self.fold):
            raise RuntimeError(f"the checkpoint's random streams belong to seed {state['seed']}, fold {state['fold']}; "
                               f"this run has seed {self.seed}, fold {self.fold}. Resume with the same {SEED_ENV} "
                               f"(or unset it: a resumed run then takes the checkpoint's seed)")
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for name, value in state["generators"].items():
            self.generator(name).set_state(value)

    def gathered_state(self) -> dict[str, Any]:
        """Every rank's :meth:`state_dict`, collected on all ranks (a collective under DDP: call it on every rank):
        ``{"world_size": n, "per_rank": [state of rank 0, ...]}``."""
        own = self.state_dict()
        if dist.is_available() and dist.is_initialized():
            per_rank: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, own)
        else:
            per_rank = [own]
        return {"world_size": len(per_rank), "per_rank": per_rank}

    def load_gathered_state(self, gathered: dict[str, Any]) -> str | None:
        """Restore this rank's entry of :meth:`gathered_state`. With another number of ranks than the checkpoint's,
        nothing is restored and a sentence saying so is returned (log it); otherwise ``None``."""
        per_rank = gathered["per_rank"]
        if len(per_rank) != self._world_size():
            return (f"the checkpoint was written by {len(per_rank)} rank(s), this run has {self._world_size()}: "
                    f"random streams continue from fresh seeds, not from the checkpoint")
        self.load_state_dict(per_rank[self.rank])
        return None

    @staticmethod
    def _world_size() -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
