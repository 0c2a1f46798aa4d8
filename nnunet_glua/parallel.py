"""One function over many independent jobs (scans, cases) in worker processes, with a progress bar."""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Sequence, TypeVar

from tqdm import tqdm

_Job = TypeVar("_Job")
_Result = TypeVar("_Result")

#: nnU-Net's environment variable for the size of its worker pools
NUM_PROCESSES_ENV = "nnUNet_def_n_proc"
#: default bound on worker processes that each hold a full-size volume (a CT volume takes about 1.5 GB in a worker);
#: ``$nnUNet_def_n_proc`` overrides it
VOLUME_PROCESS_CAP = 4


def default_num_processes(cap: int) -> int:
    """``$nnUNet_def_n_proc`` if set (at least 1), else ``min(cap, CPU count)``; read when called.

    ``cap`` bounds the default by what one job costs (a full-size CT volume takes about 1.5 GB in a worker).
    Raises ``ValueError`` naming the variable if it holds no whole number (nnU-Net itself would fail on it).
    """
    value = os.environ.get(NUM_PROCESSES_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"the environment variable {NUM_PROCESSES_ENV} must be a whole number of worker "
                             f"processes, got {value!r}") from None
    return max(1, min(cap, os.cpu_count() or 1))


def _call_indexed(item: tuple[int, Callable[[Any], Any], Any]) -> tuple[int, Any]:
    index, fn, job = item
    return index, fn(job)


def run_jobs(
    fn: Callable[[_Job], _Result],
    jobs: Sequence[_Job],
    num_processes: int,
    desc: str,
    unit: str = "case",
    on_result: Callable[[_Result, tqdm], None] | None = None,
) -> list[_Result]:
    """``[fn(job) for job in jobs]``: in this process when ``num_processes <= 1`` or there is one job, else in a
    ``spawn`` pool of ``min(num_processes, len(jobs))`` workers. Results come back in job order.

    ``fn`` must be a module-level function (it is pickled to the workers), and what it raises must survive
    pickling (:class:`~nnunet_glua.errors.PathError` does). ``on_result(result, bar)`` runs in this process as
    each result arrives (in the order the jobs finish), e.g. to print a case's warnings with ``bar.write``. The
    first exception ends the run: leaving the pool terminates the other workers, and the exception propagates.
    """
    results: list[Any] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc=desc, unit=unit) as bar:
        def handle(index: int, result: Any) -> None:
            results[index] = result
            if on_result is not None:
                on_result(result, bar)
            bar.update()

        if num_processes <= 1 or len(jobs) <= 1:
            for index, job in enumerate(jobs):
                handle(index, fn(job))
        else:
            # spawn, as nnU-Net does: the parent may hold torch threads, and forking a threaded process is unsafe
            with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
                for index, result in pool.imap_unordered(_call_indexed, [(i, fn, job) for i, job in enumerate(jobs)]):
                    handle(index, result)
    return results
