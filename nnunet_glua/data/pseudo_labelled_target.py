"""Pseudo-labelled target cases as nnU-Net's training loader sees them in the self-training stage.

A pseudo-label set (:mod:`nnunet_glua.data.pseudo_labels`) holds, for the unlabelled target *training* images, label
files in each image's geometry whose untrusted voxels carry the ignore label. This module

* **preprocesses** the kept cases of a set with the SOURCE dataset's plans, image and pseudo-label together (the
  configuration's own preprocessor, exactly as nnU-Net preprocesses labelled cases), into::

      $nnUNet_preprocessed/<dataset>/glua_pseudo_<plans>_<configuration>/<set name>/
          manifest.json                       hash of the set, the plans and the input files; cases; state
          {case}.b2nd {case}_seg.b2nd {case}.pkl

  The ``_seg`` arrays hold the pseudo-labels (ignore label included); ``class_locations`` cover the dataset's
  foreground labels only, so nnU-Net's foreground oversampling centres patches on pseudo-labelled structures, never
  on ignored voxels. Cached like the target data: an unchanged hash does nothing, a changed one rebuilds, an
  interrupted build resumes, every case appears atomically.
* offers :class:`WithPseudoLabelledTarget`, a drop-in for nnU-Net's training dataset that adds those cases
  (identifiers ``<case>__pseudo``) with the probability ``pseudo_label_fraction``.

Guards: a set is used only when it is complete, was made for this dataset with its labels and this ignore label, and
none of its cases is a target test case or anything but an unlabelled target training case.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_glua.data.pseudo_labels import LABELS_FOLDER, PSEUDO_LABEL_FOLDER, SET_FILE, PseudoLabelError
from nnunet_glua.data.target_preprocessing import (plans_fingerprint, case_is_complete, load_plans_and_configuration,
                                                   save_case_atomically)
from nnunet_glua.data.uda_dataset_info import UDADatasetInfo
from nnunet_glua.json_io import read_json, write_json

__all__ = ["PSEUDO_LABELS_ENV", "PSEUDO_SUFFIX", "PseudoLabelSet", "find_pseudo_label_set", "pseudo_labelled_folder",
           "preprocess_pseudo_labelled_cases", "structure_means", "WithPseudoLabelledTarget", "pseudo_labelled_samples"]

#: names the pseudo-label set a self-training run uses (a set name under the dataset's pseudolabels/ folder, or the
#: path of a set folder); without it the dataset's only set is used
PSEUDO_LABELS_ENV = "GLUA_PSEUDO_LABELS"
PSEUDO_SUFFIX = "__pseudo"
PSEUDO_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PseudoLabelSet:
    """A complete pseudo-label set: ``name``, ``folder``, the kept ``cases`` (each with a label file), the
    ``ignore_label`` and ``digest`` (SHA-256 of its ``pseudo_label_set.json``, which names the model it came from)."""

    name: str
    folder: Path
    cases: tuple[str, ...]
    ignore_label: int
    digest: str
    model: dict

    def label_file(self, case: str, file_ending: str) -> Path:
        return self.folder / LABELS_FOLDER / f"{case}{file_ending}"


def _available_sets(info: UDADatasetInfo) -> list[str]:
    root = info.raw_folder / PSEUDO_LABEL_FOLDER
    return sorted(p.name for p in root.iterdir() if (p / SET_FILE).is_file()) if root.is_dir() else []


def find_pseudo_label_set(info: UDADatasetInfo, name: str | None, ignore_label: int) -> PseudoLabelSet:
    """The set ``name`` (a set name or a set folder's path; ``None``: ``$GLUA_PSEUDO_LABELS``, else the dataset's only
    set), checked against ``info`` (the adaptation dataset the trainer trains on) and ``ignore_label``.

    Raises :class:`~nnunet_glua.data.pseudo_labels.PseudoLabelError` naming the file and what to do."""
    name = name or os.environ.get(PSEUDO_LABELS_ENV) or None
    if name is None:
        available = _available_sets(info)
        if len(available) != 1:
            raise PseudoLabelError(info.raw_folder / PSEUDO_LABEL_FOLDER,
                                   f"holds {len(available)} pseudo-label sets ({', '.join(available) or 'none'}); "
                                   + ("make one with glua_pseudo_label first" if not available else
                                      f"choose one with {PSEUDO_LABELS_ENV}=<name>"))
        name = available[0]
    folder = Path(name) if os.sep in name else info.raw_folder / PSEUDO_LABEL_FOLDER / name
    set_file = folder / SET_FILE
    if not set_file.is_file():
        raise PseudoLabelError(set_file, f"not found; available sets of {info.dataset_name}: "
                                         f"{', '.join(_available_sets(info)) or 'none'} (glua_pseudo_label makes one)")
    state = read_json(set_file, PseudoLabelError, advice="make the set again with glua_pseudo_label --overwrite")
    if not state.get("complete"):
        raise PseudoLabelError(set_file, "is incomplete; run the same glua_pseudo_label command again to finish it")
    if state.get("dataset") != info.dataset_name:
        raise PseudoLabelError(set_file, f"was made for {state.get('dataset')}, not {info.dataset_name}")
    if int(state.get("ignore_label", -1)) != ignore_label:
        raise PseudoLabelError(set_file, f"uses ignore label {state.get('ignore_label')}, this dataset's labels need "
                                         f"{ignore_label}; make the set again with glua_pseudo_label")
    cases = tuple(sorted(c for c, r in state["cases"].items() if r.get("status") == "kept"))
    leaked = sorted(set(state["cases"]) & set(info.target_test_cases))
    unknown = sorted(set(state["cases"]) - set(info.target_training_cases))
    if leaked or unknown:
        raise PseudoLabelError(set_file, f"lists target test cases {leaked} / cases that are not unlabelled target "
                                         f"training cases {unknown}: self-training uses only the target training "
                                         "images; make the set again with glua_pseudo_label")
    if not cases:
        raise PseudoLabelError(set_file, "keeps no case (every case was dropped); relax the filter of "
                                         "glua_pseudo_label or train the model longer")
    found = PseudoLabelSet(folder.name, folder, cases, ignore_label, hashlib.sha256(set_file.read_bytes()).hexdigest(),
                           dict(state.get("identity", {})))
    missing = [c for c in cases if not found.label_file(c, info.file_ending).is_file()]
    if missing:
        raise PseudoLabelError(folder / LABELS_FOLDER, f"label files of kept cases {missing[:5]} are missing; make "
                                                       "the set again with glua_pseudo_label --overwrite")
    return found


def pseudo_labelled_folder(info: UDADatasetInfo, plans_identifier: str, configuration: str,
                           pseudo_set: PseudoLabelSet) -> Path:
    """``$nnUNet_preprocessed/<dataset>/glua_pseudo_<plans>_<configuration>/<set name>``."""
    return info.preprocessed_folder / f"glua_pseudo_{plans_identifier}_{configuration}" / pseudo_set.name


def _build_hash(info: UDADatasetInfo, plans: dict, configuration: str, configuration_dict: dict,
                pseudo_set: PseudoLabelSet, inputs: dict[str, tuple[Path, Path]]) -> str:
    stats = [[case, str(img), img.stat().st_size, img.stat().st_mtime_ns, str(lab), lab.stat().st_size,
              lab.stat().st_mtime_ns] for case, (img, lab) in sorted(inputs.items())]
    payload = {"format_version": PSEUDO_FORMAT_VERSION, "set": pseudo_set.digest, "dataset_json": info.dataset_json,
               **plans_fingerprint(plans, configuration, configuration_dict), "inputs": stats}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def preprocess_pseudo_labelled_cases(info: UDADatasetInfo, plans_identifier: str, configuration: str,
                                     pseudo_set: PseudoLabelSet, log=print) -> Path:
    """Preprocess the kept cases of ``pseudo_set`` (image + pseudo-label) with the dataset's plans into
    :func:`pseudo_labelled_folder`, unless that is done already; returns the folder. Call it behind the trainer's
    build lock (rank 0)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    plans_manager, configuration_manager, _ = load_plans_and_configuration(info, plans_identifier, configuration)
    images = info.target_image_files("train")
    inputs = {c: (images[c][0], pseudo_set.label_file(c, info.file_ending)) for c in pseudo_set.cases}
    digest = _build_hash(info, plans_manager.plans, configuration, configuration_manager.configuration,
                         pseudo_set, inputs)
    folder = pseudo_labelled_folder(info, plans_identifier, configuration, pseudo_set)
    manifest_file = folder / "manifest.json"
    manifest = read_json(manifest_file, PseudoLabelError) if manifest_file.is_file() else None
    if manifest is not None and manifest.get("hash") != digest:
        log(f"pseudo-labelled target data {folder}: the set, plans or inputs changed; rebuilding")
        shutil.rmtree(folder)
        manifest = None
    if manifest is not None and manifest.get("complete") and all(case_is_complete(folder, c) for c in inputs):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    record = {"hash": digest, "set": str(pseudo_set.folder), "set_sha256": pseudo_set.digest, "cases": sorted(inputs)}
    write_json({**record, "complete": False}, manifest_file)
    label_manager = plans_manager.get_label_manager(info.dataset_json)
    foreground = list(label_manager.foreground_labels)
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    todo = [c for c in sorted(inputs) if not case_is_complete(folder, c)]
    log(f"preprocessing {len(todo)} pseudo-labelled target case(s) of set {pseudo_set.name} into {folder}")
    for case in todo:
        image, label = inputs[case]
        data, seg, properties = preprocessor.run_case([str(image)], str(label), plans_manager, configuration_manager,
                                                      info.dataset_json)
        # foreground locations only: an ignored voxel must never be the centre nnU-Net forces a patch onto
        properties["class_locations"] = DefaultPreprocessor._sample_foreground_locations(
            seg, foreground, seed=1234, verbose=False)
        save_case_atomically(case, data, seg, properties, folder, folder / ".staging",
                             tuple(configuration_manager.patch_size))
    shutil.rmtree(folder / ".staging", ignore_errors=True)
    write_json({**record, "complete": True}, manifest_file)
    return folder


