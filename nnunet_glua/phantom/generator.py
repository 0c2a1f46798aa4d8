"""Synthetic cardiac and abdominal phantoms written in the exact on-disk layouts of the public datasets.

The project's converters read the phantom exactly as they read real data, which makes it the test and
development data set of the whole pipeline (no download, no licence) and a controlled benchmark: the
cross-modality gap is built from each modality's physics, not from a simple intensity remapping.

Layouts::

    kind="cardiac"   (MMWHS, ids 1001-1020 per modality)
        OUT/ct_train/ct_train_1001_image.nii.gz   OUT/ct_train/ct_train_1001_label.nii.gz   ...
        OUT/mr_train/mr_train_1001_image.nii.gz   OUT/mr_train/mr_train_1001_label.nii.gz   ...
        labels 205 MYO, 420 LA, 500 LV, 550 RA, 600 RV, 820 AA, 850 PA; CT int16 HU, MR int16 scanner units

    kind="abdominal" (CHAOS MR T2-SPIR, patients 1, 2, 3, 5, 8, 10, 13, 15, 19-22, 31-34, 36-39;
                      BTCV CT, ids 1-10 and 21-40)
        OUT/CHAOS/Train_Sets/MR/<patient>/T2SPIR/DICOM_anon/IMG-<series>-<instance>.dcm   (one slice per file)
        OUT/CHAOS/Train_Sets/MR/<patient>/T2SPIR/Ground/IMG-<series>-<instance>.png       (same stem)
        OUT/BTCV/RawData/Training/img/img0001.nii.gz   OUT/BTCV/RawData/Training/label/label0001.nii.gz ...
        CHAOS PNG 63 liver, 126 right kidney, 189 left kidney, 252 spleen (8-bit, pixel (row, col) = DICOM
        pixel_array[row, col]); BTCV 1-13 (see :mod:`.abdomen`); DICOM uint16, BTCV CT int16 HU

    plus OUT/phantom_manifest.json: generator settings and, per scan, geometry, orientation, slice order.

What makes it realistic (and hard for a model trained on one modality):

- anatomy: organs in their anatomical places and relations, varying per subject in size, position, rotation
  and shape (:mod:`.cardiac`, :mod:`.abdomen`); CT and MR subjects are different people, as
  in the unpaired public datasets;
- intensities: per-tissue signal from each protocol's physics, with contrast inversions between CT and MR
  (fat, bone, flowing blood, fluid, liver/spleen); the tissue table is documented in
  :mod:`.tissues`; a second appearance (``appearance="alt"``) takes other scanners' and contrast timings' values
  and noisier image formation, same anatomy;
- image formation (:mod:`.imaging`): partial-volume blur, within-tissue texture, CT Gaussian noise
  and reconstruction circle, MR bias field, receiver gain and Rician noise, air around the body, a patient
  table in CT;
- geometry (:mod:`.acquisition`): spacing, field of view and slice count vary per scan and per
  modality; files are stored with axis permutations/flips and matching direction matrices (CT LPS/LPI,
  cardiac MR axial RAS or sagittal/coronal, BTCV RAS/RAI, CHAOS DICOM slices whose file names follow
  acquisition order, not position: head-to-foot, foot-to-head, interleaved or shuffled per patient).
  Reoriented to LPS, every scan shows its anatomy in the right place (left kidney on the patient's left).

Each scan depends only on (seed, dataset, case id, size): the same seed gives byte-identical files, and a run
with fewer cases produces a subset of a larger run's files. The whole output is built in a staging folder and
moved into place at the end, so an interrupted run leaves nothing behind.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from tqdm import tqdm

import nnunet_glua
from nnunet_glua.phantom.abdomen import BTCV_LABELS, CHAOS_LABELS, random_abdominal_subject
from nnunet_glua.phantom.acquisition import MIN_SIZE, PROTOCOLS, Acquisition, imaging_settings, plan_acquisition
from nnunet_glua.phantom.anatomy import SubjectAnatomy
from nnunet_glua.phantom.cardiac import MMWHS_LABELS, random_cardiac_subject
from nnunet_glua.phantom.imaging import quantise, render_intensities
from nnunet_glua.phantom.tissues import APPEARANCES
from nnunet_glua.phantom.writers import SLICE_ORDERS, slice_order, write_chaos_series, write_nifti
from nnunet_glua.json_io import write_json
from nnunet_glua.io_utils import staged_directory

Kind = Literal["cardiac", "abdominal"]
KINDS: tuple[str, ...] = ("cardiac", "abdominal")

#: Public case ids of each dataset, in the order ``num_cases`` takes them.
MMWHS_IDS: tuple[int, ...] = tuple(range(1001, 1021))
CHAOS_IDS: tuple[int, ...] = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39)
BTCV_IDS: tuple[int, ...] = tuple(range(1, 11)) + tuple(range(21, 41))

DEFAULT_SIZE = 80
MANIFEST_NAME = "phantom_manifest.json"



@dataclass(frozen=True)
class _DatasetSpec:
    """How one public dataset is imitated: its ids, subject generator, label set and stored data types."""

    ids: tuple[int, ...]
    make_subject: Callable[[np.random.Generator], SubjectAnatomy]
    label_set: str
    image_dtype: type
    label_dtype: type


_DATASETS: dict[str, _DatasetSpec] = {
    "mmwhs_ct": _DatasetSpec(MMWHS_IDS, random_cardiac_subject, "mmwhs", np.int16, np.uint16),
    "mmwhs_mr": _DatasetSpec(MMWHS_IDS, random_cardiac_subject, "mmwhs", np.int16, np.uint16),
    "chaos_t2spir": _DatasetSpec(CHAOS_IDS, random_abdominal_subject, "chaos", np.uint16, np.uint8),
    "btcv_ct": _DatasetSpec(BTCV_IDS, random_abdominal_subject, "btcv", np.int16, np.uint8),
}
_KIND_PROTOCOLS: dict[str, tuple[str, ...]] = {"cardiac": ("mmwhs_ct", "mmwhs_mr"),
                                               "abdominal": ("chaos_t2spir", "btcv_ct")}
# stable integers for the random streams: never reorder, only append
_STREAM_KEYS = {"mmwhs_ct": 1, "mmwhs_mr": 2, "chaos_t2spir": 3, "btcv_ct": 4}


@dataclass(frozen=True)
class PhantomCase:
    """One scan to generate: ``protocol`` (a key of :data:`~.acquisition.PROTOCOLS`) and public id."""

    protocol: str
    case_id: int


@dataclass(frozen=True)
class RenderedScan:
    """A simulated scan on its patient-aligned (LPS) grid, before it is stored in its file orientation.

    ``image``: ``(nz, ny, nx)`` stored dtype (CT int16 HU, MR int16/uint16 scanner units); ``labels``: same shape,
    the dataset's raw label values; ``tissues``: same shape, :class:`~.tissues.Tissue` values (uint8).
    """

    case: PhantomCase
    acquisition: Acquisition
    anatomy: SubjectAnatomy
    image: np.ndarray
    labels: np.ndarray
    tissues: np.ndarray


def planned_cases(kind: Kind, num_cases: "int | None" = None) -> list[PhantomCase]:
    """The scans of a phantom: the first ``num_cases`` public ids of each dataset (all of them if ``None``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    protocols = _KIND_PROTOCOLS[kind]
    largest = max(len(_DATASETS[p].ids) for p in protocols)
    if num_cases is not None and not 1 <= num_cases <= largest:
        raise ValueError(f"num_cases must be between 1 and {largest} for the {kind} phantom, got {num_cases}")
    return [PhantomCase(p, case_id) for p in protocols for case_id in _DATASETS[p].ids[:num_cases]]


def _random_streams(seed: int, case: PhantomCase) -> list[np.random.Generator]:
    # separate streams for anatomy, geometry and imaging: the anatomy of a case does not change with ``size``
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(_STREAM_KEYS[case.protocol], case.case_id))
    return [np.random.default_rng(child) for child in sequence.spawn(3)]


