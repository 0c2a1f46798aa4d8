"""Random cardiac subjects (thorax with a four-chamber heart and great vessels) with MMWHS label values.

Layout in the LPS patient frame (mm; +x left, +y posterior, +z superior), centred on the heart:

- the left ventricle is a truncated prolate ellipsoid whose long axis runs from the base (posterior, superior,
  right) to the apex (anterior, inferior, left); its myocardium (label 205) is a 8-12 mm shell open at the
  base, so the LV cavity (500) is surrounded by myocardium everywhere below the valve plane;
- the right ventricle (600) wraps around the right-anterior side of the LV as a crescent (its thin free wall
  is myocardium tissue without a label, as in MMWHS, where only the LV myocardium is annotated);
- the left atrium (420) lies behind and above the LV base, the right atrium (550) to its right; the ascending
  aorta (820) rises from the LV outflow and arches back to a descending aorta beside the spine (blood, but
  unlabelled, like MMWHS); the pulmonary artery (850) leaves the RV anteriorly, left of the aorta, and splits
  behind it; superior and inferior venae cavae enter the RA, pulmonary veins the LA;
- around it: pericardial fat, lungs, mediastinal fat, esophagus, spine, ribs, sternum, chest wall, and the
  liver dome and upper abdomen below the diaphragm.

Subjects vary in body size and fat, heart size (x0.85-1.15), heart position and orientation (±12 degrees),
chamber dimensions, wall thickness and vessel calibres, plus a smooth random warp of everything.
"""
from __future__ import annotations

import numpy as np

from nnunet_glua.phantom.anatomy import TORSO_STRUCTURES, PaintOp, Structure, SubjectAnatomy, build_torso
from nnunet_glua.phantom.shapes import (
    Ellipsoid,
    EllipticCylinder,
    HalfSpace,
    Intersection,
    Shape,
    SmoothWarp,
    Tube,
    Union,
    frame_along,
    random_rotation,
)
from nnunet_glua.phantom.tissues import Tissue

#: MMWHS raw label values (the public files use these numbers).
MMWHS_LABELS: dict[str, int] = {"MYO": 205, "LA": 420, "LV": 500, "RA": 550, "RV": 600, "AA": 820, "PA": 850}

_M = "mmwhs"
CARDIAC_STRUCTURES: tuple[Structure, ...] = TORSO_STRUCTURES + (
    Structure("mediastinum", Tissue.FAT),
    Structure("lung_right", Tissue.LUNG),
    Structure("lung_left", Tissue.LUNG),
    Structure("sternum", Tissue.BONE),
    Structure("liver", Tissue.LIVER),
    Structure("upper_abdomen", Tissue.BOWEL),
    Structure("stomach_gas", Tissue.AIR),
    Structure("pericardial_fat", Tissue.FAT),
    Structure("esophagus", Tissue.MUSCLE),
    Structure("vena_cava", Tissue.VENOUS_BLOOD),
    Structure("right_atrium", Tissue.VENOUS_BLOOD, {_M: MMWHS_LABELS["RA"]}),
    Structure("left_atrium", Tissue.ARTERIAL_BLOOD, {_M: MMWHS_LABELS["LA"]}),
    Structure("pulmonary_veins", Tissue.ARTERIAL_BLOOD),
    Structure("rv_wall", Tissue.MYOCARDIUM),
    Structure("right_ventricle", Tissue.VENOUS_BLOOD, {_M: MMWHS_LABELS["RV"]}),
    Structure("pulmonary_artery", Tissue.VENOUS_BLOOD, {_M: MMWHS_LABELS["PA"]}),
    Structure("lv_myocardium", Tissue.MYOCARDIUM, {_M: MMWHS_LABELS["MYO"]}),
    Structure("left_ventricle", Tissue.ARTERIAL_BLOOD, {_M: MMWHS_LABELS["LV"]}),
    Structure("ascending_aorta", Tissue.ARTERIAL_BLOOD, {_M: MMWHS_LABELS["AA"]}),
    Structure("descending_aorta", Tissue.ARTERIAL_BLOOD),
)

# Heart geometry in a heart-local LPS frame (before the subject's rotation and scale), mm.
_APEX_DIRECTION = np.array([0.55, -0.50, -0.67])  # base -> apex: left, anterior, inferior
_BASE_CENTER = np.array([5.0, 10.0, 15.0])


