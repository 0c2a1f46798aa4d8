"""Geometric building blocks of the phantom: a patient-aligned voxel grid, implicit shapes, and a painter.

All coordinates are physical millimetres in the DICOM/ITK patient frame (LPS): +x toward the patient's Left,
+y toward Posterior, +z toward Superior (head). Anatomy is described as implicit shapes in that frame and
rasterised on a :class:`PatientGrid`, whose array axes are aligned with x, y and z; storing a volume in
another orientation is a later, lossless permutation/flip (:mod:`.acquisition`).

Shapes are painted in order into a :class:`StructureCanvas` (later shapes overwrite earlier ones), which is how
organs get their neighbours' boundaries without explicit collision handling. A smooth random warp of the
evaluation coordinates (:class:`SmoothWarp`) bends all shapes of a subject together, so organ outlines vary
between subjects beyond the per-organ size/position/rotation parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Vector = np.ndarray  # (3,) float64, mm, LPS


# --------------------------------------------------------------------------------------------------------
# rotations
# --------------------------------------------------------------------------------------------------------


def rotation_xyz(angles_deg: "tuple[float, float, float] | np.ndarray") -> np.ndarray:
    """Rotation matrix (3, 3) for rotations about x, then y, then z (degrees, right-handed, fixed axes)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotation(rng: np.random.Generator, max_deg: "float | tuple[float, float, float]") -> np.ndarray:
    """Small random rotation: independent uniform angles in ``±max_deg`` about x, y and z."""
    limits = np.broadcast_to(np.asarray(max_deg, dtype=np.float64), (3,))
    return rotation_xyz(rng.uniform(-limits, limits))


def frame_along(axis: Vector, towards: Vector) -> np.ndarray:
    """Orthonormal frame (3, 3) whose third column is ``axis`` and whose first column points toward ``towards``.

    Used to orient elongated organs: local z runs along the organ's long axis, local x toward a chosen side.
    ``towards`` must not be parallel to ``axis``.
    """
    w = np.asarray(axis, dtype=np.float64)
    w = w / np.linalg.norm(w)
    u = np.asarray(towards, dtype=np.float64)
    u = u - np.dot(u, w) * w
    u = u / np.linalg.norm(u)
    v = np.cross(w, u)
    return np.stack([u, v, w], axis=1)


# --------------------------------------------------------------------------------------------------------
# grid and warp
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientGrid:
    """Voxel grid aligned with the patient axes (identity direction, ITK "LPS").

    ``shape`` is the numpy shape ``(nz, ny, nx)`` (the order of ``sitk.GetArrayFromImage``); ``spacing`` and
    ``origin`` are ``(x, y, z)`` in mm, ``origin`` being the centre of voxel ``[0, 0, 0]``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axis_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical x (nx,), y (ny,) and z (nz,) of the voxel centres, float64 mm."""
        nz, ny, nx = self.shape
        return tuple(  # type: ignore[return-value]
            self.origin[a] + self.spacing[a] * np.arange(n, dtype=np.float64) for a, n in enumerate((nx, ny, nz))
        )

    def index_slices(self, lo: Vector, hi: Vector) -> "tuple[slice, slice, slice] | None":
        """Array slices (z, y, x) covering the physical box ``[lo, hi]``; ``None`` if it misses the grid."""
        nz, ny, nx = self.shape
        result = []
        for axis, n in zip((2, 1, 0), (nz, ny, nx)):
            first = int(np.floor((lo[axis] - self.origin[axis]) / self.spacing[axis]))
            last = int(np.ceil((hi[axis] - self.origin[axis]) / self.spacing[axis]))
            first, last = max(first, 0), min(last + 1, n)
            if first >= last:
                return None
            result.append(slice(first, last))
        return tuple(result)  # type: ignore[return-value]


