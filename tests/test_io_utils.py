"""Staged directories: a killed run's staging folder is removed by the next run, a live run's folder never is."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from nnunet_glua import io_utils
from nnunet_glua.io_utils import STAGING_LOCK_SUFFIX, remove_stale_staging, staged_directory

# builds argv[1] with staged_directory, prints the staging folder, then dies (argv[2] == "kill") or waits for a line
_WRITER = """
import os, signal, sys
from nnunet_glua.io_utils import staged_directory
with staged_directory(sys.argv[1]) as tmp:
    (tmp / "case_0000.nii.gz").write_bytes(b"half a volume")
    print(tmp, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()
"""


def _start_writer(final: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(final), mode], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    assert line, "the writer process printed no staging folder"
    return process, Path(line)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path: Path, capsys) -> None:
    process, staging = _start_writer(tmp_path / "Dataset701_Killed", "kill")
    assert process.wait(timeout=60) == -9
    assert staging.is_dir() and (staging / "case_0000.nii.gz").is_file()
    with staged_directory(tmp_path / "Dataset702_Next") as tmp:
        (tmp / "dataset.json").write_text("{}")
    assert not staging.exists() and _hidden(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset702_Next"]
    assert f"removed {staging}: an unfinished folder left by an interrupted run" in capsys.readouterr().err


def test_a_folder_another_live_process_is_building_is_kept(tmp_path: Path) -> None:
    process, staging = _start_writer(tmp_path / "Dataset703_Live", "wait")
    try:
        with staged_directory(tmp_path / "Dataset704_Other") as tmp:
            (tmp / "dataset.json").write_text("{}")
        assert remove_stale_staging(tmp_path) == []
        assert (staging / "case_0000.nii.gz").is_file()
    finally:
        process.communicate("\n", timeout=60)
    assert process.returncode == 0
    assert (tmp_path / "Dataset703_Live" / "case_0000.nii.gz").is_file()
    assert _hidden(tmp_path) == []


def test_a_folder_whose_lock_is_held_in_this_process_is_kept(tmp_path: Path) -> None:
    staging = tmp_path / ".partial-0123abcd-Dataset705_Held"
    staging.mkdir()
    with FileLock(str(tmp_path / (staging.name + STAGING_LOCK_SUFFIX))):
        assert remove_stale_staging(tmp_path) == []
        assert staging.is_dir()
    assert remove_stale_staging(tmp_path) == [staging]
    assert _hidden(tmp_path) == []


def test_nested_staging_in_one_parent_keeps_the_outer_folder(tmp_path: Path) -> None:
    # write_uda_datasets builds the adaptation and the upper-bound dataset side by side
    with staged_directory(tmp_path / "Dataset706_A") as outer:
        (outer / "a.txt").write_text("a")
        with staged_directory(tmp_path / "Dataset707_B") as inner:
            (inner / "b.txt").write_text("b")
        assert (outer / "a.txt").is_file()
    assert (tmp_path / "Dataset706_A" / "a.txt").is_file() and (tmp_path / "Dataset707_B" / "b.txt").is_file()
    assert _hidden(tmp_path) == []


def test_overwrite_replaces_the_old_folder_and_leaves_nothing_hidden(tmp_path: Path) -> None:
    final = tmp_path / "Dataset708_Twice"
    for text in ("old", "new"):
        with staged_directory(final, overwrite=True) as tmp:
            (tmp / "version.txt").write_text(text)
    assert (final / "version.txt").read_text() == "new" and _hidden(tmp_path) == []


def test_a_staging_folder_from_before_lock_files_is_removed(tmp_path: Path) -> None:
    staging = tmp_path / ".partial-89abcdef-Dataset709_Old"
    (staging / "imagesTr").mkdir(parents=True)
    assert remove_stale_staging(tmp_path) == [staging]
    assert _hidden(tmp_path) == []


def test_only_our_staging_folders_are_touched(tmp_path: Path) -> None:
    keep = [".partial-notahex-Dataset710", ".partial-0123abc-Dataset711", ".partially-0123abcd-X", ".hidden",
            "Dataset712_Plain"]
    for name in keep:
        (tmp_path / name).mkdir()
    (tmp_path / ".partial-0123abcd-case.nii.gz").write_bytes(b"a file being written by atomic_path")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / ".partial-fedcba98-Link").symlink_to(target, target_is_directory=True)
    assert remove_stale_staging(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        keep + [".partial-0123abcd-case.nii.gz", ".partial-fedcba98-Link", "elsewhere"])


def test_lock_files_left_without_their_folder_are_removed_once_old(tmp_path: Path) -> None:
    lock = tmp_path / (".partial-0123abcd-Dataset713" + STAGING_LOCK_SUFFIX)
    lock.touch()
    remove_stale_staging(tmp_path)
    assert lock.exists()  # young: its writer may be about to lock it and create the folder
    old = time.time() - 2 * io_utils._ORPHAN_LOCK_AGE_S
    os.utime(lock, (old, old))
    remove_stale_staging(tmp_path)
    assert not lock.exists()


def test_a_failing_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with staged_directory(tmp_path / "Dataset714_Fails") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