def structure_means(folder: "str | os.PathLike", cases: Sequence[str], num_labels: int) -> np.ndarray:
    """``(num_labels,)``: per label, the median over ``cases`` (preprocessed cases in ``folder``) of the label's mean
    intensity in the first channel (normalised units); NaN for background (0) and for a label no case holds."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    dataset = nnUNetDatasetBlosc2(str(folder), list(cases))
    per_case = np.full((len(cases), num_labels), np.nan)
    for i, case in enumerate(cases):
        data, seg, _, _ = dataset.load_case(case)
        image, labels = np.asarray(data[0]), np.asarray(seg[0])
        for label in range(1, num_labels):
            inside = labels == label
            if inside.any():
                per_case[i, label] = float(image[inside].mean())
    with np.errstate(all="ignore"):
        means = np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in per_case.T])
    means[0] = np.nan
    return means


class WithPseudoLabelledTarget:
    """Drop-in for nnU-Net's training dataset: ``base``'s identifiers (sampled with its own
    ``sampling_probabilities`` when it has them, uniformly otherwise) with probability ``1 - fraction``, and the
    pseudo-labelled target cases of ``folder`` (``<case>__pseudo``, uniformly) with probability ``fraction``."""

    def __init__(self, base, folder: "str | os.PathLike", cases: Sequence[str], fraction: float):
        from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

        if not 0.0 < fraction < 1.0:
            raise ValueError(f"pseudo_label_fraction must be in (0, 1), got {fraction}")
        clashes = [c for c in base.identifiers if str(c).endswith(PSEUDO_SUFFIX)]
        if clashes:
            raise ValueError(f"training cases {clashes[:5]} are named like pseudo-labelled cases (*{PSEUDO_SUFFIX})")
        self.base = base
        self.pseudo = nnUNetDatasetBlosc2(str(folder), list(cases))
        base_ids = list(base.identifiers)
        weights = getattr(base, "sampling_probabilities", None)
        weights = np.full(len(base_ids), 1.0 / len(base_ids)) if weights is None else np.asarray(weights, float)
        self.identifiers = base_ids + [c + PSEUDO_SUFFIX for c in cases]
        self.sampling_probabilities = np.concatenate((weights * (1.0 - fraction),
                                                      np.full(len(cases), fraction / len(cases))))
        self.source_folder = base.source_folder

    def __getitem__(self, identifier: str):
        return self.load_case(identifier)

    def load_case(self, identifier: str):
        """``(data, seg, seg_prev, properties)`` of a base case or of a pseudo-labelled target case."""
        if identifier.endswith(PSEUDO_SUFFIX):
            return self.pseudo.load_case(identifier[: -len(PSEUDO_SUFFIX)])
        return self.base.load_case(identifier)


def pseudo_labelled_samples(keys: Sequence[str]) -> np.ndarray:
    """Bool ``(B,)``: which samples of a batch (nnU-Net's ``batch["keys"]``) are pseudo-labelled target cases."""
    return np.array([str(k).endswith(PSEUDO_SUFFIX) for k in keys], dtype=bool)
