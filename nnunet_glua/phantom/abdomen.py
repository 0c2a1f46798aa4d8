"""Random upper-abdominal subjects with BTCV and CHAOS label values.

Layout in the LPS patient frame (mm; +x left, +y posterior, +z superior), origin near the renal hilum level:

- liver (right lobe on the patient's right, left lobe crossing the midline anteriorly) under the right
  diaphragm, gallbladder on its inferior surface, intrahepatic IVC behind it;
- spleen high on the left, posterolateral; stomach left-anterior with an air-fluid level (gas anterior, the
  non-dependent side of a supine patient) and the esophagus joining it;
- kidneys in the posterior paravertebral gutters, the right one lower than the left, upper poles tilted
  medially and posteriorly, hila facing antero-medially; cortex, medulla and pelvis are separate tissues;
  adrenals sit on the upper poles;
- aorta left-anterior of the vertebral body down to its bifurcation, IVC to the right, pancreas arching from
  the splenic hilum across the midline to its head, splenic and portal veins behind it to the liver hilum;
- lung bases in the posterior costophrenic recesses, bowel loops (some with gas) in the lower abdomen,
  psoas and paraspinal muscles, spine, ribs, wall, subcutaneous fat and the patient table.

Label values: BTCV 1 spleen, 2 right kidney, 3 left kidney, 4 gallbladder, 5 esophagus, 6 liver, 7 stomach,
8 aorta, 9 IVC, 10 portal and splenic vein, 11 pancreas, 12 right adrenal, 13 left adrenal; CHAOS 63 liver,
126 right kidney, 189 left kidney, 252 spleen. A gallbladder is absent in about one subject in ten
(cholecystectomy), as in the real BTCV cohort.
"""
from __future__ import annotations

import numpy as np

from nnunet_glua.phantom.anatomy import TORSO_STRUCTURES, PaintOp, Structure, SubjectAnatomy, build_torso
from nnunet_glua.phantom.shapes import (
    Ellipsoid,
    HalfSpace,
    Intersection,
    Shape,
    SmoothWarp,
    Tube,
    Union,
    frame_along,
    random_rotation,
    rotation_xyz,
)
from nnunet_glua.phantom.tissues import Tissue

#: BTCV raw label values.
BTCV_LABELS: dict[str, int] = {
    "spleen": 1, "right_kidney": 2, "left_kidney": 3, "gallbladder": 4, "esophagus": 5, "liver": 6, "stomach": 7,
    "aorta": 8, "ivc": 9, "portal_splenic_vein": 10, "pancreas": 11, "right_adrenal": 12, "left_adrenal": 13,
}
#: CHAOS raw PNG mask values.
CHAOS_LABELS: dict[str, int] = {"liver": 63, "right_kidney": 126, "left_kidney": 189, "spleen": 252}


def _labels(organ: str) -> dict[str, int]:
    found = {"btcv": BTCV_LABELS[organ]} if organ in BTCV_LABELS else {}
    if organ in CHAOS_LABELS:
        found["chaos"] = CHAOS_LABELS[organ]
    return found


ABDOMINAL_STRUCTURES: tuple[Structure, ...] = TORSO_STRUCTURES + (
    Structure("visceral_fat", Tissue.FAT),
    Structure("lung_base", Tissue.LUNG),
    Structure("psoas", Tissue.MUSCLE),
    Structure("bowel", Tissue.BOWEL),
    Structure("bowel_gas", Tissue.AIR),
    Structure("iliac_arteries", Tissue.ARTERIAL_BLOOD),
    Structure("liver", Tissue.LIVER, _labels("liver")),
    Structure("gallbladder", Tissue.BILE, _labels("gallbladder")),
    Structure("spleen", Tissue.SPLEEN, _labels("spleen")),
    Structure("stomach_wall", Tissue.GASTRIC_WALL, _labels("stomach")),
    Structure("stomach_content", Tissue.GASTRIC_CONTENT, _labels("stomach")),
    Structure("stomach_gas", Tissue.AIR, _labels("stomach")),
    Structure("esophagus", Tissue.MUSCLE, _labels("esophagus")),
    Structure("right_kidney_cortex", Tissue.KIDNEY_CORTEX, _labels("right_kidney")),
    Structure("right_kidney_medulla", Tissue.KIDNEY_MEDULLA, _labels("right_kidney")),
    Structure("right_kidney_pelvis", Tissue.URINE, _labels("right_kidney")),
    Structure("left_kidney_cortex", Tissue.KIDNEY_CORTEX, _labels("left_kidney")),
    Structure("left_kidney_medulla", Tissue.KIDNEY_MEDULLA, _labels("left_kidney")),
    Structure("left_kidney_pelvis", Tissue.URINE, _labels("left_kidney")),
    Structure("right_adrenal", Tissue.ADRENAL, _labels("right_adrenal")),
    Structure("left_adrenal", Tissue.ADRENAL, _labels("left_adrenal")),
    Structure("pancreas", Tissue.PANCREAS, _labels("pancreas")),
    Structure("portal_splenic_vein", Tissue.PORTAL_BLOOD, _labels("portal_splenic_vein")),
    Structure("aorta", Tissue.ARTERIAL_BLOOD, _labels("aorta")),
    Structure("ivc", Tissue.VENOUS_BLOOD, _labels("ivc")),
)


