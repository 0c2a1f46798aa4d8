"""Preprocess the unlabelled target images with the SOURCE dataset's nnU-Net plans.

The target domain must reach the network exactly as the source does: same transpose, crop to the nonzero
region, normalization and resampling. This module therefore runs the configuration's own preprocessor class
(``configuration_manager.preprocessor_class``) on the target images, without any segmentation, and writes
the result in nnU-Net's on-disk case format (``nnUNetDatasetBlosc2``) into a folder of its own::

    $nnUNet_preprocessed/DatasetXXX_Name/
        nnUNetPlans_3d_fullres/                        nnU-Net's source training data (never touched here)
        glua_target_nnUNetPlans_3d_fullres/
            manifest.json                              per split: hash of plans + inputs, case list, state
            train/{case}.b2nd {case}_seg.b2nd {case}.pkl   unlabelled target training images
            test/...                                   target test images (only with include_test)

The folder lives next to the configuration's data folder, never inside it, where nnU-Net would take the
cases for labelled training data. The ``_seg`` arrays hold only -1 (outside the image's nonzero region) and 0:
no label file is read, the API takes no label argument, and the target test label folder is never opened.

The build is cached: the manifest stores, per split, a hash of the plans (the plans' global entries and the
resolved configuration, minus the training-only entries batch_size / architecture / batch_dice), the
configuration name, ``dataset.json`` and the input files (name, size, mtime).
A call with an unchanged hash and all cases present does nothing; a changed hash wipes the split and rebuilds
it (stale cases are never reused); an interrupted build resumes with the cases it has not finished. A file
lock in the dataset's preprocessed folder makes concurrent callers (several folds starting at once) build once.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from nnunet_glua.data.uda_dataset_info import TARGET_SPLITS, UDADatasetError, UDADatasetInfo, load_uda_info
from nnunet_glua.json_io import write_json
from nnunet_glua.nnunet_io import load_plans

#: bump when the on-disk layout or the content of the cases changes: old builds are then rebuilt
TARGET_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: configurations of nnU-Net's cascade; their stages depend on each other's predictions, which target data has none of
_CASCADE_HINT = ("GLUA adapts a single-stage configuration; nnU-Net's cascade (3d_lowres -> 3d_cascade_fullres) is "
                 "not supported because its second stage needs first-stage predictions for every training case. "
                 "Use 3d_fullres or 2d")
#: configuration entries that do not influence preprocessing (kept out of the cache hash)
_TRAINING_ONLY_KEYS = frozenset({"batch_size", "architecture", "batch_dice"})
#: the three files of one preprocessed case in nnU-Net's Blosc2 format; the .pkl is moved into place last, so a
#: case counts as complete only when its .pkl exists
_CASE_SUFFIXES = (".b2nd", "_seg.b2nd", ".pkl")


# ----------------------------------------------------------------------------------------------------------------
# locations
# ----------------------------------------------------------------------------------------------------------------
def _target_root_name(plans_identifier: str, configuration: str) -> str:
    return f"glua_target_{plans_identifier}_{configuration}"


def target_root(dataset: "int | str | UDADatasetInfo", configuration: str,
                plans_identifier: str = "nnUNetPlans") -> Path:
    """Folder holding the target data of (``plans_identifier``, ``configuration``) and its manifest."""
    info = dataset if isinstance(dataset, UDADatasetInfo) else load_uda_info(dataset)
    return info.preprocessed_folder / _target_root_name(plans_identifier, configuration)


def target_folder(dataset: "int | str | UDADatasetInfo", configuration: str, plans_identifier: str = "nnUNetPlans",
                  split: str = "train") -> Path:
    """Folder of preprocessed target cases of ``split`` (``"train"``: unlabelled training, ``"test"``: test images).

    It holds nnU-Net Blosc2 cases only, so ``nnUNetDatasetBlosc2(str(folder))`` and
    ``infer_dataset_class`` read it directly.
    """
    if split not in TARGET_SPLITS:
        raise ValueError(f"unknown target split '{split}'; use one of {TARGET_SPLITS}")
    return target_root(dataset, configuration, plans_identifier) / split


def _lock_path(info: UDADatasetInfo, plans_identifier: str, configuration: str) -> Path:
    return info.preprocessed_folder / f".{_target_root_name(plans_identifier, configuration)}.lock"


# ----------------------------------------------------------------------------------------------------------------
# plans
# ----------------------------------------------------------------------------------------------------------------
def load_plans_and_configuration(info: UDADatasetInfo, plans_identifier: str, configuration: str):
    """Return ``(plans_manager, configuration_manager, plans_file)`` with errors that say what to do."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_file = info.preprocessed_folder / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise UDADatasetError(plans_file, f"plans '{plans_identifier}' not found. Plan and preprocess the source "
                                          f"data first: nnUNetv2_plan_and_preprocess -d {info.dataset_id} "
                                          f"-c {configuration}"
                                          + ("" if plans_identifier == "nnUNetPlans"
                                             else f" (with the planner that writes '{plans_identifier}')"))
    plans = load_plans(plans_file, plans_identifier, configuration, UDADatasetError,
                       "re-run nnUNetv2_plan_experiment")
    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    if configuration_manager.previous_stage_name is not None or configuration_manager.next_stage_names:
        raise UDADatasetError(plans_file, f"configuration '{configuration}' is part of a cascade. {_CASCADE_HINT}")
    return plans_manager, configuration_manager, plans_file