class _HeartFrame:
    """Maps heart-local points/ellipsoids to the patient frame: ``p = center + scale * rotation @ local``."""

    def __init__(self, center: np.ndarray, rotation: np.ndarray, scale: float):
        self.center, self.rotation, self.scale = center, rotation, scale

    def point(self, local: "np.ndarray | list[float]") -> np.ndarray:
        return self.center + self.scale * self.rotation @ np.asarray(local, dtype=np.float64)

    def points(self, local: "np.ndarray | list[list[float]]") -> np.ndarray:
        return np.stack([self.point(p) for p in np.asarray(local, dtype=np.float64)])

    def direction(self, local: np.ndarray) -> np.ndarray:
        d = self.rotation @ np.asarray(local, dtype=np.float64)
        return d / np.linalg.norm(d)

    def ellipsoid(self, center: "np.ndarray | list[float]", semi_axes: "np.ndarray | list[float]",
                  local_rotation: "np.ndarray | None" = None) -> Ellipsoid:
        rotation = self.rotation @ (np.eye(3) if local_rotation is None else local_rotation)
        return Ellipsoid(self.point(center), self.scale * np.asarray(semi_axes, dtype=np.float64), rotation)

    def tube(self, local_points: "list[list[float]]", radii: "list[float]") -> Tube:
        return Tube(self.points(local_points), self.scale * np.asarray(radii, dtype=np.float64))