def _kidney(rng: np.random.Generator, side: float, center: np.ndarray, prefix: str) -> tuple[list[PaintOp], np.ndarray]:
    """Cortex, medulla and pelvis of one kidney (``side`` -1 right, +1 left); also returns its upper pole (mm)."""
    scale = rng.uniform(0.88, 1.12)
    semi = np.array([rng.uniform(24.0, 29.0), rng.uniform(21.0, 26.0), rng.uniform(50.0, 60.0)]) * scale
    # long axis: upper pole medial and posterior; local x (hilum) antero-medial
    axis = np.array([-side * rng.uniform(0.15, 0.35), rng.uniform(0.1, 0.25), 1.0])
    hilum = np.array([-side * 1.0, -rng.uniform(0.5, 0.9), 0.0])
    frame = frame_along(axis, hilum)
    kidney = Ellipsoid(center, semi, frame)
    cortex = rng.uniform(5.0, 8.0)
    medulla = Ellipsoid(center, semi - cortex, frame)
    pelvis = Ellipsoid(center + frame[:, 0] * 0.55 * semi[0], np.array([11.0, 8.0, 18.0]) * scale, frame)
    ops = [PaintOp(f"{prefix}_cortex", kidney), PaintOp(f"{prefix}_medulla", medulla),
           PaintOp(f"{prefix}_pelvis", pelvis)]
    return ops, center + frame[:, 2] * semi[2]


