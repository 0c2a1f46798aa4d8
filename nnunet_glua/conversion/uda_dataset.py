"""Writer of the UDA dataset layout shared by every benchmark converter.

Given the scans of two modalities (each a :class:`~.sources.CaseSource`), a direction (``"MR2CT"``: MR is the labelled
source, CT the unlabelled target) and the target/source test ids, :func:`write_uda_datasets` builds, under
``$nnUNet_raw``::

    Dataset{ID}_{NAME}/                    role "adaptation"
        imagesTr/{case}_0000.nii.gz         source volumes minus the source test ids      (nnU-Net training set)
        labelsTr/{case}.nii.gz              their labels
        imagesTargetTr/{case}_0000.nii.gz   target volumes minus the target test ids      (NO labels anywhere)
        imagesTs/{case}_0000.nii.gz         target test volumes
        labelsTs/{case}.nii.gz              their labels, for evaluation only
        dataset.json                        nnU-Net keys + a "glua" block recording the split and the conversion
        conversion_report.json              per case: inputs, original geometry, reorientation, intensities, labels

and optionally the target-supervised upper bound ``Dataset{UPPER_ID}_{NAME}_TargetSupervised`` (role
``"target_supervised"``): imagesTr/labelsTr = the labelled target non-test volumes, imagesTs/labelsTs = the same
target test set; its ``"glua"`` block has the same keys (``source_modality`` is then the target modality and
``target_training_cases`` is empty). Every volume is brought to the canonical orientation (:mod:`.orientation`) and
harmonised (:mod:`.intensity`); labels are mapped by the case's :class:`~.labels.LabelMap`. Cases are converted in
parallel. Both folders are built under temporary names and appear only when everything succeeded.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import SimpleITK as sitk
from tqdm import tqdm

import nnunet_glua
from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import IntensitySettings, harmonise_intensities
from nnunet_glua.conversion.labels import apply_label_map
from nnunet_glua.conversion.orientation import CANONICAL_ORIENTATION, require_same_geometry, to_canonical
from nnunet_glua.conversion.sources import CaseSource
from nnunet_glua.json_io import write_json
from nnunet_glua.io_utils import staged_directory, write_image
from nnunet_glua.nnunet_io import (
    PREPROCESSED,
    RAW,
    RESULTS,
    dataset_folders_with_id,
    dataset_id_from_name,
    nnunet_folder,
)
from nnunet_glua.parallel import VOLUME_PROCESS_CAP, default_num_processes, run_jobs

FORMAT_VERSION = 1
FILE_ENDING = ".nii.gz"
# nnU-Net maps a channel named "CT" to CTNormalization with the *training set's* (source) statistics, which would
# then be applied to every target image too. "zscore" makes nnU-Net normalise each image on its own.
CHANNEL_NAMES = {"0": "zscore"}
IMAGES_TR, LABELS_TR = "imagesTr", "labelsTr"
UNLABELLED_TARGET_FOLDER = "imagesTargetTr"
IMAGES_TS, LABELS_TS = "imagesTs", "labelsTs"
REPORT_NAME = "conversion_report.json"
ROLE_ADAPTATION, ROLE_TARGET_SUPERVISED = "adaptation", "target_supervised"
UPPER_BOUND_SUFFIX = "_TargetSupervised"

DIRECTIONS: dict[str, tuple[str, str]] = {"MR2CT": ("MR", "CT"), "CT2MR": ("CT", "MR")}
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def parse_direction(direction: str) -> tuple[str, str]:
    """``"MR2CT"`` -> ``("MR", "CT")`` (source modality, target modality); case-insensitive."""
    key = str(direction).upper()
    if key not in DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
    return DIRECTIONS[key]


# --- the split ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UdaSplit:
    """Which scans go where. Lists are sorted by public id."""

    source_modality: str
    target_modality: str
    source_training: tuple[CaseSource, ...]
    source_excluded: tuple[CaseSource, ...]
    target_training: tuple[CaseSource, ...]
    target_test: tuple[CaseSource, ...]


def split_cases(
    cases: Mapping[str, Mapping[int, CaseSource]],
    direction: str,
    test_ids: Mapping[str, Iterable[int]],
    modality_folders: Mapping[str, "str | os.PathLike"],
) -> UdaSplit:
    """Split the scans of both modalities for ``direction``.

    ``cases[modality][public_id]`` are the available scans, ``test_ids[modality]`` the public ids held out for
    testing in that modality, ``modality_folders[modality]`` the folder named in errors. Raises
    :class:`ConversionError` if a modality has no scans, a test id is not present, or no source training / no
    unlabelled target scan would remain.
    """
    source, target = parse_direction(direction)
    for modality in (source, target):
        if not cases.get(modality):
            raise ConversionError(modality_folders[modality], f"no {modality} scans found")
        wanted = sorted(set(int(i) for i in test_ids.get(modality, ())))
        missing = [i for i in wanted if i not in cases[modality]]
        if missing:
            raise ConversionError(
                modality_folders[modality],
                f"requested {modality} test ids {missing} are not present; available ids: "
                f"{sorted(cases[modality])}. Pass the test ids of your copy of the data "
                f"(--{modality.lower()}-test-ids).",
            )

    def pick(modality: str, held_out: bool) -> tuple[CaseSource, ...]:
        wanted = set(int(i) for i in test_ids.get(modality, ()))
        return tuple(c for i, c in sorted(cases[modality].items()) if (i in wanted) == held_out)

    split = UdaSplit(source, target, pick(source, False), pick(source, True), pick(target, False), pick(target, True))
    if not split.source_training:
        raise ConversionError(
            modality_folders[source], f"every {source} scan is a test id; no labelled source training scan remains"
        )
    if not split.target_training:
        raise ConversionError(
            modality_folders[target], f"every {target} scan is a test id; no unlabelled target scan remains for "
            "adaptation"
        )
    return split


# --- where the datasets go ----------------------------------------------------------------------------------------

def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset{ID:03d}_{NAME}`` after checking the id (1..999) and the name (letters, digits, _ and -)."""
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset id must be between 1 and 999, got {dataset_id}")
    if not _DATASET_NAME.match(name):
        raise ValueError(f"dataset name may hold only letters, digits, '_' and '-', got {name!r}")
    return f"Dataset{int(dataset_id):03d}_{name}"


