"""Every ``-tr`` trainer class: the methods table times the schedules table, generated.

``<method><schedule>`` (e.g. ``GLUATrainer_NoLocalMask_Short``) derives from the method's class under nnU-Net's
schedule (``GLUATrainer_NoLocalMask``), which derives from the method's base (``GLUATrainer``); each class only
sets attributes. The classes are real module-level classes of this module (picklable, found by nnU-Net through the
``nnUNet_extTrainer`` shim). ``glua_trainers --list`` prints them with what each changes.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from nnunet_glua.training.methods import METHODS, Method
from nnunet_glua.training.schedules import SCHEDULES, Schedule
from nnunet_glua.training.seeded_trainer import SeededTrainer

__all__: list[str] = ["TRAINERS", "trainer_settings", "main"]

#: trainer name -> (class, method, schedule), in table order
TRAINERS: dict[str, tuple[type[SeededTrainer], Method, Schedule]] = {}


def trainer_settings(method: Method, schedule: Schedule) -> dict[str, Any]:
    """The class attributes ``<method><schedule>`` sets on top of the method's base class."""
    settings = dict(method.settings)
    settings.update(schedule.settings())
    settings.update({k: v for k, v in schedule.alignment.items() if hasattr(method.base, k)})
    return settings


def _make_class(name: str, parent: type, attributes: dict[str, Any], doc: str) -> type:
    cls = type(name, (parent,), {**attributes, "__doc__": doc, "__module__": __name__, "__qualname__": name})
    globals()[name] = cls
    __all__.append(name)
    return cls


def _generate() -> None:
    for method in METHODS:
        method_class = method.base if method.is_base else _make_class(
            method.name, method.base, dict(method.settings), f"{method.summary}.")
        for schedule in SCHEDULES:
            name = method.name + schedule.suffix
            if schedule.suffix:
                attributes = {k: v for k, v in trainer_settings(method, schedule).items()
                              if k not in method.settings}
                cls = _make_class(name, method_class, attributes, f"{method.summary}; {schedule.summary}.")
            else:
                cls = method_class
                globals()[name] = cls  # the hand-written bases too: the shim re-exports this module's __all__
                if name not in __all__:
                    __all__.append(name)
            TRAINERS[name] = (cls, method, schedule)


_generate()


def _format_settings(settings: dict[str, Any]) -> str:
    """``settings`` in one short line: the step counts as ``epochs x steps (val n)``, the rest as ``key=value``."""
    settings = dict(settings)
    epochs, steps, val = (settings.pop(k, None) for k in ("schedule_num_epochs", "schedule_iterations_per_epoch",
                                                          "schedule_val_iterations_per_epoch"))
    parts = [f"{epochs} x {steps} steps (val {val})"] if epochs is not None else []
    for key, value in settings.items():
        parts.append("cpu_demo translator" if key == "translator_config_overrides" else f"{key}={value}")
    return ", ".join(parts) or "-"


def main(argv: Sequence[str] | None = None) -> int:
    """``glua_trainers --list``: every trainer name for ``nnUNetv2_train -tr``, its method, schedule and settings."""
    parser = argparse.ArgumentParser(prog="glua_trainers", description=(
        "The trainers this package adds to nnU-Net (nnUNetv2_train ... -tr NAME): every method of the methods "
        "table under every schedule of the schedules table."))
    parser.add_argument("--list", action="store_true", help="list every trainer with what it changes (default)")
    parser.add_argument("--names", action="store_true", help="print the names only, one per line")
    args = parser.parse_args(argv)
    if args.names:
        print("\n".join(TRAINERS))
        return 0
    print("methods:")
    for method in METHODS:
        print(f"  {method.name:<34} {method.summary}" + (f" [{_format_settings(method.settings)}]"
                                                          if method.settings else ""))
    print("schedules (suffix):")
    for schedule in SCHEDULES:
        print(f"  {schedule.suffix or '(none)':<34} {schedule.summary}")
    print(f"\n{len(TRAINERS)} trainers:")
    for name, (cls, method, schedule) in TRAINERS.items():
        print(f"  {name:<46} {_format_settings(trainer_settings(method, schedule))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
