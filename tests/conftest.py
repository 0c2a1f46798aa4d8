"""Shared test set-up: every test session gets its own nnU-Net folders, and nnU-Net uses 2 worker processes.

All test files share one nnUNet_raw/preprocessed/results, and nnU-Net refuses two dataset folders with one id.
Dataset ids in use (keep them unique when adding a test): 941-944 benchmark, 950-951 end-to-end CLI,
961-962 evaluation, 971-973 translator CLI, 974 GLUATrainer, 975-976 DDP, 977 self-training, 981-983 target data,
986-987 (989 absent) prediction on raw scans; conversion tests use 8xx ids (some in their own tmp_path raw folders).
"""
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


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test: the translator tests run small networks on 2 shared cores, where more
    threads only oversubscribe them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