def render_case(case: PhantomCase, seed: int = 0, size: int = DEFAULT_SIZE, appearance: str = "standard"
                ) -> RenderedScan:
    """Simulate one scan (anatomy, acquisition, image formation) without writing anything. ``appearance``
    (``"standard"`` or ``"alt"``) changes only the image formation: anatomy, geometry and labels stay the same."""
    if case.protocol not in _DATASETS:
        raise ValueError(f"unknown phantom protocol {case.protocol!r}; choose one of {', '.join(_DATASETS)}")
    spec = _DATASETS[case.protocol]
    protocol = PROTOCOLS[case.protocol]
    anatomy_rng, geometry_rng, imaging_rng = _random_streams(seed, case)
    anatomy = spec.make_subject(anatomy_rng)
    acquisition = plan_acquisition(protocol, anatomy.body, anatomy.table_y, anatomy.scan_center, size, geometry_rng)
    ids = anatomy.rasterise(acquisition.grid)
    tissues = anatomy.tissue_lookup()[ids]
    imaging = imaging_settings(case.protocol, appearance)
    image = quantise(render_intensities(tissues, acquisition.grid, imaging, imaging_rng), imaging, spec.image_dtype)
    labels = anatomy.label_lookup(spec.label_set)[ids]
    return RenderedScan(case, acquisition, anatomy, image, labels, tissues)


def _geometry_record(acquisition: Acquisition) -> dict[str, Any]:
    grid = acquisition.grid
    return {"plane": acquisition.plane, "stored_orientation": acquisition.orientation,
            "lps_shape_zyx": list(grid.shape), "lps_spacing_xyz": list(grid.spacing),
            "lps_origin_xyz": list(grid.origin)}


