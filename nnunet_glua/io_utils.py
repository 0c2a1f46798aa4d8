"""Crash-safe file output: nothing is ever left half-written.

Every writer in the package writes to a temporary name in the destination folder and renames on success
(a rename within one file system is atomic), so an interrupted run leaves either the old file or the new one.

A whole directory is built under a hidden name, ``.partial-<8 hex digits>-<final name>``, next to its destination
(:func:`staged_directory`). A run that is killed cannot remove its staging folder, so each staging folder comes
with a lock file beside it (``<staging name>.staging-lock``) that its writer holds for the folder's whole life.
The operating system releases the lock when the writer's process dies, which is how a later run tells a
leftover from a folder another live run is still building: :func:`remove_stale_staging` removes only staging
folders whose lock it can take without waiting.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import SimpleITK as sitk
from filelock import FileLock, Timeout

STAGING_PREFIX = ".partial-"
STAGING_LOCK_SUFFIX = ".staging-lock"
_STAGING_NAME = re.compile(r"^" + re.escape(STAGING_PREFIX) + r"[0-9a-f]{8}-.+$")
# A writer creates its lock file and locks it in one step; another process that opens the file in between
# could take the lock for an instant. Lock files younger than this are never removed without their folder,
# so such a race cannot cost a live writer its lock.
_ORPHAN_LOCK_AGE_S = 60.0
# staging folders this process is building: never stale for it, whatever the lock implementation
_held_here: set[str] = set()  # absolute paths


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


def _lock_file(staging: Path) -> Path:
    return staging.with_name(staging.name + STAGING_LOCK_SUFFIX)


@contextlib.contextmanager
def _locked_staging_name(final: Path) -> Iterator[Path]:
    """Yield a fresh staging path next to ``final`` (nothing created there) whose lock this process holds until
    the block exits; the lock file is removed then. The caller removes or renames the folder inside the block."""
    staging = _temporary_sibling(final)
    lock_path = _lock_file(staging)
    lock = FileLock(str(lock_path))
    # a fresh random name: nobody else waits for this lock
    lock.acquire(timeout=10)
    key = os.path.abspath(staging)
    _held_here.add(key)
    try:
        yield staging
    finally:
        _held_here.discard(key)
        lock.release()
        lock_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _lock_if_free(lock_path: Path) -> Iterator[bool]:
    """Take the lock at ``lock_path`` without waiting. Yields ``True`` if it was free (it is then held until the
    block exits), ``False`` if a live process holds it or it cannot be taken."""
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _try_remove_stale(staging: Path) -> bool:
    """Remove the staging folder ``staging`` if no live process holds its lock; ``True`` if it was removed."""
    lock_path = _lock_file(staging)
    removed = False
    with _lock_if_free(lock_path) as free:
        # not a folder any more: renamed into place or removed by its writer after it was listed
        if free and staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
            removed = not staging.exists()
    if free:
        lock_path.unlink(missing_ok=True)
    return removed


def _remove_orphan_lock(lock_path: Path) -> None:
    """Remove a lock file whose staging folder is gone (its writer was killed after moving the folder)."""
    staging = lock_path.with_name(lock_path.name[: -len(STAGING_LOCK_SUFFIX)])
    try:
        if staging.exists() or time.time() - lock_path.stat().st_mtime < _ORPHAN_LOCK_AGE_S:
            return
    except OSError:
        return
    with _lock_if_free(lock_path) as free:
        orphan = free and not staging.exists()
    if orphan:
        lock_path.unlink(missing_ok=True)


def remove_stale_staging(parent: "str | os.PathLike") -> list[Path]:
    """Remove the staging folders in ``parent`` that interrupted runs left behind; returns the folders removed.

    Only this module's staging folders are considered (``.partial-<8 hex digits>-<name>`` directories, not
    symbolic links), and of those only the ones whose lock no live process holds: a folder that another run
    is still building, in this process or any other, is kept. Lock files left without their folder are
    removed too. Folders that cannot be removed (permissions) are left and not reported.
    """
    parent = Path(parent)
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return []
    removed = []
    for entry in entries:
        if not _STAGING_NAME.match(entry.name):
            continue
        path = Path(entry.path)
        if entry.name.endswith(STAGING_LOCK_SUFFIX):
            if entry.is_file(follow_symlinks=False):
                _remove_orphan_lock(path)
        elif (entry.is_dir(follow_symlinks=False) and os.path.abspath(path) not in _held_here
              and _try_remove_stale(path)):
            removed.append(path)
    return removed


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a whole directory under a temporary name and move it to ``final`` only if the block succeeds.

    Yields the (empty, existing) staging folder. Raises ``FileExistsError`` if ``final`` exists and ``overwrite``
    is false. With ``overwrite``, the old directory is replaced only after the new one is complete. On failure
    the partial directory is deleted; if the process is killed instead, the next ``staged_directory`` in the
    same parent folder removes it (:func:`remove_stale_staging`) and says so on stderr.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite (--overwrite) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_staging(final.parent):
        print(f"removed {stale}: an unfinished folder left by an interrupted run", file=sys.stderr)
    with _locked_staging_name(final) as tmp:
        tmp.mkdir()
        try:
            yield tmp
            if final.exists():
                with _locked_staging_name(final) as old:
                    os.replace(final, old)
                    os.replace(tmp, final)
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
