"""Running losses for the progress bar and a JSON-lines loss log (one record per ``log_every`` iterations).

Loss parts arrive as detached device tensors; they are summed on the device and converted to floats only when a
record is written, so logging costs one GPU synchronisation per record instead of several per iteration.

Each line of ``training_log.jsonl`` is ``{"iteration": int, "lr": float, "seconds_per_iteration": float,
"<loss part>": float (mean over the iterations since the last record), ...}``. On resume, records after the
resumed iteration (written after the last checkpoint) are dropped, so the log never holds an iteration twice.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from nnunet_glua.io_utils import atomic_path

__all__ = ["LossLog"]


class LossLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._t0 = time.perf_counter()
        self.last: dict[str, float] = {}

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        for k, v in parts.items():
            v = v.detach().float()
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._count += 1

    def flush(self, iteration: int, lr: float) -> dict[str, float]:
        """Append one record with the means since the last flush; returns it (also kept in ``last``)."""
        if self._count == 0:
            return self.last
        means = {k: float(v) / self._count for k, v in self._sums.items()}
        now = time.perf_counter()
        record = {"iteration": int(iteration), "lr": float(lr),
                  "seconds_per_iteration": round((now - self._t0) / self._count, 5),
                  **{k: round(v, 6) for k, v in means.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._sums, self._count, self._t0 = {}, 0, now
        self.last = means
        return means

    def truncate_after(self, iteration: int) -> None:
        """Drop records with ``iteration`` greater than the given one (atomic rewrite)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("iteration", 0) <= iteration:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept))

    def postfix(self) -> dict[str, str]:
        """Short strings for the tqdm postfix (most informative parts only)."""
        keys = ("self_rec", "cross_cycle", "g_adv_image", "d_image")
        return {k: f"{self.last[k]:.3f}" for k in keys if k in self.last}
