"""One-time preparation on DDP rank 0 that the other ranks wait for without sitting in a collective.

Building the style translator or preprocessing the unlabelled target images can take far longer than a
process group's collective timeout (NCCL's default is 10 minutes, and nnU-Net sets none of its own). So the
other ranks never wait for it inside a barrier: rank 0 does the work under a file lock (independent processes,
e.g. other folds started at the same time, share one build through it) and then writes a marker file; the others
poll for that marker, and only once it is there do all ranks meet in one barrier, which then returns at once.

Markers carry a token that rank 0 draws and broadcasts before the work starts (every rank arrives there
together), so a marker left by an earlier run, or written by another DDP run that uses the same lock, is never
mistaken for this run's. If the work fails on rank 0, it writes a failure marker with the error, and the other
ranks raise :class:`RankZeroFailed` instead of waiting; if no marker appears within ``$GLUA_DDP_WAIT_S`` seconds
(default: 6 hours), they raise :class:`RankZeroTimeout`.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from filelock import FileLock

from nnunet_glua.io_utils import atomic_path

WAIT_ENV = "GLUA_DDP_WAIT_S"
# Rank 0 may first wait for the lock while another fold builds the same parts (20-40 GPU minutes each), then
# build what is still missing itself.
DEFAULT_WAIT_S = 6 * 3600.0
DEFAULT_POLL_S = 2.0
# Waiting ranks read a failure marker within one poll interval; one this old belongs to a finished run.
_STALE_MARKER_AGE_S = 3600.0


class RankZeroFailed(RuntimeError):
    """Raised on the other ranks when the preparation failed on rank 0."""


class RankZeroTimeout(RuntimeError):
    """Raised on the other ranks when rank 0 reported neither success nor failure in time."""


def wait_limit_from_env() -> float:
    """Seconds the other ranks wait for rank 0: ``float($GLUA_DDP_WAIT_S)``, or :data:`DEFAULT_WAIT_S` when unset
    or empty; ``ValueError`` naming the variable when it is not a positive number."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{WAIT_ENV}={raw!r}: expected a positive number of seconds (e.g. {WAIT_ENV}=21600)")
    return value


def _markers(lock_path: Path, token: str) -> tuple[Path, Path]:
    stem = f"{lock_path.name}.{token}"
    return lock_path.with_name(stem + ".done"), lock_path.with_name(stem + ".failed")


def _shared_token() -> str:
    """A fresh random token drawn on rank 0 and broadcast to every rank (a collective: all ranks must call it)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    value = torch.tensor([secrets.randbits(62) if dist.get_rank() == 0 else 0], dtype=torch.int64, device=device)
    dist.broadcast(value, src=0)
    return f"{int(value.item()):016x}"


def _write_marker(path: Path, text: str) -> None:
    # readers must never see a half-written failure message
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _remove_stale_failure_markers(lock_path: Path) -> None:
    now = time.time()
    for old in lock_path.parent.glob(f"{lock_path.name}.*.failed"):
        try:
            if now - old.stat().st_mtime > _STALE_MARKER_AGE_S:
                old.unlink()
        except FileNotFoundError:
            pass  # another run cleaned it up first


def _wait_for_markers(done: Path, failed: Path, what: str, lock_path: Path, wait_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if failed.exists():
            raise RankZeroFailed(f"rank 0 failed while {what}: {failed.read_text().strip()}. The full traceback is "
                                 f"in rank 0's output; fix the cause and start the training again.")
        if done.exists():
            return
        if time.monotonic() > deadline:
            raise RankZeroTimeout(
                f"rank {dist.get_rank()} waited {wait_s:.0f} s for rank 0 to finish {what} (it writes {done} when "
                f"done, {failed} on failure; file lock {lock_path}) and saw neither. Rank 0 may have died or hung, "
                f"or another process held the lock that long: check rank 0's output and whether another training "
                f"of this dataset is still preparing; set {WAIT_ENV} (seconds) to wait longer.")
        time.sleep(poll_s)


def run_on_rank_zero_first(work: Callable[[], object], lock_path: Path, what: str, distributed: bool,
                           wait_s: float | None = None, poll_s: float = DEFAULT_POLL_S) -> None:
    """Run ``work()`` once, on rank 0 and under the file lock ``lock_path``; return on every rank once it is done.

    ``what`` names the work in messages ("training the style translator"). Without ``distributed`` this only runs
    ``work()`` under the lock. With it (an initialised default process group), all ranks must call this together:
    the other ranks poll for rank 0's marker for at most ``wait_s`` seconds (default :func:`wait_limit_from_env`),
    checking every ``poll_s`` seconds, and then all ranks meet in one barrier. Raises whatever ``work()`` raised on
    rank 0, :class:`RankZeroFailed` on the other ranks when it failed, and :class:`RankZeroTimeout` there when
    rank 0 reported nothing in time.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    if not distributed:
        with FileLock(str(lock_path)):
            work()
        return
    wait_s = wait_limit_from_env() if wait_s is None else wait_s
    token = _shared_token()
    done, failed = _markers(lock_path, token)
    if dist.get_rank() != 0:
        _wait_for_markers(done, failed, what, lock_path, wait_s, poll_s)
        dist.barrier()
        return
    _remove_stale_failure_markers(lock_path)
    try:
        with FileLock(str(lock_path)):
            work()
    except BaseException as e:
        # no collective here: the other ranks read the marker and stop, and rank 0's own error surfaces at once
        with contextlib.suppress(OSError):  # the work's error matters more than a marker that cannot be written
            _write_marker(failed, f"{type(e).__name__}: {e}")
        raise
    _write_marker(done, "")
    try:
        dist.barrier()
    finally:
        # everyone has seen it (or a rank is gone and the run is over anyway)
        done.unlink(missing_ok=True)
