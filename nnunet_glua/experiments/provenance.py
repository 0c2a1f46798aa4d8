"""Where a result came from: the machine, the project's commit and the SHA-256 of the files it depends on."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

import nnunet_glua

__all__ = ["machine_info", "project_commit", "sha256_prefix"]


def sha256_prefix(path: "str | os.PathLike", length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of a file's bytes (read in chunks: checkpoints are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Host name, CPU model and count, GPU (name as torch reports it, ``None`` without CUDA), versions of
    Python, torch (and its CUDA build), nnunetv2 and this package."""
    gpu, cuda = None, None
    try:
        import torch

        cuda = torch.version.cuda
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA set-up must not stop the report; the GPU is then unknown
        gpu = None
    return {
        "hostname": platform.node() or "unknown",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torch_cuda": cuda,
        "nnunetv2": _version("nnunetv2"),
        "nnunet_glua": nnunet_glua.__version__,
    }


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def project_commit() -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool or None}`` of the git checkout this package is imported
    from; ``"unknown"`` for an installed copy (or a checkout of another project that happens to contain it)."""
    package = Path(nnunet_glua.__file__).resolve().parent
    top = _git(["rev-parse", "--show-toplevel"], package.parent)
    if not top or (Path(top) / "nnunet_glua").resolve() != package:
        return {"commit": "unknown", "dirty": None}
    sha = _git(["rev-parse", "HEAD"], package.parent)
    status = _git(["status", "--porcelain", "--untracked-files=no"], package.parent)
    return {"commit": sha or "unknown", "dirty": None if status is None else bool(status)}