def check_dataset_destination(raw: Path, folder_name: str, overwrite: bool) -> Path:
    """The destination ``raw/folder_name``; raises if the id is taken by another name or the folder exists.

    nnU-Net resolves ``-d ID`` by the ``Dataset{ID:03d}_`` prefix across nnUNet_raw, nnUNet_preprocessed and
    nnUNet_results and refuses ambiguous ids, so another name with the same id in any of them is an error.
    """
    dataset_id = dataset_id_from_name(folder_name)
    roots = [raw] + [Path(os.environ[v]) for v in (PREPROCESSED, RESULTS) if os.environ.get(v)]
    for root in roots:
        for other in dataset_folders_with_id(root, dataset_id):
            if other.name != folder_name:
                raise ConversionError(
                    other,
                    f"dataset id {dataset_id} is already used by this folder; nnU-Net needs ids to be "
                    f"unique. Choose another id (-d) or remove that dataset.",
                )
    destination = raw / folder_name
    if destination.exists() and not overwrite:
        raise ConversionError(destination, "dataset folder already exists; pass --overwrite to replace it")
    return destination


# --- per-case conversion (runs in worker processes) ---------------------------------------------------------------

@dataclass(frozen=True)
class CaseJob:
    """One scan to convert: which outputs to write (dataset folder key -> relative paths)."""

    source: CaseSource
    with_label: bool
    image_outputs: tuple[tuple[str, str], ...]
    label_outputs: tuple[tuple[str, str], ...]
    roots: Mapping[str, str]
    intensity: IntensitySettings