def random_abdominal_subject(rng: np.random.Generator) -> SubjectAnatomy:
    """Draw one abdominal subject; organ layout as in the module docstring."""
    torso = build_torso(rng, semi_axes=((128.0, 150.0), (88.0, 105.0)), fat_mm=(10.0, 35.0), rib_z_min=30.0)
    cavity = torso.cavity
    a_in, b_in = cavity.semi_axes_xy
    vy, vr = torso.vertebra_y, torso.vertebra_radius
    ops: list[PaintOp] = list(torso.before_cavity)
    ops.append(PaintOp("visceral_fat", cavity))

    def add(name: str, shape: Shape) -> None:
        ops.append(PaintOp(name, Intersection((shape, cavity))))

    for side in (-1.0, 1.0):
        add("lung_base", Ellipsoid(np.array([side * 0.5 * a_in, 0.25 * b_in, rng.uniform(215.0, 235.0)]),
                                   np.array([0.45 * a_in, 0.75 * b_in, 110.0])))
        add("psoas", Ellipsoid(np.array([side * (vr + 22.0), vy - 2.0, -150.0]),
                               np.array([rng.uniform(18.0, 24.0), rng.uniform(16.0, 20.0), 170.0]),
                               random_rotation(rng, (0.0, 4.0, 4.0))))
    ops.extend(torso.after_cavity)

    # bowel loops in the lower abdomen, some holding gas
    for _ in range(int(rng.integers(6, 11))):
        center = np.array([rng.uniform(-0.6, 0.6) * a_in, rng.uniform(-0.8, 0.1) * b_in, rng.uniform(-130.0, 5.0)])
        loop = Ellipsoid(center, rng.uniform(14.0, 30.0, 3), random_rotation(rng, 90.0))
        add("bowel", loop)
        if rng.random() < 0.4:
            add("bowel_gas", Intersection((loop.scaled(0.6), HalfSpace(center, np.array([0.0, -1.0, 0.0])))))

    # liver: right lobe + left lobe, under the right dome
    liver_rotation = random_rotation(rng, 8.0)
    liver_scale = rng.uniform(0.88, 1.12)
    right_lobe = Ellipsoid(np.array([-0.45 * a_in, -0.05 * b_in, rng.uniform(65.0, 85.0)]),
                           np.array([0.56 * a_in, 0.8 * b_in, 85.0]) * liver_scale, liver_rotation)
    left_lobe = Ellipsoid(np.array([0.05 * a_in, -0.45 * b_in, rng.uniform(80.0, 95.0)]),
                          np.array([0.45 * a_in, 0.38 * b_in, 42.0]) * liver_scale, liver_rotation)
    add("liver", Union((right_lobe, left_lobe)))
    if rng.random() < 0.9:
        gb_axis = np.array([rng.uniform(-0.3, 0.1), -0.5, 1.0])
        gb_semi = np.array([rng.uniform(11.0, 16.0), rng.uniform(11.0, 16.0), rng.uniform(28.0, 40.0)])
        add("gallbladder", Ellipsoid(np.array([-0.28 * a_in, -0.5 * b_in, rng.uniform(15.0, 35.0)]), gb_semi,
                                     frame_along(gb_axis, np.array([1.0, 0.0, 0.0]))))

    spleen_rotation = rotation_xyz((0.0, 0.0, -35.0)) @ random_rotation(rng, 10.0)
    spleen_scale = rng.uniform(0.8, 1.2)
    add("spleen", Ellipsoid(np.array([0.62 * a_in, 0.32 * b_in, rng.uniform(60.0, 85.0)]),
                            np.array([22.0, 50.0, 55.0]) * spleen_scale, spleen_rotation))

    stomach_center = np.array([0.3 * a_in, -0.35 * b_in, rng.uniform(70.0, 90.0)])
    stomach = Ellipsoid(stomach_center, np.array([40.0, 30.0, 55.0]) * rng.uniform(0.8, 1.15, 3),
                        rotation_xyz((0.0, 25.0, 0.0)) @ random_rotation(rng, 10.0))
    content = stomach.grown(-4.0)
    add("stomach_wall", stomach)
    add("stomach_content", content)
    gas_level = stomach_center + np.array([0.0, -rng.uniform(0.2, 0.5) * stomach.semi_axes[1], 0.0])
    add("stomach_gas", Intersection((content, HalfSpace(gas_level, np.array([0.0, -1.0, 0.0])))))

    aorta_x = rng.uniform(8.0, 18.0)
    aorta_y = vy - vr - rng.uniform(10.0, 15.0)
    cardia = stomach_center + np.array([-30.0, 15.0, 35.0])
    ops.append(PaintOp("esophagus", Tube(np.array([[4.0, aorta_y - 10.0, 300.0], [10.0, aorta_y - 16.0, 150.0],
                                                   cardia]), np.array([8.0, 8.0, 9.0]))))

    # kidneys: the right one lower than the left
    right_center = np.array([-(vr + rng.uniform(42.0, 52.0)), vy + rng.uniform(0.0, 10.0), rng.uniform(-20.0, 0.0)])
    left_center = np.array([vr + rng.uniform(42.0, 52.0), vy + rng.uniform(0.0, 10.0), rng.uniform(0.0, 20.0)])
    right_ops, right_pole = _kidney(rng, -1.0, right_center, "right_kidney")
    left_ops, left_pole = _kidney(rng, 1.0, left_center, "left_kidney")
    for op in right_ops + left_ops:
        add(op.structure, op.shape)
    for side, pole, name in ((-1.0, right_pole, "right_adrenal"), (1.0, left_pole, "left_adrenal")):
        center = pole + np.array([-side * 8.0, -4.0, 14.0])
        add(name, Ellipsoid(center, np.array([4.0, rng.uniform(10.0, 14.0), rng.uniform(12.0, 17.0)]),
                            rotation_xyz((0.0, 0.0, side * 30.0)) @ random_rotation(rng, 10.0)))

    # pancreas from the splenic hilum to the head, veins behind it to the liver hilum
    jitter = rng.uniform(-5.0, 5.0, (4, 3))
    pancreas = np.array([[0.45 * a_in, 0.12 * b_in, 50.0], [0.12 * a_in, -0.12 * b_in, 35.0],
                         [-0.05 * a_in, -0.22 * b_in, 28.0], [-0.2 * a_in, -0.12 * b_in, 14.0]]) + jitter
    add("pancreas", Tube(pancreas, np.array([9.0, 11.0, 12.0, 16.0]) * rng.uniform(0.85, 1.15)))
    confluence = pancreas[2] + np.array([0.0, 12.0, 2.0])
    veins = np.array([pancreas[0] + [0.0, 12.0, 3.0], pancreas[1] + [0.0, 12.0, 2.0], confluence,
                      [-0.3 * a_in, -0.05 * b_in, 60.0]])
    add("portal_splenic_vein", Tube(veins, np.array([5.0, 6.0, 8.0, 8.0]) * rng.uniform(0.85, 1.15)))

    # great vessels last, so they stay intact where organs press on them
    aorta_r = rng.uniform(9.0, 12.0)
    bifurcation_z = rng.uniform(-120.0, -90.0)
    ops.append(PaintOp("aorta", Tube(np.array([[aorta_x, aorta_y, bifurcation_z], [aorta_x, aorta_y + 6.0, 300.0]]),
                                     np.array([aorta_r, aorta_r]))))
    for side in (-1.0, 1.0):
        ops.append(PaintOp("iliac_arteries", Tube(np.array([[aorta_x, aorta_y, bifurcation_z],
                                                            [side * 45.0, aorta_y + 5.0, bifurcation_z - 90.0]]),
                                                  np.array([0.7 * aorta_r, 0.6 * aorta_r]))))
    ivc_x = -rng.uniform(18.0, 28.0)
    ivc_y = vy - vr - rng.uniform(6.0, 12.0)
    ivc_r = rng.uniform(9.0, 12.0)
    ops.append(PaintOp("ivc", Tube(np.array([[ivc_x, ivc_y, -250.0], [ivc_x - 3.0, ivc_y - 4.0, 80.0],
                                             [ivc_x + 5.0, ivc_y - 2.0, 170.0]]), np.array([ivc_r, ivc_r, ivc_r]))))

    warp = SmoothWarp.random(rng, amplitude_mm=3.0, wavelength_mm=(140.0, 300.0))
    return SubjectAnatomy(structures=ABDOMINAL_STRUCTURES, operations=tuple(ops), body=torso.body,
                          table_y=torso.table_y, scan_center=np.array([0.0, 0.0, 30.0]), warp=warp)
