"""Scan geometry of the phantom: field of view, voxel spacing, acquisition plane and stored array orientation.

Each public dataset the phantom imitates has an :class:`AcquisitionProtocol`. A scan is first sampled on a
grid aligned with the patient axes (:class:`~.shapes.PatientGrid`, ITK "LPS"), then stored in the
dataset's typical array orientation by a lossless permutation/flip (``sitk.DICOMOrient``), so the direction
matrix of every file is exact and the anatomy keeps its physical place: reorienting any file back to LPS gives
the patient-aligned array again.

Spacing: ``size`` sets the in-plane matrix. The field of view covers the whole body cross-section (with a
random margin), so in-plane spacing is the field of view divided by the matrix; small ``size`` values give
coarse voxels over a real-sized patient (e.g. 80 voxels over about 380 mm: about 4.7 mm). The number of slices
is a per-protocol fraction of ``size`` over the protocol's cranio-caudal coverage.

==============  ================  ==============================  ====================================
dataset         plane(s)          stored orientation codes        matrix at ``size`` = N
==============  ================  ==============================  ====================================
MMWHS CT        axial             LPS, LPI                        N x N x (0.5-0.75 N), 140-175 mm in z
MMWHS MR        axial, sagittal,  RAS / PIL, PIR / LIP, RIA       3D, N along the longest in-plane
                coronal                                           axis, slices 1.0-1.5x thicker
BTCV CT         axial             RAS, RAI                        N x N x (0.5-0.8 N), 240-300 mm in z
CHAOS T2-SPIR   axial (2D)        DICOM slices, rows P, cols L    0.75 N x 0.75 N x (0.35-0.55 N)
==============  ================  ==============================  ====================================

(Orientation codes name the patient direction each array axis i, j, k points to, as ``sitk.DICOMOrient``.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import SimpleITK as sitk

from nnunet_glua.phantom.imaging import ImagingSettings
from nnunet_glua.phantom.shapes import EllipticCylinder, PatientGrid
from nnunet_glua.phantom.tissues import Tissue

#: Smallest accepted ``size``: below this the myocardium and adrenals vanish between voxels.
MIN_SIZE = 16
_MIN_SLICES = 8
# the field of view is centred up to this far (mm, in x and y) from the body axis, like a real patient
# positioning error
_CENTER_OFFSET_MM = 6.0
# extra field of view (mm, per axis) so the body stays inside despite the centring offset, the subject's smooth
# warp (up to about 9 mm) and the body's widening along z (a few mm at the ends of the coverage)
_BODY_SLACK_MM = 2.0 * (_CENTER_OFFSET_MM + 12.0)


@dataclass(frozen=True)
class AcquisitionProtocol:
    """Geometry and imaging settings of one dataset's scans.

    ``planes`` maps each acquisition plane to the array orientation codes its files are stored in.
    ``fov_margin``: field of view / body extent. ``coverage_mm``: cranio-caudal extent. ``center_z_mm``: the
    scan centre relative to the subject's region of interest. 2D axial protocols (``slice_fraction`` set) have
    a square in-plane field of view of ``inplane_fraction * size`` voxels and ``slice_fraction * size`` slices;
    3D protocols (``through_plane_ratio`` set) have near-isotropic voxels, thicker along the plane normal.
    """

    dataset: str
    imaging: ImagingSettings
    planes: Mapping[str, tuple[str, ...]]
    fov_margin: tuple[float, float]
    coverage_mm: tuple[float, float]
    center_z_mm: tuple[float, float]
    inplane_fraction: float = 1.0
    slice_fraction: "tuple[float, float] | None" = None
    through_plane_ratio: "tuple[float, float] | None" = None


PROTOCOLS: Mapping[str, AcquisitionProtocol] = {
    "mmwhs_ct": AcquisitionProtocol(
        dataset="mmwhs",
        imaging=ImagingSettings("mmwhs_ct", "CT", noise=(12.0, 25.0), circle_probability=0.3),
        planes={"axial": ("LPS", "LPI")},
        fov_margin=(1.08, 1.25), coverage_mm=(140.0, 175.0), center_z_mm=(-10.0, 10.0),
        slice_fraction=(0.5, 0.75),
    ),
    "mmwhs_mr": AcquisitionProtocol(
        dataset="mmwhs",
        imaging=ImagingSettings("mmwhs_mr", "MR", noise=(0.02, 0.04), gain=(0.7, 1.8), bias_strength=(0.1, 0.3),
                                reference_tissue=Tissue.ARTERIAL_BLOOD, max_value=4095),
        planes={"axial": ("RAS",), "sagittal": ("PIL", "PIR"), "coronal": ("LIP", "RIA")},
        fov_margin=(1.1, 1.25), coverage_mm=(140.0, 180.0), center_z_mm=(-10.0, 10.0),
        through_plane_ratio=(1.0, 1.5),
    ),
    "btcv_ct": AcquisitionProtocol(
        dataset="btcv",
        imaging=ImagingSettings("btcv_ct", "CT", noise=(8.0, 18.0), circle_probability=0.5),
        planes={"axial": ("RAS", "RAI")},
        fov_margin=(1.08, 1.3), coverage_mm=(240.0, 300.0), center_z_mm=(-5.0, 15.0),
        slice_fraction=(0.5, 0.8),
    ),
    "chaos_t2spir": AcquisitionProtocol(
        dataset="chaos",
        imaging=ImagingSettings("chaos_t2spir", "MR", noise=(0.015, 0.03), gain=(0.6, 1.4), bias_strength=(0.1, 0.3),
                                reference_tissue=Tissue.SPLEEN, max_value=4095),
        planes={"axial": ("LPS",)},
        fov_margin=(1.1, 1.3), coverage_mm=(230.0, 290.0), center_z_mm=(-10.0, 10.0),
        inplane_fraction=0.75, slice_fraction=(0.35, 0.55),
    ),
}


# the "alt" appearance's image formation: noisier CT (lower tube voltage), MR with a wider gain range, stronger coil
# inhomogeneity and more noise (see tissues.ALT_PROTOCOL_INTENSITIES for the tissue values)
_ALT_IMAGING: Mapping[str, dict] = {
    "mmwhs_ct": {"noise": (18.0, 35.0), "circle_probability": 0.6},
    "mmwhs_mr": {"noise": (0.03, 0.06), "gain": (0.5, 2.2), "bias_strength": (0.2, 0.45)},
    "btcv_ct": {"noise": (12.0, 25.0), "circle_probability": 0.2},
    "chaos_t2spir": {"noise": (0.025, 0.05), "gain": (0.5, 1.8), "bias_strength": (0.2, 0.45)},
}


def imaging_settings(protocol: str, appearance: str = "standard") -> ImagingSettings:
    """How ``protocol`` (a key of :data:`PROTOCOLS`) forms its image in ``appearance`` (``"standard"``: the
    settings above; ``"alt"``: the second appearance, which no default is tuned on)."""
    settings = PROTOCOLS[protocol].imaging
    if appearance == "standard":
        return settings
    if appearance != "alt":
        raise ValueError(f"unknown phantom appearance {appearance!r}; choose standard or alt")
    return dataclasses.replace(settings, appearance="alt", **_ALT_IMAGING[protocol])


@dataclass(frozen=True)
class Acquisition:
    """One scan's sampling grid (patient-aligned), acquisition plane and stored orientation code."""

    grid: PatientGrid
    plane: str
    orientation: str