@dataclass(frozen=True)
class SmoothWarp:
    """Smooth displacement field ``d(p) = sum_k a_k sin(2 pi <w_k, p> / wavelength_k + phase_k)`` in mm.

    Shapes are evaluated at ``p + d(p)``, so the anatomy is bent by about ``-d``. ``max_displacement`` bounds
    ``|d|`` per axis and is used to enlarge bounding boxes.
    """

    directions: np.ndarray  # (K, 3) unit wave vectors
    amplitudes: np.ndarray  # (K, 3) displacement vectors, mm
    wavelengths: np.ndarray  # (K,) mm
    phases: np.ndarray  # (K,) radians

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude_mm: float, wavelength_mm: tuple[float, float],
               waves: int = 3) -> "SmoothWarp":
        directions = rng.normal(size=(waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        amplitudes = rng.uniform(-amplitude_mm, amplitude_mm, size=(waves, 3))
        return cls(directions, amplitudes, rng.uniform(*wavelength_mm, size=waves), rng.uniform(0, 2 * np.pi, waves))

    @property
    def max_displacement(self) -> float:
        return float(np.abs(self.amplitudes).sum(axis=0).max()) if len(self.amplitudes) else 0.0

    def apply(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warped coordinates (same shapes as the inputs, float32)."""
        wx, wy, wz = x.astype(np.float32), y.astype(np.float32), z.astype(np.float32)
        ox, oy, oz = wx.copy(), wy.copy(), wz.copy()
        for direction, amplitude, wavelength, phase in zip(self.directions, self.amplitudes, self.wavelengths,
                                                          self.phases):
            arg = (direction[0] * wx + direction[1] * wy + direction[2] * wz) * np.float32(2 * np.pi / wavelength)
            wave = np.sin(arg + np.float32(phase))
            ox += np.float32(amplitude[0]) * wave
            oy += np.float32(amplitude[1]) * wave
            oz += np.float32(amplitude[2]) * wave
        return ox, oy, oz


# --------------------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------------------


class Shape(Protocol):
    """An implicit solid: a physical bounding box and a point-membership test."""

    def bounds(self) -> tuple[Vector, Vector]:
        """(lo, hi) corners of an axis-aligned box (mm) that contains the whole shape."""

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (same shape as the coordinate arrays) that lie in the shape."""


_FAR = 1e5  # "unbounded" extent for shapes that run through the whole scan (body, spine)


@dataclass(frozen=True)
class Ellipsoid:
    """Solid ellipsoid: ``center`` (3,), ``semi_axes`` (3,) mm along the columns of ``rotation`` (3, 3)."""

    center: Vector
    semi_axes: Vector
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def bounds(self) -> tuple[Vector, Vector]:
        half = np.sqrt(((self.rotation * np.asarray(self.semi_axes)[None, :]) ** 2).sum(axis=1))
        return np.asarray(self.center) - half, np.asarray(self.center) + half

    def level(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Normalised squared radius: < 1 inside, 1 on the surface."""
        c = np.asarray(self.center, dtype=np.float32)
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        total = np.zeros(np.shape(x), dtype=np.float32)
        for axis in range(3):
            r = self.rotation[:, axis]
            local = dx * np.float32(r[0]) + dy * np.float32(r[1]) + dz * np.float32(r[2])
            total += (local * np.float32(1.0 / self.semi_axes[axis])) ** 2
        return total

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.level(x, y, z) <= 1.0

    def grown(self, margin_mm: float) -> "Ellipsoid":
        """Same ellipsoid with every semi-axis longer by ``margin_mm`` (a wall of about that thickness)."""
        return Ellipsoid(self.center, np.asarray(self.semi_axes) + margin_mm, self.rotation)

    def scaled(self, factor: float) -> "Ellipsoid":
        return Ellipsoid(self.center, np.asarray(self.semi_axes) * factor, self.rotation)


@dataclass(frozen=True)
class EllipticCylinder:
    """Superelliptic cylinder along z: ``|dx/a|^p + |dy/b|^p <= 1`` for ``z_range[0] <= z <= z_range[1]``.

    ``taper`` widens (or narrows) the cross-section linearly with z: semi-axes times ``1 + taper * z / 100``;
    ``posterior_flattening`` in [0, 1) shortens ``b`` on the posterior side (+y), like a supine back.
    """

    center_xy: tuple[float, float]
    semi_axes_xy: tuple[float, float]
    exponent: float = 2.0
    z_range: tuple[float, float] = (-_FAR, _FAR)
    taper: float = 0.0
    posterior_flattening: float = 0.0

    def bounds(self) -> tuple[Vector, Vector]:
        grow = 1.0 + abs(self.taper) * 5.0  # generous: the scans never reach 500 mm from the centre
        a, b = self.semi_axes_xy[0] * grow, self.semi_axes_xy[1] * grow
        cx, cy = self.center_xy
        return np.array([cx - a, cy - b, self.z_range[0]]), np.array([cx + a, cy + b, self.z_range[1]])

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        scale = 1.0 + np.float32(self.taper / 100.0) * z
        a = np.float32(self.semi_axes_xy[0]) * scale
        dy = y - np.float32(self.center_xy[1])
        b = np.float32(self.semi_axes_xy[1]) * scale * np.where(dy > 0, np.float32(1 - self.posterior_flattening),
                                                                   np.float32(1))
        p = np.float32(self.exponent)
        value = np.abs((x - np.float32(self.center_xy[0])) / a) ** p + np.abs(dy / b) ** p
        return (value <= 1.0) & (z >= self.z_range[0]) & (z <= self.z_range[1])

    def shrunk(self, margin_mm: float) -> "EllipticCylinder":
        """The same cylinder with both semi-axes shorter by ``margin_mm`` (the inside of a wall)."""
        a, b = self.semi_axes_xy
        return EllipticCylinder(self.center_xy, (a - margin_mm, b - margin_mm), self.exponent, self.z_range,
                                self.taper, self.posterior_flattening)


@dataclass(frozen=True)
class Tube:
    """Solid tube around a polyline: points within ``radius`` (linearly interpolated per vertex) of it.

    ``points`` is (N, 3) mm, ``radii`` (N,) mm. The ends are rounded (a capsule per segment).
    """

    points: np.ndarray
    radii: np.ndarray

    def bounds(self) -> tuple[Vector, Vector]:
        r = float(np.max(self.radii))
        return self.points.min(axis=0) - r, self.points.max(axis=0) + r

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        mask = np.zeros(np.shape(x), dtype=bool)
        for (a, b), (ra, rb) in zip(zip(self.points[:-1], self.points[1:]), zip(self.radii[:-1], self.radii[1:])):
            seg = b - a
            length2 = float(np.dot(seg, seg))
            dx, dy, dz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
            if length2 == 0.0:
                t = np.zeros(np.shape(x), dtype=np.float32)
            else:
                t = (dx * np.float32(seg[0]) + dy * np.float32(seg[1]) + dz * np.float32(seg[2])) / np.float32(length2)
                t = np.clip(t, 0.0, 1.0)
            ex, ey, ez = dx - t * np.float32(seg[0]), dy - t * np.float32(seg[1]), dz - t * np.float32(seg[2])
            radius = np.float32(ra) + t * np.float32(rb - ra)
            mask |= ex * ex + ey * ey + ez * ez <= radius * radius
        return mask


@dataclass(frozen=True)
class Box:
    """Axis-aligned box ``[lo, hi]`` (mm)."""

    lo: Vector
    hi: Vector

    def bounds(self) -> tuple[Vector, Vector]:
        return np.asarray(self.lo, dtype=np.float64), np.asarray(self.hi, dtype=np.float64)

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return ((x >= self.lo[0]) & (x <= self.hi[0]) & (y >= self.lo[1]) & (y <= self.hi[1])
                & (z >= self.lo[2]) & (z <= self.hi[2]))


@dataclass(frozen=True)
class HalfSpace:
    """Points on the side of a plane that ``normal`` points to: ``<p - point, normal> >= 0``."""

    point: Vector
    normal: Vector

    def bounds(self) -> tuple[Vector, Vector]:
        return np.full(3, -_FAR), np.full(3, _FAR)

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        n = self.normal
        return ((x - np.float32(self.point[0])) * np.float32(n[0]) + (y - np.float32(self.point[1])) * np.float32(n[1])
                + (z - np.float32(self.point[2])) * np.float32(n[2])) >= 0


@dataclass(frozen=True)
class RibBands:
    """Ribs: a ring between two cylinders, cut into oblique bands along z (one band per rib).

    A point belongs to a rib if it lies inside ``outer`` but not ``inner``, its ``z + slope * y`` falls in the
    first ``width_mm`` of each ``period_mm`` (ribs run down toward the front), it is above ``z_min``, and it is
    not within ``anterior_gap_mm`` of the midline in front (the costal cartilages and sternum are left out).
    """

    outer: EllipticCylinder
    inner: EllipticCylinder
    period_mm: float
    width_mm: float
    phase_mm: float
    slope: float
    z_min: float
    anterior_gap_mm: float

    def bounds(self) -> tuple[Vector, Vector]:
        lo, hi = self.outer.bounds()
        lo = lo.copy()
        lo[2] = max(lo[2], self.z_min)
        return lo, hi

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        ring = self.outer.inside(x, y, z) & ~self.inner.inside(x, y, z)
        band = np.mod(z + np.float32(self.slope) * y + np.float32(self.phase_mm), np.float32(self.period_mm))
        front = (y < self.outer.center_xy[1]) & (np.abs(x - np.float32(self.outer.center_xy[0])) < self.anterior_gap_mm)
        return ring & (band < self.width_mm) & (z >= self.z_min) & ~front


@dataclass(frozen=True)
class ZBands:
    """Periodic slabs along z: points with ``(z + phase_mm) mod period_mm < width_mm`` (e.g. intervertebral discs)."""

    period_mm: float
    width_mm: float
    phase_mm: float

    def bounds(self) -> tuple[Vector, Vector]:
        return np.full(3, -_FAR), np.full(3, _FAR)

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.mod(z + np.float32(self.phase_mm), np.float32(self.period_mm)) < self.width_mm


@dataclass(frozen=True)
class Intersection:
    """Points inside every one of ``parts``; bounded by the first part's box."""

    parts: tuple

    def bounds(self) -> tuple[Vector, Vector]:
        lo, hi = self.parts[0].bounds()
        for part in self.parts[1:]:
            plo, phi = part.bounds()
            lo, hi = np.maximum(lo, plo), np.minimum(hi, phi)
        return lo, hi

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        mask = self.parts[0].inside(x, y, z)
        for part in self.parts[1:]:
            mask &= part.inside(x, y, z)
        return mask


@dataclass(frozen=True)
class Difference:
    """Points inside ``keep`` and outside ``remove``."""

    keep: Shape
    remove: Shape

    def bounds(self) -> tuple[Vector, Vector]:
        return self.keep.bounds()

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.keep.inside(x, y, z) & ~self.remove.inside(x, y, z)


@dataclass(frozen=True)
class Union:
    """Points inside any of ``parts``."""

    parts: tuple

    def bounds(self) -> tuple[Vector, Vector]:
        boxes = [part.bounds() for part in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        mask = self.parts[0].inside(x, y, z)
        for part in self.parts[1:]:
            mask |= part.inside(x, y, z)
        return mask


# --------------------------------------------------------------------------------------------------------
# painter
# --------------------------------------------------------------------------------------------------------


class StructureCanvas:
    """Structure-id volume ``(nz, ny, nx)`` uint8 on a :class:`PatientGrid`; id 0 is empty space (air).

    :meth:`paint` evaluates a shape only inside its bounding box (enlarged by the warp's reach), so painting
    many small organs into a large volume stays cheap.
    """

    def __init__(self, grid: PatientGrid, warp: "SmoothWarp | None" = None):
        self.grid = grid
        self.ids = np.zeros(grid.shape, dtype=np.uint8)
        x, y, z = grid.axis_coordinates()
        zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
        if warp is None:
            self._xyz = (xx.astype(np.float32), yy.astype(np.float32), zz.astype(np.float32))
            self._reach = 0.0
        else:
            self._xyz = warp.apply(xx, yy, zz)
            self._reach = warp.max_displacement

    def paint(self, shape: Shape, structure_id: int, only_over: "tuple[int, ...] | None" = None) -> None:
        """Set voxels inside ``shape`` to ``structure_id``; with ``only_over``, only voxels holding one of those ids."""
        lo, hi = shape.bounds()
        region = self.grid.index_slices(np.asarray(lo) - self._reach, np.asarray(hi) + self._reach)
        if region is None:
            return
        mask = shape.inside(*(c[region] for c in self._xyz))
        target = self.ids[region]
        if only_over is not None:
            mask &= np.isin(target, only_over)
        target[mask] = structure_id