def convert_case(job: CaseJob) -> dict[str, Any]:
    """Read, check, reorient, harmonise and write one scan; returns its conversion record (JSON-ready)."""
    source = job.source
    image_path, label_path = source.files.get("image"), source.files.get("label")
    image, label = source.loader(source, job.with_label)
    label_record = None
    if job.with_label:
        if label is None:
            raise ConversionError(label_path, "label is required for this scan but the loader returned none")
        require_same_geometry(image, label, label_path)
        # mapped in the file's own voxel order, so an error's voxel index refers to the file as stored
        mapped, label_record = apply_label_map(sitk.GetArrayFromImage(label), source.label_map, label_path)
        label = sitk.GetImageFromArray(mapped)
        # the image's header, not the label's: rounding noise within tolerance must not reach nnU-Net's exact checks
        label.CopyInformation(image)

    canonical, reorientation = to_canonical(image)
    harmonised, intensity = harmonise_intensities(canonical, source.modality, job.intensity, image_path)
    warnings = list(intensity.warnings)
    canonical_label = None
    if label_record is not None:
        canonical_label, label_reorientation = to_canonical(label)
        # identical input grids give identical permutations; checked because alignment is the whole point
        if label_reorientation.canonical != reorientation.canonical:
            raise RuntimeError(f"{source.case_id}: image and label were reoriented differently")
        warnings += label_record.warnings

    outputs: dict[str, list[str]] = {}
    for key, relative in job.image_outputs:
        write_image(harmonised, Path(job.roots[key]) / relative)
        outputs.setdefault(key, []).append(relative)
    for key, relative in job.label_outputs:
        write_image(canonical_label, Path(job.roots[key]) / relative)
        outputs.setdefault(key, []).append(relative)

    return {
        "case": source.case_id,
        "modality": source.modality,
        "public_id": source.number,
        "source_files": dict(source.files),
        "label_read": job.with_label,
        "reorientation": reorientation.to_dict(),
        "intensity": intensity.to_dict(),
        "labels": None if label_record is None else label_record.to_dict(),
        "outputs": outputs,
        "warnings": warnings,
    }


def _print_warnings(record: dict[str, Any], bar: tqdm) -> None:
    for warning in record["warnings"]:
        bar.write(f"WARNING {record['case']}: {warning}")


def _run_jobs(jobs: Sequence[CaseJob], num_processes: int) -> list[dict[str, Any]]:
    """Conversion records of ``jobs`` (sorted by case), converted in up to ``num_processes`` worker processes."""
    records = run_jobs(convert_case, jobs, num_processes, "converting scans", "scan", _print_warnings)
    return sorted(records, key=lambda r: r["case"])


# --- the datasets -------------------------------------------------------------------------------------------------

@dataclass
class UdaConversion:
    """Everything :func:`write_uda_datasets` needs for one benchmark conversion.

    ``labels`` is the task's dataset.json ``"labels"`` (every case's label map must produce exactly these),
    ``inputs`` the input folders (for the report), ``description``/``reference``/``licence`` go to dataset.json.
    """

    benchmark: str
    direction: str
    split: UdaSplit
    labels: dict[str, int]
    dataset_id: int
    dataset_name: str
    upper_bound_id: int | None = None
    upper_bound_name: str | None = None
    intensity: IntensitySettings = field(default_factory=IntensitySettings)
    inputs: dict[str, str] = field(default_factory=dict)
    description: str = ""
    reference: str = ""
    licence: str = "see the licence of the original dataset"


