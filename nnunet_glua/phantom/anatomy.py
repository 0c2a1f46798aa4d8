"""Subject anatomy of the phantom: named structures, the order they are painted in, and the shared torso.

A subject is a list of paint operations (shape + structure name) in the LPS patient frame (see
:mod:`.shapes`). Every structure carries a tissue (what the scanner sees, :mod:`.tissues`) and
the raw label value it has in each public dataset (what the annotators drew), so one painted subject gives the
image of any protocol and the label map of any dataset. Structures that a dataset does not annotate (fat, lung,
bone, the descending aorta in MMWHS, the gallbladder in CHAOS, ...) have label 0 there, exactly like real
ground truth, where unannotated anatomy is background.

The torso (body outline, subcutaneous fat, muscle wall, spine, ribs, patient table) is shared by the cardiac
and the abdominal subjects and built by :func:`build_torso`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from nnunet_glua.phantom.shapes import (
    Box,
    EllipticCylinder,
    Intersection,
    PatientGrid,
    RibBands,
    Shape,
    SmoothWarp,
    StructureCanvas,
    ZBands,
)
from nnunet_glua.phantom.tissues import Tissue


@dataclass(frozen=True)
class Structure:
    """A named anatomical structure: its tissue and its raw label value per dataset (absent = 0)."""

    name: str
    tissue: Tissue
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PaintOp:
    """Paint ``shape`` as ``structure``; with ``only_over``, only over voxels that hold one of those structures."""

    structure: str
    shape: Shape
    only_over: "tuple[str, ...] | None" = None


@dataclass(frozen=True)
class SubjectAnatomy:
    """One synthetic subject in the LPS patient frame (mm).

    ``structures``: the registry; structure id ``i + 1`` is ``structures[i]``, id 0 is the air around the body.
    ``operations``: paint order (later overwrites earlier). ``body``: the outer body outline. ``table_y``: the
    far (posterior) edge of the patient table. ``scan_center``: centre of the region a scan is aimed at
    (heart or upper abdomen), mm. ``warp``: smooth deformation applied to all shapes.
    """

    structures: tuple[Structure, ...]
    operations: tuple[PaintOp, ...]
    body: EllipticCylinder
    table_y: float
    scan_center: np.ndarray
    warp: SmoothWarp

    def structure_id(self, name: str) -> int:
        for index, structure in enumerate(self.structures):
            if structure.name == name:
                return index + 1
        raise KeyError(f"unknown phantom structure {name!r}")

    def rasterise(self, grid: PatientGrid) -> np.ndarray:
        """Structure ids on ``grid``: ``(nz, ny, nx)`` uint8, 0 outside the body."""
        canvas = StructureCanvas(grid, self.warp)
        for op in self.operations:
            only = None if op.only_over is None else tuple(self.structure_id(n) for n in op.only_over)
            canvas.paint(op.shape, self.structure_id(op.structure), only)
        return canvas.ids

    def tissue_lookup(self) -> np.ndarray:
        """``(len(structures) + 1,)`` uint8: tissue value of each structure id (id 0 -> air)."""
        return np.array([Tissue.AIR] + [s.tissue for s in self.structures], dtype=np.uint8)

    def label_lookup(self, dataset: str) -> np.ndarray:
        """``(len(structures) + 1,)`` uint16: raw label value of each structure id in ``dataset`` (0 if absent)."""
        return np.array([0] + [s.labels.get(dataset, 0) for s in self.structures], dtype=np.uint16)


# --------------------------------------------------------------------------------------------------------
# torso shared by both kinds
# --------------------------------------------------------------------------------------------------------

TORSO_STRUCTURES: tuple[Structure, ...] = (
    Structure("subcutaneous_fat", Tissue.FAT),
    Structure("body_wall", Tissue.MUSCLE),
    Structure("paraspinal_muscle", Tissue.MUSCLE),
    Structure("ribs", Tissue.BONE),
    Structure("vertebra", Tissue.BONE),
    Structure("disc", Tissue.MUSCLE),
    Structure("spinal_canal", Tissue.CSF),
    Structure("table", Tissue.TABLE),
)


@dataclass(frozen=True)
class Torso:
    """Key dimensions of a torso (mm, LPS) that organ placement refers to.

    ``cavity``: inside of the muscle wall (thoracic or abdominal cavity); ``vertebra_y`` / ``vertebra_radius``:
    centre (on the midline) and radius of the vertebral body. ``painted``: the torso's paint operations, to be
    followed by the cavity filler and the organs.
    """

    body: EllipticCylinder
    cavity: EllipticCylinder
    vertebra_y: float
    vertebra_radius: float
    table_y: float
    before_cavity: tuple[PaintOp, ...]
    after_cavity: tuple[PaintOp, ...]


def build_torso(rng: np.random.Generator, semi_axes: tuple[tuple[float, float], tuple[float, float]],
                fat_mm: tuple[float, float], rib_z_min: float) -> Torso:
    """Random torso: muscle-wall outline of semi-axes drawn from ``semi_axes`` ((a_lo, a_hi), (b_lo, b_hi)) mm,
    wrapped in a subcutaneous fat layer of ``fat_mm`` thickness (so fat subjects are bigger, not emptier), with
    spine, ribs above ``rib_z_min`` and a patient table under the back.
    """
    fat = rng.uniform(*fat_mm)
    a = rng.uniform(*semi_axes[0]) + fat
    b = rng.uniform(*semi_axes[1]) + fat
    flattening = rng.uniform(0.05, 0.18)
    body = EllipticCylinder((0.0, 0.0), (a, b), exponent=rng.uniform(2.0, 2.5), taper=rng.uniform(-0.01, 0.03),
                            posterior_flattening=flattening)
    muscle = rng.uniform(8.0, 13.0)
    inside_fat = body.shrunk(fat)
    cavity = body.shrunk(fat + muscle)

    back = b * (1.0 - flattening)  # posterior skin on the midline
    vertebra_radius = rng.uniform(15.0, 20.0)
    vertebra_y = back - fat - rng.uniform(55.0, 65.0)
    canal_y = vertebra_y + vertebra_radius + 9.0

    before = (
        PaintOp("subcutaneous_fat", body),
        PaintOp("body_wall", inside_fat),
    )
    ribs = RibBands(outer=body.shrunk(fat + 1.0), inner=body.shrunk(fat + muscle - 1.0),
                    period_mm=rng.uniform(24.0, 30.0), width_mm=rng.uniform(8.0, 11.0),
                    phase_mm=rng.uniform(0.0, 30.0), slope=-rng.uniform(0.6, 1.0), z_min=rib_z_min,
                    anterior_gap_mm=rng.uniform(20.0, 35.0))
    paraspinal = tuple(
        PaintOp("paraspinal_muscle",
                Intersection((EllipticCylinder((side * 30.0, canal_y + 12.0), (26.0, 20.0)), inside_fat)))
        for side in (-1.0, 1.0)
    )
    after = paraspinal + (
        PaintOp("ribs", ribs),
        PaintOp("vertebra", EllipticCylinder((0.0, vertebra_y), (vertebra_radius * 1.1, vertebra_radius))),
        PaintOp("disc", Intersection((EllipticCylinder((0.0, vertebra_y), (vertebra_radius * 1.1, vertebra_radius)),
                                      ZBands(period_mm=rng.uniform(30.0, 36.0), width_mm=rng.uniform(7.0, 10.0),
                                             phase_mm=rng.uniform(0.0, 36.0))))),
        # posterior arch and spinous process around the canal
        PaintOp("vertebra", EllipticCylinder((0.0, canal_y + 2.0), (14.0, 13.0))),
        PaintOp("vertebra", Intersection((EllipticCylinder((0.0, canal_y + 22.0), (5.0, 14.0)), inside_fat))),
        PaintOp("spinal_canal", EllipticCylinder((0.0, canal_y), (8.0, 7.0))),
    )
    gap = rng.uniform(3.0, 12.0)  # mattress: as dark as air in both modalities
    table_top = back + gap
    table_y = table_top + rng.uniform(10.0, 20.0)
    # painted first, so the body would win should a strongly warped back reach into it
    table = PaintOp("table", Box(np.array([-a - 80.0, table_top, -1e5]), np.array([a + 80.0, table_y, 1e5])))
    return Torso(body=body, cavity=cavity, vertebra_y=vertebra_y, vertebra_radius=vertebra_radius, table_y=table_y,
                 before_cavity=(table,) + before, after_cavity=after)