def _centered_grid(center: np.ndarray, counts_xyz: tuple[int, int, int],
                   spacing_xyz: tuple[float, float, float]) -> PatientGrid:
    spacing = tuple(round(float(s), 4) for s in spacing_xyz)
    origin = tuple(round(float(c - (n - 1) / 2.0 * s), 4) for c, n, s in zip(center, counts_xyz, spacing))
    return PatientGrid(shape=(counts_xyz[2], counts_xyz[1], counts_xyz[0]), spacing=spacing,  # type: ignore[arg-type]
                       origin=origin)  # type: ignore[arg-type]


def plan_acquisition(protocol: AcquisitionProtocol, body: EllipticCylinder, table_y: float,
                     scan_center: np.ndarray, size: int, rng: np.random.Generator) -> Acquisition:
    """Random scan of a subject: field of view around ``body``, ``size`` voxels in-plane (see module docstring)."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} voxels, got {size}")
    a, b = body.semi_axes_xy
    plane = str(rng.choice(sorted(protocol.planes)))
    orientation = str(rng.choice(protocol.planes[plane]))
    coverage = rng.uniform(*protocol.coverage_mm)
    center = np.array([rng.uniform(-_CENTER_OFFSET_MM, _CENTER_OFFSET_MM),
                       rng.uniform(-_CENTER_OFFSET_MM, _CENTER_OFFSET_MM),
                       scan_center[2] + rng.uniform(*protocol.center_z_mm)])
    if protocol.slice_fraction is not None:  # 2D axial: square in-plane field of view
        # the patient table sits behind the back: centre the field of view between the front and the table
        center[1] += (table_y - b) / 2.0
        fov = (max(2.0 * a, b + table_y) + _BODY_SLACK_MM) * rng.uniform(*protocol.fov_margin)
        n_inplane = max(MIN_SIZE, int(round(size * protocol.inplane_fraction)))
        n_slices = max(_MIN_SLICES, int(round(size * rng.uniform(*protocol.slice_fraction))))
        return Acquisition(_centered_grid(center, (n_inplane, n_inplane, n_slices),
                                          (fov / n_inplane, fov / n_inplane, coverage / n_slices)), plane, orientation)
    if protocol.through_plane_ratio is None:
        raise ValueError(f"protocol {protocol.imaging.protocol} needs slice_fraction or through_plane_ratio")
    extents = np.array([(2.0 * a + _BODY_SLACK_MM) * rng.uniform(*protocol.fov_margin),
                        (2.0 * b + _BODY_SLACK_MM) * rng.uniform(*protocol.fov_margin), coverage])
    normal = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    inplane_spacing = max(extents[axis] for axis in range(3) if axis != normal) / size
    spacing = np.full(3, inplane_spacing)
    spacing[normal] *= rng.uniform(*protocol.through_plane_ratio)
    counts = tuple(max(_MIN_SLICES, int(np.ceil(extents[axis] / spacing[axis]))) for axis in range(3))
    return Acquisition(_centered_grid(center, counts, tuple(spacing)), plane, orientation)  # type: ignore[arg-type]


def to_stored_image(array_zyx: np.ndarray, grid: PatientGrid, orientation: str) -> sitk.Image:
    """SimpleITK image of a patient-aligned array, re-indexed (permute/flip only) into ``orientation``."""
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image if orientation == "LPS" else sitk.DICOMOrient(image, orientation)
