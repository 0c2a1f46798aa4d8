"""Crash-safe file output: nothing is ever left half-written.

Every writer in the package writes to a temporary name in the destination folder and renames on success
(a rename within one file system is atomic), so an interrupted run leaves either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import SimpleITK as sitk


def _temporary_sibling(final: Path) -> Path:
    # keep the original suffixes: SimpleITK picks the file format from them
    prefix = ".partial-" + uuid.uuid4().hex[:8] + "-"
    return final.with_name(prefix + final.name)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; it is renamed to ``final`` when the block succeeds.

    On an exception the temporary file is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write a SimpleITK image atomically (format from the suffix, e.g. ``.nii.gz``)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a whole directory under a temporary name and move it to ``final`` only if the block succeeds.

    Raises ``FileExistsError`` if ``final`` exists and ``overwrite`` is false. With ``overwrite``, the old
    directory is replaced only after the new one is complete. On failure the partial directory is deleted.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite (--overwrite) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = _temporary_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
