"""Where the plugin's files live, and the one way to point nnU-Net at its trainers.

nnU-Net (>= 2.8) looks up ``-tr NAME`` in its own trainer tree, then in each folder listed in the
environment variable ``nnUNet_extTrainer``. The folder returned by :func:`trainer_folder` holds thin shim
modules only; the trainer classes themselves live in :mod:`nnunet_glua.training`, so they stay picklable
for nnU-Net's spawn pools (nnU-Net evicts modules imported from the ext folder after the lookup).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import nnunet_glua

EXT_TRAINER_ENV = "nnUNet_extTrainer"


def trainer_folder() -> Path:
    """Absolute path of the shim folder to put into ``nnUNet_extTrainer``.

    It is inside the installed package, so it exists for editable and non-editable installs alike.
    """
    return Path(nnunet_glua.__file__).resolve().parent / "nnunet_trainers"


def ensure_trainer_folder_registered(environ: "os._Environ[str] | dict[str, str] | None" = None) -> str:
    """Append :func:`trainer_folder` to ``nnUNet_extTrainer`` in ``environ`` (default: ``os.environ``) if missing.

    Returns the new value. Used by the plugin's own commands before they call nnU-Net; users set the
    variable themselves with ``export nnUNet_extTrainer=$(glua_trainer_path)``.
    """
    env = os.environ if environ is None else environ
    folder = str(trainer_folder())
    current = [p for p in env.get(EXT_TRAINER_ENV, "").split(os.pathsep) if p.strip()]
    if folder not in current:
        current.append(folder)
    env[EXT_TRAINER_ENV] = os.pathsep.join(current)
    return env[EXT_TRAINER_ENV]


def print_trainer_path_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="glua_trainer_path",
        description="Print the folder that nnU-Net's nnUNet_extTrainer variable must list so that "
        "`nnUNetv2_train ... -tr GLUATrainer` and `nnUNetv2_predict ... -tr GLUATrainer` find the plugin's "
        "trainers. Typical use: export nnUNet_extTrainer=$(glua_trainer_path)",
    )
    parser.parse_args(argv)
    print(trainer_folder())