def plans_fingerprint(plans: dict, configuration: str, configuration_dict: dict) -> dict:
    # Only what shapes this configuration's preprocessing: the resolved configuration (inheritance applied) and
    # the plans' global entries (transpose, intensity statistics, reader/writer). Re-planning another
    # configuration of the same plans therefore keeps this cache.
    # Entries that only steer training (batch size, network, dice flavour) are left out: users edit them in the
    # plans, and rebuilding the target data for them would cost time without changing a voxel.
    global_entries = {k: v for k, v in plans.items() if k != "configurations"}
    preprocessing_entries = {k: v for k, v in configuration_dict.items() if k not in _TRAINING_ONLY_KEYS}
    return {"plans": global_entries, "configuration_name": configuration, "configuration": preprocessing_entries}


def compute_target_hash(info: UDADatasetInfo, plans: dict, configuration: str, configuration_dict: dict,
                        split: str, image_files: dict[str, list[Path]]) -> str:
    """SHA-256 over plans (for this configuration), configuration name, ``dataset.json`` and the input files.

    Input files enter with their path relative to the raw folder, size and mtime, so replacing an image
    invalidates the cache without reading image contents.
    """
    inputs = []
    for case in sorted(image_files):
        for path in image_files[case]:
            st = path.stat()
            try:
                rel = str(path.relative_to(info.raw_folder))
            except ValueError:
                rel = str(path)
            inputs.append([case, rel, st.st_size, st.st_mtime_ns])
    payload = {
        "format_version": TARGET_FORMAT_VERSION,
        "split": split,
        **plans_fingerprint(plans, configuration, configuration_dict),
        "dataset_json": info.dataset_json,
        "inputs": inputs,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------------------------------------
def read_manifest(root: Path) -> dict:
    """The manifest of a target data folder (an empty skeleton if there is none yet)."""
    path = root / MANIFEST_NAME
    if path.is_file():
        try:
            with open(path) as f:
                manifest = json.load(f)
            if isinstance(manifest, dict) and isinstance(manifest.get("splits"), dict):
                return manifest
        except (OSError, json.JSONDecodeError):
            pass  # an unreadable manifest means an unknown state: rebuild everything
    return {"format_version": TARGET_FORMAT_VERSION, "splits": {}}


def case_is_complete(folder: Path, case: str) -> bool:
    """Whether all three files of ``case`` are in ``folder`` (the ``.pkl`` is written last)."""
    return all((folder / f"{case}{s}").is_file() for s in _CASE_SUFFIXES)


def _case_of_file(name: str) -> str | None:
    for suffix in ("_seg.b2nd", ".b2nd", ".pkl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _split_is_current(folder: Path, entry: dict | None, digest: str, cases: Sequence[str]) -> bool:
    return (entry is not None and entry.get("hash") == digest and entry.get("complete") is True
            and sorted(entry.get("cases", [])) == sorted(cases)
            and all(case_is_complete(folder, c) for c in cases))


# ----------------------------------------------------------------------------------------------------------------
# one case (runs in worker processes)
# ----------------------------------------------------------------------------------------------------------------
_WORKER_STATE: dict = {}


def _init_worker(plans_manager, configuration_manager, dataset_json: dict, out_dir: str, staging_dir: str) -> None:
    _WORKER_STATE.update(plans_manager=plans_manager, configuration_manager=configuration_manager,
                         dataset_json=dataset_json, out_dir=Path(out_dir), staging_dir=Path(staging_dir))


def _run_case_from_state(case: str, image_files: list[str]) -> tuple[str, tuple[int, ...]]:
    s = _WORKER_STATE
    return preprocess_target_case(case, image_files, s["plans_manager"], s["configuration_manager"],
                                  s["dataset_json"], s["out_dir"], s["staging_dir"])


def preprocess_target_case(case: str, image_files: Sequence["str | os.PathLike"], plans_manager,
                           configuration_manager, dataset_json: dict, out_dir: Path,
                           staging_dir: Path) -> tuple[str, tuple[int, ...]]:
    """Preprocess one unlabelled case and write it to ``out_dir`` atomically; returns ``(case, data shape)``.

    Runs ``configuration_manager.preprocessor_class().run_case(image_files, None, ...)``: no segmentation goes
    in, so the stored ``_seg`` array marks only the image's nonzero region (0) and the outside (-1).
    ``properties['class_locations']`` is an empty dict (no foreground to oversample), as nnU-Net's loader expects.
    """
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    data, seg, properties = preprocessor.run_case([str(f) for f in image_files], None, plans_manager,
                                                  configuration_manager, dataset_json)
    if seg.max() > 0:
        # run_case got no label file, so this can only be a preprocessor that invents labels: refuse it
        raise RuntimeError(f"{image_files[0]}: the preprocessor {type(preprocessor).__name__} produced foreground "
                           f"labels for an unlabelled target case; target data must not carry labels")
    properties["class_locations"] = {}
    save_case_atomically(case, data, seg, properties, out_dir, staging_dir, tuple(configuration_manager.patch_size))
    return case, tuple(int(i) for i in data.shape)


def save_case_atomically(case: str, data: np.ndarray, seg: np.ndarray, properties: dict, out_dir: Path,
                         staging_dir: Path, patch_size: tuple[int, ...]) -> None:
    """Write one preprocessed case (``data`` float32 ``(C, *spatial)``, ``seg`` int16 ``(1, *spatial)``) in nnU-Net's
    Blosc2 format into ``staging_dir`` and move it into ``out_dir``, its ``.pkl`` last: a case whose ``.pkl`` exists
    is complete (:func:`case_is_complete`)."""
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    data = data.astype(np.float32, copy=False)
    seg = seg.astype(np.int16, copy=False)
    blocks, chunks = comp_blosc2_params(data.shape, patch_size, data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch_size, seg.itemsize)
    staging_dir.mkdir(parents=True, exist_ok=True)
    nnUNetDatasetBlosc2.save_case(data, seg, properties, str(staging_dir / case), chunks=chunks, blocks=blocks,
                                  chunks_seg=chunks_seg, blocks_seg=blocks_seg)
    for suffix in _CASE_SUFFIXES:
        os.replace(staging_dir / f"{case}{suffix}", out_dir / f"{case}{suffix}")


def _nnunet_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnunetv2")
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitReport:
    """What :func:`build_target_data` did for one split.

    ``action`` is ``"up to date"``, ``"built"`` (first build), ``"rebuilt"`` (hash changed, old cases
    discarded) or ``"resumed"`` (same hash, unfinished cases completed).
    """

    split: str
    folder: Path
    action: str
    num_cases: int
    num_processed: int
    seconds: float


def _run_cases(todo: dict[str, list[Path]], plans_manager, configuration_manager, dataset_json: dict,
               out_dir: Path, staging_dir: Path, num_processes: int, desc: str, show_progress: bool) -> None:
    items = sorted(todo.items())
    with tqdm(total=len(items), desc=desc, unit="case", disable=not show_progress) as bar:
        if num_processes <= 1 or len(items) <= 1:
            # no worker start-up cost (each spawned worker imports nnU-Net) for tiny jobs
            for case, files in items:
                preprocess_target_case(case, files, plans_manager, configuration_manager, dataset_json, out_dir,
                                       staging_dir)
                bar.update()
            return
        workers = min(num_processes, len(items))
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=(plans_manager, configuration_manager, dataset_json, str(out_dir),
                                               str(staging_dir))) as pool:
                futures = {pool.submit(_run_case_from_state, case, [str(f) for f in files]): case
                           for case, files in items}
                for future in as_completed(futures):
                    try:
                        future.result()
                    except BrokenProcessPool:
                        raise
                    except Exception as e:
                        for other in futures:
                            other.cancel()
                        raise RuntimeError(f"preprocessing target case '{futures[future]}' failed: {e}") from e
                    bar.update()
        except BrokenProcessPool as e:
            raise RuntimeError(f"a preprocessing worker died without an error message, most likely killed by the "
                               f"operating system for lack of memory. Retry with fewer processes (-np "
                               f"{max(1, workers // 2)}); finished cases are kept") from e


def _build_split(info: UDADatasetInfo, split: str, root: Path, manifest: dict, plans: dict, plans_manager,
                 configuration_manager, configuration: str, num_processes: int, verbose: bool) -> SplitReport:
    start = time.monotonic()
    image_files = info.target_image_files(split)
    digest = compute_target_hash(info, plans, configuration, configuration_manager.configuration, split,
                                 image_files)
    folder = root / split
    staging = root / f".staging-{split}"
    entry = manifest["splits"].get(split)
    cases = sorted(image_files)
    if _split_is_current(folder, entry, digest, cases):
        return SplitReport(split, folder, "up to date", len(cases), 0, time.monotonic() - start)

    if entry is None or entry.get("hash") != digest:
        action = "built" if entry is None else "rebuilt"
        shutil.rmtree(folder, ignore_errors=True)
        # the new hash is recorded before any case is written, so every case file found in the folder later
        # (after an interruption, say) was made under that hash and may be reused when resuming
        manifest["splits"][split] = {"hash": digest, "complete": False, "cases": cases}
        write_json(manifest, root / MANIFEST_NAME)
    else:
        action = "resumed"
    shutil.rmtree(staging, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)

    # drop leftovers: half-moved cases and cases that are no longer part of the split
    for name in os.listdir(folder):
        case = _case_of_file(name)
        if case is None or case not in image_files or not case_is_complete(folder, case):
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    todo = {c: image_files[c] for c in cases if not case_is_complete(folder, c)}
    if todo:
        _run_cases(todo, plans_manager, configuration_manager, info.dataset_json, folder, staging, num_processes,
                   desc=f"Preprocessing target {split} cases", show_progress=verbose)
    shutil.rmtree(staging, ignore_errors=True)

    manifest["splits"][split] = {
        "hash": digest,
        "complete": True,
        "cases": cases,
        "num_cases": len(cases),
        "source_images_folder": str(info.images_folder(split).relative_to(info.raw_folder)),
        "preprocessor": configuration_manager.preprocessor_name,
        "nnunetv2_version": _nnunet_version(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(manifest, root / MANIFEST_NAME)
    return SplitReport(split, folder, action, len(cases), len(todo), time.monotonic() - start)


def build_target_data(dataset: "int | str", configuration: str, plans_identifier: str = "nnUNetPlans",
                      include_test: bool = False, num_processes: int | None = None,
                      verbose: bool = True) -> list[SplitReport]:
    """Build (or confirm) the preprocessed target data; returns one :class:`SplitReport` per split.

    See :func:`preprocess_target` for the behaviour; this variant reports what was done.
    """
    from nnunetv2.configuration import default_num_processes

    info = load_uda_info(dataset)
    splits = ["train"] + (["test"] if include_test else [])
    # input problems first (empty or inconsistent target folders): they need fixing before any planning helps
    for split in splits:
        info.target_image_files(split)
    plans_manager, configuration_manager, _ = load_plans_and_configuration(info, plans_identifier, configuration)
    root = target_root(info, configuration, plans_identifier)
    data_folder = (info.preprocessed_folder / configuration_manager.data_identifier).resolve()
    if root.resolve() == data_folder or data_folder in root.resolve().parents:
        raise UDADatasetError(root, f"the target folder would lie inside the configuration's data folder "
                                    f"{data_folder}, where nnU-Net would train on it. Rename the plans' "
                                    f"data_identifier")
    n_proc = default_num_processes if num_processes is None else max(1, int(num_processes))

    lock = FileLock(str(_lock_path(info, plans_identifier, configuration)))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        if verbose:
            print(f"Waiting for another process that is preprocessing the target data of {info.dataset_name} "
                  f"({plans_identifier}, {configuration}); lock file {lock.lock_file}", flush=True)
        lock.acquire()
    try:
        root.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(root)
        if manifest.get("format_version") != TARGET_FORMAT_VERSION:
            manifest = {"format_version": TARGET_FORMAT_VERSION, "splits": {}}
        manifest.update(dataset=info.dataset_name, plans_identifier=plans_identifier, configuration=configuration)
        return [_build_split(info, split, root, manifest, plans_manager.plans, plans_manager, configuration_manager,
                             configuration, n_proc, verbose) for split in splits]
    finally:
        lock.release()


def preprocess_target(dataset: "int | str", configuration: str, plans_identifier: str = "nnUNetPlans",
                      include_test: bool = False, num_processes: int | None = None, verbose: bool = True) -> Path:
    """Preprocess the target images of ``dataset`` with its source plans; returns the ``train`` target folder.

    - ``dataset``: nnU-Net dataset id or name; its raw ``dataset.json`` must hold a ``"glua"`` block.
    - ``configuration``: a single-stage configuration of the plans (``3d_fullres``, ``2d``, ...).
    - ``include_test``: also preprocess the target test IMAGES into ``.../test`` (for inspection and
      evaluation-style checks; their labels are never read).
    - ``num_processes``: worker processes (spawn); default nnU-Net's ``default_num_processes``
      (environment variable ``nnUNet_def_n_proc``).

    Idempotent and resumable (see the module docstring). Raises :class:`UDADatasetError` for an unknown
    dataset, missing plans or configuration, a cascade configuration, a ``dataset.json`` without ``"glua"``
    block or an empty target folder.
    """
    reports = build_target_data(dataset, configuration, plans_identifier, include_test, num_processes, verbose)
    if verbose:
        for r in reports:
            print(_describe(r))
    return reports[0].folder


def target_is_up_to_date(dataset: "int | str", configuration: str, plans_identifier: str = "nnUNetPlans",
                         split: str = "train") -> bool:
    """Whether the target ``split`` folder exists, is complete and matches the current plans and images."""
    info = load_uda_info(dataset)
    plans_manager, configuration_manager, _ = load_plans_and_configuration(info, plans_identifier, configuration)
    image_files = info.target_image_files(split)
    digest = compute_target_hash(info, plans_manager.plans, configuration, configuration_manager.configuration,
                                 split, image_files)
    root = target_root(info, configuration, plans_identifier)
    entry = read_manifest(root)["splits"].get(split)
    return _split_is_current(root / split, entry, digest, sorted(image_files))


def _describe(report: SplitReport) -> str:
    if report.action == "up to date":
        return f"target {report.split}: up to date, {report.num_cases} cases in {report.folder}"
    return (f"target {report.split}: {report.action}, preprocessed {report.num_processed} of {report.num_cases} "
            f"cases in {report.seconds:.1f} s -> {report.folder}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glua_preprocess_target",
        description="Preprocess the unlabelled target-domain images of a UDA dataset with the SOURCE dataset's "
                    "nnU-Net plans (same transpose, cropping, normalization and resampling), into "
                    "$nnUNet_preprocessed/DatasetXXX_Name/glua_target_<PLANS>_<CONFIG>/train (and /test). "
                    "Run nnUNetv2_plan_and_preprocess first. Safe to re-run: an up-to-date folder is left alone, "
                    "a re-planned dataset is rebuilt, an interrupted run resumes. GLUA training calls this "
                    "automatically; use the command to prepare data ahead of time.")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (e.g. 701) or name (Dataset701_...)")
    parser.add_argument("-c", "--configuration", required=True,
                        help="configuration of the plans, e.g. 3d_fullres or 2d (cascade stages are not supported)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", dest="plans_identifier",
                        help="plans identifier (default: nnUNetPlans)")
    parser.add_argument("--include-test", action="store_true",
                        help="also preprocess the target TEST images (labels are never read)")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="worker processes (default: nnU-Net's default_num_processes, set by nnUNet_def_n_proc)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        reports = build_target_data(args.dataset, args.configuration, args.plans_identifier, args.include_test,
                                    args.num_processes, verbose=not args.quiet)
    except UDADatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for r in reports:
        print(_describe(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
