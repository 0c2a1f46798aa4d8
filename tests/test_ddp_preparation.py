"""Rank 0's one-time preparation (target preprocessing, translator) under DDP never trips a collective timeout.

Two CPU ranks over gloo with a process-group timeout of a few seconds: a preparation three times that long, a
file lock held by another process for longer than it, a failure on rank 0 and a rank 0 that never finishes. The
last test drives GLUATrainer itself, with nnU-Net's DDP patched for CPU as in test_glua_ddp.py.
"""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from filelock import FileLock

from nnunet_glua.training.rank_zero import (DEFAULT_WAIT_S, WAIT_ENV, RankZeroFailed, RankZeroTimeout,
                                            run_on_rank_zero_first, wait_limit_from_env)

DATASET_ID = 976
PG_TIMEOUT_S = 2.0
WHAT = "building the test artefact"


def _record(out: Path, rank: int, result: dict) -> None:
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def _helper_worker(rank: int, init_file: str, out_dir: str, scenario: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=PG_TIMEOUT_S))
    out = Path(out_dir)
    artefact = out / "artefact.txt"
    lock = out / "build.lock"

    def work() -> None:
        (out / "work_started").write_text(str(time.time()))
        if scenario == "fail":
            raise ValueError("no unlabelled target images in imagesTr_target")
        time.sleep(3 * PG_TIMEOUT_S if scenario in ("plain_barrier", "slow", "hung") else 0.0)
        artefact.write_text("built")

    try:
        if scenario == "plain_barrier":
            # what a barrier right after the work would do: the timeout of this test's group is real
            if rank == 0:
                work()
            dist.barrier()
        else:
            wait_s = 1.0 if scenario == "hung" else 60.0
            run_on_rank_zero_first(work, lock, WHAT, distributed=True, wait_s=wait_s, poll_s=0.05)
        summed = torch.tensor([rank + 1.0])
        dist.all_reduce(summed)  # the group is still healthy afterwards
        _record(out, rank, {"artefact": artefact.read_text(), "sum": summed.item(), "done_at": time.time()})
    except Exception as e:
        _record(out, rank, {"error": type(e).__name__, "message": str(e)})
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path: Path, scenario: str) -> tuple[dict, dict]:
    mp.spawn(_helper_worker, args=(str(tmp_path / "init"), str(tmp_path), scenario), nprocs=2, join=True)
    return tuple(json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))


def test_a_barrier_during_slow_work_times_out(tmp_path):
    _, r1 = _spawn(tmp_path, "plain_barrier")
    assert "error" in r1, "the short process-group timeout must bite, or the other tests prove nothing"


def test_slow_work_on_rank_zero_trips_no_timeout(tmp_path):
    # markers of earlier runs: an old failure (cleaned up) and a success marker with another token (ignored)
    stale_failure = tmp_path / "build.lock.00000000deadbeef.failed"
    stale_failure.write_text("ValueError: from an earlier run")
    os.utime(stale_failure, (time.time() - 7200, time.time() - 7200))
    other_run_done = tmp_path / "build.lock.00000000cafecafe.done"
    other_run_done.touch()

    r0, r1 = _spawn(tmp_path, "slow")
    for r in (r0, r1):
        assert r.get("artefact") == "built", r
        assert r["sum"] == 3.0
    assert not stale_failure.exists()
    assert sorted(p.name for p in tmp_path.glob("build.lock.*")) == [other_run_done.name]


def test_rank_zero_waits_for_a_lock_held_by_another_process(tmp_path):
    # not thread-local: the thread that releases it is not the one that took it
    lock = FileLock(str(tmp_path / "build.lock"), thread_local=False)
    lock.acquire()
    released_at: list[float] = []

    def release_later() -> None:
        time.sleep(3 * PG_TIMEOUT_S)
        released_at.append(time.time())
        lock.release()

    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        r0, r1 = _spawn(tmp_path, "quick")
    finally:
        releaser.join()
    for r in (r0, r1):
        assert r.get("artefact") == "built", r
    assert float((tmp_path / "work_started").read_text()) >= released_at[0]


def test_failure_on_rank_zero_stops_the_other_rank(tmp_path):
    r0, r1 = _spawn(tmp_path, "fail")
    assert r0["error"] == "ValueError"
    assert r1["error"] == RankZeroFailed.__name__
    assert WHAT in r1["message"] and "no unlabelled target images in imagesTr_target" in r1["message"]


def test_other_rank_gives_up_when_rank_zero_never_reports(tmp_path):
    _, r1 = _spawn(tmp_path, "hung")
    assert r1["error"] == RankZeroTimeout.__name__
    assert WHAT in r1["message"] and "build.lock" in r1["message"] and WAIT_ENV in r1["message"]


def test_without_ddp_the_work_just_runs_under_the_lock(tmp_path):
    lock_path = tmp_path / "sub" / "build.lock"
    calls = []

    def work() -> None:
        # the lock is held: another process could not take it now
        with pytest.raises(TimeoutError):
            FileLock(str(lock_path), thread_local=False, is_singleton=False).acquire(timeout=0)
        calls.append(1)

    run_on_rank_zero_first(work, lock_path, WHAT, distributed=False)
    assert calls == [1]
    assert not dist.is_initialized()


def test_wait_limit_from_env(monkeypatch):
    monkeypatch.delenv(WAIT_ENV, raising=False)
    assert wait_limit_from_env() == DEFAULT_WAIT_S
    monkeypatch.setenv(WAIT_ENV, "90")
    assert wait_limit_from_env() == 90.0
    for bad in ("two hours", "0", "-5", "nan"):
        monkeypatch.setenv(WAIT_ENV, bad)
        with pytest.raises(ValueError, match=WAIT_ENV):
            wait_limit_from_env()