def _plan_jobs(conv: UdaConversion, roots: Mapping[str, str]) -> list[CaseJob]:
    adapt, upper = "adaptation", "upper_bound"
    with_upper = upper in roots
    split = conv.split
    jobs = []

    def job(source: CaseSource, images: list[tuple[str, str]], labels: list[tuple[str, str]]) -> CaseJob:
        return CaseJob(source, bool(labels), tuple(images), tuple(labels), dict(roots), conv.intensity)

    def image_file(folder: str, case: CaseSource) -> str:
        return f"{folder}/{case.case_id}_0000{FILE_ENDING}"

    def label_file(folder: str, case: CaseSource) -> str:
        return f"{folder}/{case.case_id}{FILE_ENDING}"

    for case in split.source_training:
        jobs.append(job(case, [(adapt, image_file(IMAGES_TR, case))], [(adapt, label_file(LABELS_TR, case))]))
    for case in split.target_training:
        images = [(adapt, image_file(UNLABELLED_TARGET_FOLDER, case))]
        labels = []
        if with_upper:
            images.append((upper, image_file(IMAGES_TR, case)))
            labels.append((upper, label_file(LABELS_TR, case)))
        jobs.append(job(case, images, labels))
    for case in split.target_test:
        images = [(adapt, image_file(IMAGES_TS, case))]
        labels = [(adapt, label_file(LABELS_TS, case))]
        if with_upper:
            images.append((upper, image_file(IMAGES_TS, case)))
            labels.append((upper, label_file(LABELS_TS, case)))
        jobs.append(job(case, images, labels))
    return jobs


def _ids(cases: Iterable[CaseSource]) -> list[str]:
    return [c.case_id for c in cases]


def _label_map_block(conv: UdaConversion) -> dict[str, Any]:
    split = conv.split
    per_modality: dict[str, Any] = {}
    for cases in (split.source_training, split.target_test, split.target_training):
        for case in cases:
            per_modality.setdefault(case.modality, case.label_map.to_dict())
    return {"labels": dict(conv.labels), "per_modality": per_modality}


def _intensity_block(conv: UdaConversion) -> dict[str, Any]:
    s = conv.intensity
    return {
        **s.to_dict(),
        "body_mask": (
            f"CT: > {s.ct_body_threshold:g} HU; MR: > {s.mr_otsu_scale:g} x Otsu threshold of log intensities; "
            "then largest connected component, holes filled in 3D and per axial slice"
        ),
        "clipping": f"{s.lower_percentile:g} / {s.upper_percentile:g} percentiles computed inside the body mask",
        "mapping": f"body linearly to [{s.output_min:g}, {s.output_max:g}] (float32), outside the body exactly 0",
    }


def _dataset_json(conv: UdaConversion, role: str, folder_names: Mapping[str, str]) -> dict[str, Any]:
    split = conv.split
    if role == ROLE_ADAPTATION:
        training = split.source_training
        glua_roles = {
            "source_modality": split.source_modality,
            "target_modality": split.target_modality,
            "role": ROLE_ADAPTATION,
            "unlabelled_target_folder": UNLABELLED_TARGET_FOLDER,
            "source_training_cases": _ids(split.source_training),
            "excluded_source_test_cases": _ids(split.source_excluded),
            "target_training_cases": _ids(split.target_training),
            "upper_bound_dataset": folder_names.get("upper_bound"),
        }
        description = (
            f"{conv.benchmark} unsupervised domain adaptation {split.source_modality} -> {split.target_modality}: "
            f"imagesTr/labelsTr = labelled {split.source_modality} (source), {UNLABELLED_TARGET_FOLDER} = "
            f"unlabelled {split.target_modality} (target), imagesTs with labels in {LABELS_TS} = "
            f"{split.target_modality} test set (evaluation only)."
        )
    else:
        # the upper bound trains on labelled target scans: its "source" (the imagesTr modality) is the target
        training = split.target_training
        glua_roles = {
            "source_modality": split.target_modality,
            "target_modality": split.target_modality,
            "role": ROLE_TARGET_SUPERVISED,
            # kept for a uniform schema; this dataset has no unlabelled scans, so the folder is not created
            "unlabelled_target_folder": UNLABELLED_TARGET_FOLDER,
            "source_training_cases": _ids(split.target_training),
            "excluded_source_test_cases": [],
            "target_training_cases": [],
            "adaptation_dataset": folder_names["adaptation"],
        }
        description = (
            f"{conv.benchmark} target-supervised upper bound for {conv.direction}: imagesTr/labelsTr = labelled "
            f"{split.target_modality} training scans, imagesTs/{LABELS_TS} = the same {split.target_modality} test "
            f"set as {folder_names['adaptation']}."
        )
    glua = {
        "format_version": FORMAT_VERSION,
        "benchmark": conv.benchmark,
        "direction": conv.direction,
        **glua_roles,
        "target_test_images_folder": IMAGES_TS,
        "target_test_labels_folder": LABELS_TS,
        "target_test_cases": _ids(split.target_test),
        "canonical_orientation": CANONICAL_ORIENTATION,
        "intensity": _intensity_block(conv),
        "label_map": _label_map_block(conv),
        "conversion_report": REPORT_NAME,
    }
    return {
        "name": folder_names["adaptation" if role == ROLE_ADAPTATION else "upper_bound"],
        "description": (description + " " + conv.description).strip(),
        "reference": conv.reference,
        "licence": conv.licence,
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(conv.labels),
        "numTraining": len(training),
        "file_ending": FILE_ENDING,
        "glua": glua,
    }


