"""External commands: what runs them, how they are recorded, and where nnU-Net's programs and trainers are found.

:func:`nnunet_program` is the package's one lookup of the console scripts it runs (``nnUNetv2_train``,
``nnUNetv2_predict``, ..., ``glua_pseudo_label``); :data:`BENCHMARK_PROGRAMS` lists those the benchmark starts. A
:class:`CommandRunner` executes one :class:`Command`; tests pass a fake one that writes what nnU-Net would write.
:class:`Executor` prints and records every command and skips running them in a dry run.
"""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.paths import EXT_TRAINER_ENV

__all__ = ["Command", "CommandRunner", "subprocess_runner", "nnunet_program", "Executor", "check_trainers",
           "BENCHMARK_PROGRAMS"]

#: every program the benchmark starts (upper-bound preparation, training, pseudo-labelling, prediction), with the
#: distribution whose console script it is; :meth:`Executor.program` refuses any other name, so that a machine can
#: be set up for the benchmark from this table alone (launchers of the GPU checks)
BENCHMARK_PROGRAMS: Mapping[str, str] = {
    "nnUNetv2_extract_fingerprint": "nnunetv2",
    "nnUNetv2_move_plans_between_datasets": "nnunetv2",
    "nnUNetv2_preprocess": "nnunetv2",
    "nnUNetv2_train": "nnunetv2",
    "nnUNetv2_predict": "nnunetv2",
    "glua_pseudo_label": "nnunet-glua",
}


@dataclass(frozen=True)
class Command:
    """One external command: ``argv`` run with the current environment plus ``env`` (the overrides)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def program(self) -> str:
        """The command's name without its folder, e.g. ``nnUNetv2_train``."""
        return Path(self.argv[0]).name

    def shell(self) -> str:
        """The command as one copy-pasteable POSIX shell line, environment overrides first."""
        env = [f"{k}={shlex.quote(str(v))}" for k, v in self.env.items()]
        return " ".join(env + [shlex.quote(a) for a in self.argv])

    def to_dict(self) -> dict[str, Any]:
        """``{"argv": [...], "env": {...}}``, JSON-ready."""
        return {"argv": list(self.argv), "env": dict(self.env)}


CommandRunner = Callable[[Command], None]


def subprocess_runner(command: Command) -> None:
    """Run ``command`` with its output going to this process's terminal; raise :class:`BenchmarkError` when it
    cannot be started or fails. The default runner of the benchmark and the demo."""
    env = {**os.environ, **{k: str(v) for k, v in command.env.items()}}
    try:
        completed = subprocess.run(list(command.argv), env=env, check=False)
    except OSError as e:
        raise BenchmarkError(command.argv[0], f"cannot be started ({e})") from None
    if completed.returncode != 0:
        raise BenchmarkError(
            None,
            f"command failed with exit status {completed.returncode}:\n  {command.shell()}\nFix the cause shown "
            "above and run the same glua_benchmark or glua_demo command again: finished rows are kept and an "
            "interrupted training continues from its latest checkpoint.",
        )


def nnunet_program(name: str, required: bool = True) -> str:
    """Path of the console script ``name`` (nnU-Net's, e.g. ``nnUNetv2_train``, or this package's).

    The scripts next to this interpreter come first, so that the commands work without an activated virtual
    environment; then ``PATH``. When neither has it, ``required`` raises :class:`BenchmarkError`, otherwise the bare
    name is returned (for printing a dry run on a machine without nnU-Net).
    """
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is not None:
        return found
    if required:
        raise BenchmarkError(None, f"command {name} not found next to {sys.executable} or on PATH; is "
                                   f"{BENCHMARK_PROGRAMS.get(name, 'nnunetv2')} installed in this environment?")
    return name


class Executor:
    """Runs commands through a :class:`CommandRunner`, printing each one first and keeping the list in
    :attr:`commands`; with ``dry_run`` it only prints and records them."""

    def __init__(self, runner: CommandRunner, dry_run: bool = False):
        self.runner = runner
        self.dry_run = dry_run
        self.commands: list[Command] = []

    def program(self, name: str) -> str:
        """:func:`nnunet_program` of one of :data:`BENCHMARK_PROGRAMS`, required except in a dry run."""
        if name not in BENCHMARK_PROGRAMS:
            raise ValueError(f"{name} is not in BENCHMARK_PROGRAMS; add it there so that machines are set up for it")
        return nnunet_program(name, required=not self.dry_run)

    def execute(self, command: Command) -> None:
        """Print, record and (unless a dry run) run ``command``; the runner's errors propagate."""
        self.commands.append(command)
        print(("(dry run) " if self.dry_run else "$ ") + command.shell(), flush=True)
        if not self.dry_run:
            self.runner(command)

    def note(self, text: str) -> None:
        """Print a remark about a step that needs no command (or, in a dry run, what would be done)."""
        print(("(dry run) # " if self.dry_run else "# ") + text, flush=True)


def check_trainers(names: Iterable[str]) -> None:
    """Raise :class:`BenchmarkError` for the first trainer class name that nnU-Net cannot find (its own trainers and
    ``nnUNet_extTrainer``): better before hours of training than in the middle of them."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name in sorted(set(names)):
        # nnU-Net's lookup narrates its search on stdout; only its verdict matters here
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                recursive_find_trainer_class_by_name(name)
            except (RuntimeError, AssertionError):
                raise BenchmarkError(None, f"trainer {name} not found by nnU-Net (its own trainers and "
                                           f"{EXT_TRAINER_ENV}={os.environ.get(EXT_TRAINER_ENV, '')}); check the "
                                           "schedule suffix (--schedule) or define the trainer") from None
