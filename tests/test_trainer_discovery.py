"""nnU-Net must find the plugin's trainers through nnUNet_extTrainer, from a checkout and from a plain install."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nnunet_glua
from nnunet_glua.paths import ensure_trainer_folder_registered, trainer_folder

REPO = Path(__file__).resolve().parents[1]
SHORT_TRAINER = "GLUATrainer_NoLocalMask_Short"

_LOOKUP = (
    "import pickle, sys\n"
    "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
    f"cls = find({SHORT_TRAINER!r})\n"
    "pickle.dumps(cls)\n"  # nnU-Net's spawn pools pickle the trainer class
    "import nnunet_glua\n"
    "print(cls.__module__, nnunet_glua.__file__)\n"
)


def _lookup_in_subprocess(ext_folder: Path, cwd: Path, pythonpath: str | None = None) -> str:
    env = dict(os.environ, nnUNet_extTrainer=str(ext_folder))
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([sys.executable, "-c", _LOOKUP], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_trainer_folder_holds_only_shims_and_not_the_package():
    folder = trainer_folder()
    assert folder.is_dir()
    assert (folder / "glua_trainers.py").is_file()
    # pointing nnUNet_extTrainer at a folder containing the package would evict the package's modules
    assert not (folder / "nnunet_glua").exists()
    assert folder != Path(nnunet_glua.__file__).resolve().parents[1]


def test_trainer_path_command_prints_the_folder():
    out = subprocess.run([sys.executable, "-c", "from nnunet_glua.paths import print_trainer_path_main as m; m([])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out) == trainer_folder()


def test_register_appends_once():
    env = {"nnUNet_extTrainer": "/some/other"}
    ensure_trainer_folder_registered(env)
    ensure_trainer_folder_registered(env)
    parts = env["nnUNet_extTrainer"].split(os.pathsep)
    assert parts == ["/some/other", str(trainer_folder())]


@pytest.mark.parametrize("folder", [trainer_folder(), REPO / "trainers"], ids=["package_folder", "checkout_trainers"])
def test_nnunet_finds_short_trainer_from_checkout(folder, tmp_path):
    module, package_file = _lookup_in_subprocess(folder, cwd=tmp_path).split()
    # the class comes from the package, not from the evicted shim module: it stays picklable
    assert module == "nnunet_glua.training.variants"
    assert Path(package_file).resolve().is_relative_to(REPO)


def test_nnunet_finds_short_trainer_from_non_editable_install(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True, capture_output=True)
    folder_out = subprocess.run(
        [sys.executable, "-c", "from nnunet_glua.paths import trainer_folder; print(trainer_folder())"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(target)), capture_output=True, text=True, check=True)
    installed_folder = Path(folder_out.stdout.strip())
    assert installed_folder.is_relative_to(target.resolve())
    module, package_file = _lookup_in_subprocess(installed_folder, cwd=tmp_path, pythonpath=str(target)).split()
    assert module == "nnunet_glua.training.variants"
    assert Path(package_file).resolve().is_relative_to(target.resolve())
