"""The schedules table: how long a trainer trains, and with which translator when it has to train one.

A schedule is a trainer-name suffix and the class attributes it sets. ``alignment`` attributes only apply to
trainers that have them (GLUA's), so one table serves source-only and GLUA trainers alike. Step counts: nnU-Net's
default is 1000 epochs of 250 steps; the CPU schedules are sized on the phantom (docs/benchmarks.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnunet_glua.style.config import PRESETS

__all__ = ["Schedule", "SCHEDULES"]

#: the CPU-sized translator (docs/style_tuning.md): what the demo trains, 600 iterations in 3 to 5 minutes
CPU_TRANSLATOR: dict[str, Any] = {"translator_config_overrides": PRESETS["cpu_demo"]}


@dataclass(frozen=True)
class Schedule:
    """``suffix``: appended to the method name (``""``: nnU-Net's schedule); ``epochs``, ``iterations``,
    ``val_iterations``: per-epoch step counts (``None``: nnU-Net's); ``alignment``: attributes for trainers that
    have them; ``summary``: one line for ``glua_trainers --list``."""

    suffix: str
    summary: str
    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    alignment: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The schedule's attributes of :class:`~nnunet_glua.training.seeded_trainer.SeededTrainer`."""
        return {"schedule_num_epochs": self.epochs, "schedule_iterations_per_epoch": self.iterations,
                "schedule_val_iterations_per_epoch": self.val_iterations}


_DEMO_EPOCHS, _DEMO_ITERATIONS = 30, 25
# 3d_fullres on the CPU: 250 steps of the 3D U-Net predicted no heart structure at all on the demo phantom, 750 found
# all four at a source validation Dice of 0.77 and 1500 at 0.85 (entries 3 and 20 of docs/benchmarks.md), so the 3D
# first stage trains twice the 2D demo's steps; the second stage is the 2D one (_DemoFineTune)
_DEMO_3D_EPOCHS = 2 * _DEMO_EPOCHS
# the demo's alignment settings: the CPU translator and a quarter-size target batch
_DEMO_ALIGNMENT: dict[str, Any] = {**CPU_TRANSLATOR, "target_batch_fraction": 0.25}
# the GPU columns: ten times the demo's steps, and the same CPU-sized translator trained ten times as long, so that
# of the training settings only the budget differs from the CPU table
_GPU_SCALE = 10
_GPU_ALIGNMENT: dict[str, Any] = {**_DEMO_ALIGNMENT,
                                  "translator_iterations": _GPU_SCALE * PRESETS["cpu_demo"]["iterations"]}

SCHEDULES: tuple[Schedule, ...] = (
    Schedule("", "nnU-Net's schedule (1000 x 250 steps), the default translator"),
    Schedule("_Short", "2 x 10 steps, a 200-iteration CPU translator: tests and quick checks", 2, 10, 2,
             {**CPU_TRANSLATOR, "translator_iterations": 200}),
    Schedule("_Demo", "the main demo's first stage: 30 x 25 steps from scratch, the CPU translator",
             _DEMO_EPOCHS, _DEMO_ITERATIONS, 2, _DEMO_ALIGNMENT),
    Schedule("_DemoFineTune", "the demo's second stage, from the source-only _Demo model (-pretrained_weights): "
             "15 x 25 steps", _DEMO_EPOCHS // 2, _DEMO_ITERATIONS, 2, _DEMO_ALIGNMENT),
    Schedule("_Demo3d", "the 3d_fullres first stage on a 2-core CPU: 60 x 25 steps from scratch, the CPU translator",
             _DEMO_3D_EPOCHS, _DEMO_ITERATIONS, 2, _DEMO_ALIGNMENT),
    Schedule("_Demo10x", "the demo's first stage at ten times its steps (300 x 25) and translator iterations (6000): "
             "the GPU columns", _GPU_SCALE * _DEMO_EPOCHS, _DEMO_ITERATIONS, 2, _GPU_ALIGNMENT),
    Schedule("_Demo10xFineTune", "the second stage of the GPU columns: 150 x 25 steps from the _Demo10x model",
             _GPU_SCALE * _DEMO_EPOCHS // 2, _DEMO_ITERATIONS, 2, _GPU_ALIGNMENT),
)