def random_cardiac_subject(rng: np.random.Generator) -> SubjectAnatomy:
    """Draw one cardiac subject; the heart centre is near the origin of the patient frame."""
    torso = build_torso(rng, semi_axes=((128.0, 150.0), (88.0, 105.0)), fat_mm=(6.0, 22.0), rib_z_min=-1e5)
    cavity = torso.cavity
    a_in, b_in = cavity.semi_axes_xy
    ops: list[PaintOp] = list(torso.before_cavity)
    ops.append(PaintOp("mediastinum", cavity))

    # lungs fill the cavity sideways; the diaphragm domes (liver right, upper abdomen left) cut their bases
    diaphragm_z = rng.uniform(-75.0, -55.0)
    for side, name in ((-1.0, "lung_right"), (1.0, "lung_left")):
        lung = Ellipsoid(np.array([side * 0.52 * a_in, 0.08 * b_in, 30.0]),
                         np.array([0.5 * a_in, 0.95 * b_in, 170.0]), random_rotation(rng, (3.0, 3.0, 6.0)))
        ops.append(PaintOp(name, Intersection((lung, cavity))))
    liver = Ellipsoid(np.array([-0.35 * a_in, 0.0, diaphragm_z - 75.0 + rng.uniform(0.0, 15.0)]),
                      np.array([0.78 * a_in, 0.95 * b_in, 95.0]), random_rotation(rng, 6.0))
    abdomen = Ellipsoid(np.array([0.45 * a_in, 0.0, diaphragm_z - 85.0]),
                        np.array([0.7 * a_in, 0.95 * b_in, 90.0]), random_rotation(rng, 6.0))
    ops.append(PaintOp("upper_abdomen", Intersection((abdomen, cavity))))
    ops.append(PaintOp("stomach_gas", Intersection((
        Ellipsoid(abdomen.center + np.array([0.0, -0.45 * b_in, 75.0]), np.array([30.0, 18.0, 18.0])), cavity))))
    ops.append(PaintOp("liver", Intersection((liver, cavity))))
    ops.extend(torso.after_cavity)
    ops.append(PaintOp("sternum", Intersection((
        EllipticCylinder((rng.uniform(-4.0, 4.0), cavity.center_xy[1] - b_in - 4.0), (15.0, 7.0)),
        torso.body.shrunk(3.0)))))

    heart = _HeartFrame(
        center=np.array([rng.uniform(-6.0, 10.0), -0.25 * b_in + rng.uniform(-8.0, 8.0), 0.0]),
        rotation=random_rotation(rng, 12.0),
        scale=rng.uniform(0.85, 1.15),
    )

    def add(name: str, shape: Shape, only_over: "tuple[str, ...] | None" = None) -> None:
        # heart structures never cross the chest wall
        ops.append(PaintOp(name, Intersection((shape, cavity)), only_over))

    # esophagus and descending aorta run along the spine (patient frame, not heart frame)
    aorta_x = rng.uniform(16.0, 26.0)
    aorta_y = torso.vertebra_y - torso.vertebra_radius - rng.uniform(10.0, 16.0)
    aorta_r = rng.uniform(10.0, 13.0)
    ops.append(PaintOp("esophagus", Tube(np.array([[2.0, aorta_y - 4.0, 200.0], [4.0, aorta_y - 2.0, -200.0]]),
                                          np.array([7.0, 7.0]))))

    # chamber shapes (heart frame); painted below in an order that lets each one shape its neighbours
    ra_center = np.array([-42.0, 8.0, 22.0]) + rng.uniform(-4.0, 4.0, 3)
    ra = heart.ellipsoid(ra_center, np.array([24.0, 24.0, 28.0]) * rng.uniform(0.85, 1.15, 3),
                         random_rotation(rng, 15.0))
    la_center = np.array([1.0, 33.0, 30.0]) + rng.uniform(-4.0, 4.0, 3)
    la = heart.ellipsoid(la_center, np.array([34.0, 20.0, 25.0]) * rng.uniform(0.85, 1.15, 3),
                         random_rotation(rng, 10.0))
    apex = _APEX_DIRECTION / np.linalg.norm(_APEX_DIRECTION)
    lv_radius = rng.uniform(19.0, 25.0)
    lv_length = rng.uniform(38.0, 48.0)
    wall = rng.uniform(8.0, 12.0)
    lv_center = _BASE_CENTER + (lv_length - 12.0) * apex
    lv_axes = frame_along(apex, np.array([-0.8, -0.6, 0.0]))  # local z: long axis, local x: toward the RV
    base_cut = HalfSpace(heart.point(_BASE_CENTER), heart.direction(apex))
    lv_myo = Intersection((heart.ellipsoid(lv_center, [lv_radius + wall, lv_radius + wall, lv_length + 0.8 * wall],
                                           lv_axes), base_cut))
    lv = Intersection((heart.ellipsoid(lv_center, [lv_radius, lv_radius, lv_length], lv_axes), base_cut))
    rv_center = _BASE_CENTER + 0.45 * lv_length * apex + lv_axes[:, 0] * (lv_radius + wall + rng.uniform(0.0, 6.0))
    rv_shape = heart.ellipsoid(rv_center, [rng.uniform(20.0, 26.0), rng.uniform(30.0, 38.0), 0.85 * lv_length],
                               lv_axes)
    rv_cut = HalfSpace(heart.point(_BASE_CENTER - 4.0 * apex), heart.direction(apex))
    rv_wall_shape = rv_shape.grown(rng.uniform(3.0, 4.5))

    # epicardial fat: a layer of a few mm around the chambers, replacing only lung and mediastinal fat
    fat = rng.uniform(3.0, 8.0)
    lv_outer = heart.ellipsoid(lv_center, [lv_radius + wall, lv_radius + wall, lv_length + 0.8 * wall], lv_axes)
    add("pericardial_fat", Union((ra.grown(fat), la.grown(fat), rv_wall_shape.grown(fat), lv_outer.grown(fat))),
        only_over=("lung_left", "lung_right", "mediastinum"))

    # venae cavae into the right atrium, pulmonary veins into the left atrium
    add("vena_cava", heart.tube([[-38.0, 5.0, 160.0], [-40.0, 6.0, 40.0]], [10.0, 10.0]))
    add("vena_cava", heart.tube([[-32.0, 22.0, -160.0], [-38.0, 12.0, 5.0]], [12.0, 12.0]))
    add("right_atrium", ra)
    add("left_atrium", la)
    for side in (-1.0, 1.0):
        for dz in (12.0, -12.0):
            add("pulmonary_veins", heart.tube([la_center.tolist(), [side * 58.0, 42.0, la_center[2] + dz]], [6.0, 6.0]))

    add("rv_wall", Intersection((rv_wall_shape, rv_cut)))
    add("right_ventricle", Intersection((rv_shape, rv_cut)))
    # pulmonary trunk from the RV outflow (anterior, left of the aortic root), splitting behind the aorta
    pa_r = rng.uniform(11.0, 14.0)
    outflow = rv_center + 0.6 * (np.array([12.0, -22.0, 18.0]) - rv_center)
    bifurcation = np.array([10.0, 8.0, 55.0]) + rng.uniform(-4.0, 4.0, 3)
    add("pulmonary_artery", heart.tube([outflow.tolist(), [12.0, -22.0, 18.0], [18.0, -18.0, 45.0],
                                        bifurcation.tolist(), [45.0, 25.0, 50.0]],
                                       [pa_r, pa_r, pa_r, 0.75 * pa_r, 0.7 * pa_r]))
    add("pulmonary_artery", heart.tube([bifurcation.tolist(), [-40.0, 15.0, 48.0]], [0.75 * pa_r, 0.7 * pa_r]))
    # the LV last among the chambers: its myocardium carves the RV into a crescent
    add("lv_myocardium", lv_myo)
    add("left_ventricle", lv)

    # aorta: root at the LV outflow, ascending (labelled) up to the arch, then descending beside the spine
    aa_r = rng.uniform(12.0, 15.0)
    root = (_BASE_CENTER - 8.0 * apex + np.array([-6.0, -8.0, 0.0])).tolist()
    ascending = heart.points([root, [-8.0, -12.0, 55.0], [-8.0, -5.0, 85.0], [8.0, 25.0, 102.0]])
    ops.append(PaintOp("ascending_aorta", Tube(ascending, np.array([aa_r, aa_r, aa_r, 0.9 * aa_r]))))
    descending = np.array([ascending[-1], [aorta_x, aorta_y, ascending[-1][2] - 20.0], [aorta_x, aorta_y, -250.0]])
    ops.append(PaintOp("descending_aorta", Tube(descending, np.array([0.9 * aa_r, aorta_r, aorta_r]))))

    warp = SmoothWarp.random(rng, amplitude_mm=3.0, wavelength_mm=(120.0, 260.0))
    return SubjectAnatomy(structures=CARDIAC_STRUCTURES, operations=tuple(ops), body=torso.body,
                          table_y=torso.table_y, scan_center=heart.point([5.0, 5.0, 10.0]), warp=warp)
