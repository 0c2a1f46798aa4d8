"""Volume geometry: describe it, compare it, and bring every volume to one canonical orientation.

Canonical orientation means the voxel array is re-indexed (axes permuted and/or flipped) until its axes point
along the patient directions of the code :data:`CANONICAL_ORIENTATION` (``"LPS"``: array index i grows toward the
patient's Left, j toward Posterior, k toward Superior; in the numpy array returned by
``sitk.GetArrayFromImage`` that is shape ``(k, j, i)`` = (axial slice, row, column)). No voxel is interpolated:
the values are only moved, spacing is permuted along with the axes (so the true spacing is kept), and the origin
and direction are updated so that every voxel keeps its physical position. Applying the inverse permutation
(:func:`restore_orientation`) gives back the original array, spacing, origin and direction exactly, which is what
mapping a prediction back to the scan's original geometry needs.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError

CANONICAL_ORIENTATION = "LPS"
# In the canonical orientation the axial (slice) axis is the first axis of the numpy array (k, j, i).
CANONICAL_AXIAL_ARRAY_AXIS = 0

# Tolerances for "same voxel grid". Scanner exports store image and label headers with float rounding noise
# (e.g. 0.7 vs 0.70000005 mm); anything larger than this is a real mismatch that would misalign the label.
SPACING_TOLERANCE_MM = 1e-3
ORIGIN_TOLERANCE_MM = 1e-2
DIRECTION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a 3D volume as SimpleITK reports it (x, y, z order, millimetres).

    ``size`` is in voxels, ``direction`` is the row-major 3x3 direction cosine matrix and ``orientation`` its
    closest three-letter patient orientation code (e.g. ``"RAI"``).
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    orientation: str

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
            orientation=orientation_code(image),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Reorientation:
    """What :func:`to_canonical` did to one volume.

    ``permutation[i]`` is the input axis (x=0, y=1, z=2) that became output axis ``i``; ``flipped[i]`` says
    whether output axis ``i`` was reversed. ``changed`` is false when the volume was already canonical.
    """

    original: Geometry
    canonical: Geometry
    permutation: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]

    @property
    def changed(self) -> bool:
        return self.permutation != (0, 1, 2) or any(self.flipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_orientation": self.original.orientation,
            "canonical_orientation": self.canonical.orientation,
            "changed": self.changed,
            "axis_permutation": list(self.permutation),
            "axes_flipped": list(self.flipped),
            "original_geometry": self.original.to_dict(),
            "canonical_geometry": self.canonical.to_dict(),
        }


def orientation_code(image: sitk.Image) -> str:
    """Three-letter patient orientation code (ITK/DICOM convention, e.g. ``"LPS"``) closest to the image's axes."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_canonical(image: sitk.Image, orientation: str = CANONICAL_ORIENTATION) -> tuple[sitk.Image, Reorientation]:
    """Re-index a 3D ``image`` to ``orientation`` with axis permutations and flips only (no interpolation).

    Returns the reoriented image (same pixel type and values) and a record of the change.
    """
    if image.GetDimension() != 3:
        raise ValueError(f"to_canonical expects a 3D image, got {image.GetDimension()}D")
    reorient = sitk.DICOMOrientImageFilter()
    reorient.SetDesiredCoordinateOrientation(orientation)
    out = reorient.Execute(image)
    record = Reorientation(
        original=Geometry.of(image),
        canonical=Geometry.of(out),
        permutation=tuple(int(p) for p in reorient.GetPermuteOrder()),
        flipped=tuple(bool(f) for f in reorient.GetFlipAxes()),
    )
    return out, record


def restore_orientation(image: sitk.Image, original_orientation: str) -> sitk.Image:
    """Undo :func:`to_canonical`: re-index a canonical ``image`` (e.g. a prediction) back to ``original_orientation``.

    ``original_orientation`` is the code recorded at conversion time (``conversion_report.json``:
    ``reorientation.original_orientation``). Pure permutation/flip, so the original array comes back exactly.
    """
    return sitk.DICOMOrient(image, original_orientation)


def geometry_mismatches(reference: sitk.Image, other: sitk.Image) -> list[str]:
    """Human-readable differences between the voxel grids of two images; empty if they match within tolerance."""
    problems = []
    if reference.GetDimension() != other.GetDimension():
        return [f"dimension {reference.GetDimension()} vs {other.GetDimension()}"]
    if reference.GetSize() != other.GetSize():
        problems.append(f"size {reference.GetSize()} vs {other.GetSize()}")
    if not np.allclose(reference.GetSpacing(), other.GetSpacing(), rtol=0, atol=SPACING_TOLERANCE_MM):
        problems.append(f"spacing {_fmt(reference.GetSpacing())} vs {_fmt(other.GetSpacing())} mm")
    if not np.allclose(reference.GetOrigin(), other.GetOrigin(), rtol=0, atol=ORIGIN_TOLERANCE_MM):
        problems.append(f"origin {_fmt(reference.GetOrigin())} vs {_fmt(other.GetOrigin())} mm")
    if not np.allclose(reference.GetDirection(), other.GetDirection(), rtol=0, atol=DIRECTION_TOLERANCE):
        problems.append(f"direction {_fmt(reference.GetDirection())} vs {_fmt(other.GetDirection())}")
    return problems


def require_same_geometry(image: sitk.Image, label: sitk.Image, label_path: "str | os.PathLike") -> None:
    """Raise :class:`ConversionError` naming ``label_path`` if the label's voxel grid differs from the image's."""
    problems = geometry_mismatches(image, label)
    if problems:
        raise ConversionError(
            label_path,
            "label does not lie on the image's voxel grid (image vs label: " + "; ".join(problems) + "). "
            "Image and label must have the same size, spacing, origin and direction; check that the pair belongs "
            "together and was exported from the same series.",
        )


def _fmt(values: "tuple[float, ...] | list[float]") -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
