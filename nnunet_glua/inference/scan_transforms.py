"""The per-scan transforms around the network, one scan per call (they run in worker processes).

:func:`prepare` takes a scan into the space the model was trained in: read, re-indexed to the canonical
orientation (:func:`~nnunet_glua.conversion.orientation.to_canonical`), intensities harmonised
(:func:`~nnunet_glua.conversion.intensity.harmonise_intensities`), written as nnU-Net's ``{case}_0000`` image.
:func:`restore` maps the canonical prediction back to the scan's original orientation, checks that it lies on the
scan's voxel grid, writes it with the scan's own spacing, origin and direction (uint8) and counts the voxels per
label.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import (
    IntensityRecord,
    IntensitySettings,
    harmonise_intensities,
)
from nnunet_glua.conversion.orientation import (
    DIRECTION_TOLERANCE,
    ORIGIN_TOLERANCE_MM,
    SPACING_TOLERANCE_MM,
    Geometry,
    Reorientation,
    restore_orientation,
    to_canonical,
)
from nnunet_glua.inference.scan_inputs import ScanInput, read_scan
from nnunet_glua.io_utils import write_image
from nnunet_glua.volume_io import read_volume

__all__ = ["PrepareJob", "Prepared", "RestoreJob", "label_names", "prepare", "restore"]


@dataclass(frozen=True)
class PrepareJob:
    """One scan to prepare; ``image_path`` receives its harmonised canonical image (nnU-Net's ``{case}_0000`` file)."""

    scan: ScanInput
    modality: str
    intensity: IntensitySettings
    canonical_orientation: str
    image_path: Path


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` did to a scan: the orientation change (undone by :func:`restore`) and the intensity
    record (clipping window, body mask, warnings)."""

    case_id: str
    reorientation: Reorientation
    intensity: IntensityRecord


def prepare(job: PrepareJob) -> Prepared:
    """Read the scan, re-index it to the canonical orientation, harmonise its intensities (body ``[1, 1000]``,
    outside 0) and write it to ``job.image_path``."""
    image = read_scan(job.scan)
    canonical, reorientation = to_canonical(image, job.canonical_orientation)
    harmonised, intensity = harmonise_intensities(
        canonical, job.modality, job.intensity, job.scan.path, _axial_array_axis(job.canonical_orientation)
    )
    write_image(harmonised, job.image_path)
    return Prepared(job.scan.case_id, reorientation, intensity)


@dataclass(frozen=True)
class RestoreJob:
    """One canonical prediction to map back: ``original`` is the scan's geometry as stored, ``label_names`` the
    (value, name) pairs of the labels to count."""

    case_id: str
    prediction_path: Path
    output_path: Path
    original: Geometry
    label_names: tuple[tuple[int, str], ...]


def _grid_problems(image: sitk.Image, geometry: Geometry) -> list[str]:
    problems = []
    if tuple(image.GetSize()) != tuple(geometry.size):
        problems.append(f"size {tuple(image.GetSize())} vs {tuple(geometry.size)}")
    checks = (("spacing", image.GetSpacing(), geometry.spacing, SPACING_TOLERANCE_MM),
              ("origin", image.GetOrigin(), geometry.origin, ORIGIN_TOLERANCE_MM),
              ("direction", image.GetDirection(), geometry.direction, DIRECTION_TOLERANCE))
    for what, got, want, tolerance in checks:
        if not np.allclose(got, want, rtol=0, atol=tolerance):
            problems.append(f"{what} {tuple(round(v, 6) for v in got)} vs {tuple(round(v, 6) for v in want)}")
    return problems


def restore(job: RestoreJob) -> tuple[str, dict[str, int]]:
    """Map one canonical prediction back onto its scan's grid and write it; returns (case id, voxels per label)."""
    prediction = read_volume(job.prediction_path, "prediction", ConversionError)
    restored = restore_orientation(prediction, job.original.orientation)
    problems = _grid_problems(restored, job.original)
    if problems:
        # permutation/flip is exact, so this means the prediction was not made on the harmonised image's grid
        raise ConversionError(
            job.prediction_path,
            "the prediction, re-oriented to the scan's original orientation, does not lie on the scan's voxel grid ("
            + "; ".join(problems) + "). The predictor must write each prediction on its input image's grid.",
        )
    labels = sitk.GetArrayFromImage(restored)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ConversionError(job.prediction_path, f"label values {labels.min()}..{labels.max()} do not fit uint8")
    out = sitk.GetImageFromArray(labels.astype(np.uint8, copy=False))
    # the scan's own header values, not the round-tripped ones: tolerance-level noise must not reach the output
    out.SetSpacing(job.original.spacing)
    out.SetOrigin(job.original.origin)
    out.SetDirection(job.original.direction)
    write_image(out, job.output_path)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=256)
    named = {name: int(counts[value]) for value, name in job.label_names}
    known = {value for value, _ in job.label_names}
    named.update({str(v): int(counts[v]) for v in np.flatnonzero(counts) if v != 0 and int(v) not in known})
    return job.case_id, named


def label_names(dataset_json: Mapping[str, Any]) -> tuple[tuple[int, str], ...]:
    """(value, name) of every non-background label with an integer value in ``dataset.json``, sorted by value."""
    names = []
    for name, value in dataset_json.get("labels", {}).items():
        if isinstance(value, int) and value != 0:
            names.append((value, str(name)))
    return tuple(sorted(names))


def _axial_array_axis(orientation: str) -> int:
    # numpy order is (k, j, i): letter position p of the code is array axis 2 - p
    position = next(i for i, c in enumerate(orientation) if c in "SI")
    return 2 - position