def _write_scan(scan: RenderedScan, root: Path, seed: int, size: int, chaos_index: int) -> dict[str, Any]:
    """Write one rendered scan below ``root`` in its dataset's layout; returns its manifest record."""
    case, acquisition = scan.case, scan.acquisition
    record: dict[str, Any] = {"protocol": case.protocol, "id": case.case_id, **_geometry_record(acquisition)}
    labels = scan.labels.astype(_DATASETS[case.protocol].label_dtype)
    if case.protocol in ("mmwhs_ct", "mmwhs_mr"):
        prefix = "ct_train" if case.protocol == "mmwhs_ct" else "mr_train"
        stem = root / prefix / f"{prefix}_{case.case_id}"
        image_path, label_path = Path(f"{stem}_image.nii.gz"), Path(f"{stem}_label.nii.gz")
    elif case.protocol == "btcv_ct":
        training = root / "BTCV" / "RawData" / "Training"
        image_path = training / "img" / f"img{case.case_id:04d}.nii.gz"
        label_path = training / "label" / f"label{case.case_id:04d}.nii.gz"
    else:
        # CHAOS: numbering order cycles through the realistic variants, so any two patients differ
        order_name = SLICE_ORDERS[chaos_index % len(SLICE_ORDERS)]
        order_rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(99, case.case_id)))
        order = slice_order(acquisition.grid.shape[0], order_name, order_rng)
        series_number = int(order_rng.choice([2, 4, 5, 7, 11, 14]))
        t2spir = root / "CHAOS" / "Train_Sets" / "MR" / str(case.case_id) / "T2SPIR"
        stems = write_chaos_series(
            scan.image, labels, acquisition.grid, t2spir, case.case_id, series_number, order,
            uid_seed=f"nnunet-glua-phantom/{seed}/{size}/chaos/{case.case_id}",
            slice_thickness=acquisition.grid.spacing[2] * float(order_rng.uniform(0.85, 1.0)),
        )
        record.update({"folder": str(t2spir.relative_to(root)), "slice_order": order_name,
                       "files_in_instance_order": stems})
        return record
    write_nifti(scan.image, acquisition.grid, acquisition.orientation, image_path)
    write_nifti(labels, acquisition.grid, acquisition.orientation, label_path)
    record.update({"image": str(image_path.relative_to(root)), "label": str(label_path.relative_to(root))})
    return record


def make_phantom(kind: Kind, out_dir: "str | os.PathLike", num_cases: "int | None" = None, seed: int = 0,
                 size: int = DEFAULT_SIZE, overwrite: bool = False, progress: bool = True,
                 appearance: str = "standard") -> Path:
    """Generate a phantom data set in the public layout of ``kind`` (see the module docstring) at ``out_dir``.

    ``num_cases``: scans per dataset, the first public ids (``None``: all, i.e. 20 per MMWHS modality, 20 CHAOS
    patients, 30 BTCV volumes; an int larger than a dataset's size takes all of that dataset). ``seed``: any
    non-negative int; the same seed gives identical files. ``size``: in-plane matrix (voxels) of the axial CT
    scans; other dimensions follow the protocols (about 0.35-0.8 ``size`` slices). ``overwrite``: replace an
    existing ``out_dir`` (only once the new data is complete). ``appearance``: ``"standard"`` (the tissue values
    and image formation every default was chosen on) or ``"alt"`` (other scanners and contrast timings, same
    anatomy: a check that no result is tuned to one phantom). Returns ``out_dir``.

    Raises ``FileExistsError`` if ``out_dir`` exists and ``overwrite`` is false, ``ValueError`` for bad arguments.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer of at least {MIN_SIZE} voxels, got {size!r}")
    if appearance not in APPEARANCES:
        raise ValueError(f"unknown phantom appearance {appearance!r}; choose one of {', '.join(APPEARANCES)}")
    cases = planned_cases(kind, num_cases)
    out_dir = Path(out_dir)
    records: list[dict[str, Any]] = []
    with staged_directory(out_dir, overwrite=overwrite) as staging:
        chaos_index = 0
        for case in tqdm(cases, desc=f"phantom {kind}", unit="scan", disable=not progress):
            scan = render_case(case, seed=int(seed), size=int(size), appearance=appearance)
            records.append(_write_scan(scan, staging, int(seed), int(size), chaos_index))
            chaos_index += case.protocol == "chaos_t2spir"
        write_json({
            "generator": f"nnunet_glua.phantom {nnunet_glua.__version__}",
            "kind": kind, "seed": int(seed), "size": int(size), "num_cases": num_cases, "appearance": appearance,
            "label_values": ({"mmwhs": MMWHS_LABELS} if kind == "cardiac"
                             else {"btcv": BTCV_LABELS, "chaos": CHAOS_LABELS}),
            "scans": records,
        }, staging / MANIFEST_NAME)
    return out_dir