def _report(conv: UdaConversion, key: str, records: Sequence[dict[str, Any]], dataset_json: dict) -> dict[str, Any]:
    cases = {}
    for record in records:
        if key not in record["outputs"]:
            continue
        entry = {**record, "outputs": record["outputs"][key]}
        if not any(Path(p).parts[0] in (LABELS_TR, LABELS_TS) for p in entry["outputs"]):
            # label facts of a scan that is unlabelled in this dataset (read only for the upper bound) stay out
            entry["labels"] = None
            entry["warnings"] = list(record["intensity"]["warnings"])
        cases[record["case"]] = entry
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nnunet_glua_version": nnunet_glua.__version__,
        "dataset": dataset_json["name"],
        "benchmark": conv.benchmark,
        "direction": conv.direction,
        "role": dataset_json["glua"]["role"],
        "inputs": dict(conv.inputs),
        "canonical_orientation": CANONICAL_ORIENTATION,
        "intensity_settings": conv.intensity.to_dict(),
        "summary": summarise(cases.values()),
        "cases": cases,
    }


def summarise(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate of case records: reorientations, stray label values, warnings (used in the report and printout)."""
    records = list(records)
    changes = Counter(
        f"{r['reorientation']['original_orientation']} -> {r['reorientation']['canonical_orientation']}"
        for r in records
        if r["reorientation"]["changed"]
    )
    strays = {
        r["case"]: r["labels"]["stray_values"] for r in records if r["labels"] and r["labels"]["stray_values"]
    }
    fractions = [r["intensity"]["body_fraction"] for r in records]
    return {
        "num_scans": len(records),
        "num_reoriented": sum(changes.values()),
        "reorientations": dict(changes),
        "body_fraction_range": [min(fractions), max(fractions)] if fractions else None,
        "stray_label_values": strays,
        "warnings": {r["case"]: r["warnings"] for r in records if r["warnings"]},
    }


def format_summary(dataset_json: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """Multi-line text for the console: what was written and what was changed."""
    glua = dataset_json["glua"]
    lines = [f"{dataset_json['name']} ({glua['role']}, {glua['direction']}):"]
    lines.append(
        f"  {IMAGES_TR}/{LABELS_TR}: {len(glua['source_training_cases'])} labelled {glua['source_modality']} scans"
    )
    if glua["role"] == ROLE_ADAPTATION:
        lines.append(
            f"  {glua['unlabelled_target_folder']}: {len(glua['target_training_cases'])} unlabelled "
            f"{glua['target_modality']} scans (no labels written)"
        )
    lines.append(f"  {IMAGES_TS}/{LABELS_TS}: {len(glua['target_test_cases'])} {glua['target_modality']} test scans")
    if glua["excluded_source_test_cases"]:
        lines.append(f"  left out (source test ids): {', '.join(glua['excluded_source_test_cases'])}")
    if summary["num_reoriented"]:
        details = ", ".join(f"{k}: {v}" for k, v in summary["reorientations"].items())
        lines.append(
            f"  orientation: {summary['num_reoriented']} of {summary['num_scans']} scans re-indexed to "
            f"{CANONICAL_ORIENTATION} ({details}); no interpolation, spacing kept"
        )
    else:
        lines.append(f"  orientation: all {summary['num_scans']} scans were already {CANONICAL_ORIENTATION}")
    intensity = glua["intensity"]
    lines.append(f"  intensity: body mask ({intensity['body_mask']}); {intensity['clipping']}; {intensity['mapping']}")
    if summary["body_fraction_range"]:
        low, high = summary["body_fraction_range"]
        lines.append(f"  body fraction of the volume: {100 * low:.1f}% .. {100 * high:.1f}%")
    for case, strays in summary["stray_label_values"].items():
        for value, info in strays.items():
            lines.append(
                f"  STRAY LABEL VALUE {case}: {value} ({info['voxels']} voxels) treated as {info['treated_as']}"
            )
    num_warnings = sum(len(w) for w in summary["warnings"].values())
    if num_warnings:
        lines.append(f"  {num_warnings} warnings, see {REPORT_NAME}")
    return "\n".join(lines)


def write_uda_datasets(conv: UdaConversion, overwrite: bool = False, num_processes: int | None = None) -> Path:
    """Convert all scans of ``conv`` and write the adaptation dataset (and the upper bound if requested).

    Returns the adaptation dataset folder. Raises :class:`ConversionError` on bad input; then no dataset folder
    is created or changed. With ``num_processes`` > 1 the workers are started with the ``spawn`` method, so a
    script that calls this needs the usual ``if __name__ == "__main__":`` guard.
    """
    raw = nnunet_folder(RAW, ConversionError)
    names = {"adaptation": dataset_folder_name(conv.dataset_id, conv.dataset_name)}
    if conv.upper_bound_id is not None:
        if int(conv.upper_bound_id) == int(conv.dataset_id):
            raise ValueError(f"the upper-bound dataset id must differ from the dataset id {conv.dataset_id}")
        names["upper_bound"] = dataset_folder_name(
            conv.upper_bound_id, conv.upper_bound_name or conv.dataset_name + UPPER_BOUND_SUFFIX
        )
    for case in (*conv.split.source_training, *conv.split.target_training, *conv.split.target_test):
        if case.label_map.labels != conv.labels:
            raise ValueError(f"{case.case_id}: label map {case.label_map.name} does not produce labels {conv.labels}")
    destinations = {key: check_dataset_destination(raw, name, overwrite) for key, name in names.items()}
    num_processes = default_num_processes(VOLUME_PROCESS_CAP) if num_processes is None else int(num_processes)

    with contextlib.ExitStack() as stack:
        roots = {
            key: stack.enter_context(staged_directory(dest, overwrite=overwrite)) for key, dest in destinations.items()
        }
        for root in roots.values():
            for folder in (IMAGES_TR, LABELS_TR, IMAGES_TS, LABELS_TS):
                (root / folder).mkdir()
        (roots["adaptation"] / UNLABELLED_TARGET_FOLDER).mkdir()
        records = _run_jobs(_plan_jobs(conv, {k: str(v) for k, v in roots.items()}), num_processes)
        texts = []
        for key, root in roots.items():
            role = ROLE_ADAPTATION if key == "adaptation" else ROLE_TARGET_SUPERVISED
            dataset_json = _dataset_json(conv, role, names)
            report = _report(conv, key, records, dataset_json)
            write_json(dataset_json, root / "dataset.json")
            write_json(report, root / REPORT_NAME)
            texts.append(format_summary(dataset_json, report["summary"]))
    for text in texts:
        print(text)
    print(f"written to {', '.join(str(d) for d in destinations.values())}")
    return destinations["adaptation"]


# --- command-line helpers shared by the converters ----------------------------------------------------------------

def add_common_arguments(parser: argparse.ArgumentParser, default_ct_test: Sequence[int],
                         default_mr_test: Sequence[int]) -> None:
    """Options every converter CLI has (direction, ids, test ids, intensity knobs, overwrite, processes)."""
    parser.add_argument("--direction", required=True, type=str.upper, choices=sorted(DIRECTIONS),
                        help="MR2CT: MR is the labelled source, CT the unlabelled target; CT2MR the reverse")
    parser.add_argument("-d", "--dataset-id", type=int, required=True,
                        help="nnU-Net dataset id of the adaptation dataset (1..999)")
    parser.add_argument("--name", default=None, help="dataset name (default: <benchmark>_<direction>)")
    parser.add_argument("--ct-test-ids", type=int, nargs="*", default=list(default_ct_test),
                        help=f"public CT ids held out for testing (default: {' '.join(map(str, default_ct_test))})")
    parser.add_argument("--mr-test-ids", type=int, nargs="*", default=list(default_mr_test),
                        help=f"public MR ids held out for testing (default: {' '.join(map(str, default_mr_test))})")
    parser.add_argument("--upper-bound-id", type=int, default=None,
                        help="also write the target-supervised upper-bound dataset with this id "
                             f"(name <name>{UPPER_BOUND_SUFFIX}; same target test set)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing dataset folders of the same name")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="parallel worker processes (default: $nnUNet_def_n_proc, else "
                             f"min({VOLUME_PROCESS_CAP}, CPUs))")
    defaults = IntensitySettings()
    group = parser.add_argument_group("intensity harmonisation")
    group.add_argument("--clip-percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       default=[defaults.lower_percentile, defaults.upper_percentile],
                       help="percentiles computed inside the body mask that every volume is clipped to "
                            "(default: %(default)s)")
    group.add_argument("--output-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                       default=[defaults.output_min, defaults.output_max],
                       help="range the clipped body is mapped to; outside the body is 0 (default: %(default)s)")
    group.add_argument("--ct-body-threshold", type=float, default=defaults.ct_body_threshold,
                       help="CT body mask: voxels above this HU value (default: %(default)s)")
    group.add_argument("--mr-otsu-scale", type=float, default=defaults.mr_otsu_scale,
                       help="MR body mask: voxels above this factor times Otsu's threshold of the log intensities "
                            "(default: %(default)s)")


def intensity_settings_from_args(args: argparse.Namespace) -> IntensitySettings:
    """The :class:`IntensitySettings` chosen with the options of :func:`add_common_arguments`."""
    return IntensitySettings(
        lower_percentile=args.clip_percentiles[0],
        upper_percentile=args.clip_percentiles[1],
        output_min=args.output_range[0],
        output_max=args.output_range[1],
        ct_body_threshold=args.ct_body_threshold,
        mr_otsu_scale=args.mr_otsu_scale,
    )


def conversion_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of a converter (``convert_mmwhs``, ``convert_abdomen``) chosen with the options of
    :func:`add_common_arguments`: direction, ids, test ids, upper bound, overwrite, processes, intensity."""
    return {
        "direction": args.direction,
        "dataset_id": args.dataset_id,
        "dataset_name": args.name,
        "ct_test_ids": args.ct_test_ids,
        "mr_test_ids": args.mr_test_ids,
        "upper_bound_id": args.upper_bound_id,
        "overwrite": args.overwrite,
        "num_processes": args.num_processes,
        "intensity": intensity_settings_from_args(args),
    }


def run_converter(prog: str, convert: Callable[..., Path], *inputs: Any, **options: Any) -> Path:
    """``convert(*inputs, **options)`` for a converter's ``main``: bad input (:class:`ConversionError`, or a
    ``ValueError`` for a bad option value) is printed as ``{prog}: error: ...`` and exits with status 1."""
    try:
        return convert(*inputs, **options)
    except (ConversionError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
