"""Shared test set-up: every test session gets its own nnU-Net folders, and nnU-Net uses 2 worker processes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="glua_tests_"))
for _name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[_name] = str(_SESSION_ROOT / _name)
    (_SESSION_ROOT / _name).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_compile", "f")


@pytest.fixture(scope="session")
def session_root() -> Path:
    """Root of this test session's nnU-Net folders (nnUNet_raw, nnUNet_preprocessed, nnUNet_results)."""
    return _SESSION_ROOT
