"""Tissue classes of the synthetic phantom and their intensities under each imaging protocol.

The phantom paints anatomy as *tissues*; each protocol turns a tissue into a signal. The numbers below follow
each modality's physics, which is what creates the cross-modality gap the domain adaptation has to close:
CT measures x-ray attenuation in Hounsfield units (fixed scale: air -1000, water 0), with iodinated contrast
brightening blood and perfused organs; MR values are arbitrary scanner units set by relaxation times and the
sequence, here before a per-scan gain (see :mod:`.imaging`).

Protocols (one per public dataset the phantom imitates):

- ``mmwhs_ct``  cardiac CT angiography, arterial phase (MMWHS CT): left heart and aorta strongly opacified,
  right heart less (contrast mixing with unopacified venous return, saline chaser), myocardium enhanced.
- ``mmwhs_mr``  3D balanced SSFP "bright blood" whole-heart MR (MMWHS MR): blood and fat bright (high T2/T1
  ratio), myocardium and muscle dark, lung nearly void.
- ``btcv_ct``   abdominal CT, portal-venous phase (BTCV): kidneys brightest solid organ, liver slightly
  denser than spleen (as in late portal-venous and unenhanced scans), aorta and portal vein opacified.
- ``chaos_t2spir`` abdominal T2-weighted MR with spectral fat suppression (CHAOS T2-SPIR): fat dark
  (suppressed), fluid (bile, urine, CSF, gastric fluid) very bright, spleen and kidneys bright, liver dark,
  fast-flowing arterial blood dark (flow void).

Intensity table: ``mean ± jitter (texture)``. ``jitter`` is the half-width of the uniform per-scan variation of
the mean (contrast timing, scanner calibration, patient); ``texture`` is the standard deviation of the smooth
within-tissue variation. CT columns are HU, MR columns are arbitrary units before the per-scan gain.

==================  ===================  ===================  ===================  ===================
tissue              mmwhs_ct (HU)        mmwhs_mr (a.u.)      btcv_ct (HU)         chaos_t2spir (a.u.)
==================  ===================  ===================  ===================  ===================
air                 -1000 ± 0 (0)        0 ± 0 (0)            -1000 ± 0 (0)        0 ± 0 (0)
lung                -820 ± 30 (40)       25 ± 10 (8)          -850 ± 30 (40)       20 ± 8 (6)
fat                 -100 ± 8 (10)        620 ± 60 (35)        -105 ± 8 (10)        70 ± 15 (10)
muscle              50 ± 5 (8)           180 ± 20 (15)        55 ± 5 (8)           140 ± 15 (12)
bone                650 ± 80 (150)       260 ± 40 (60)        600 ± 80 (150)       90 ± 20 (25)
csf                 15 ± 5 (5)           850 ± 60 (30)        10 ± 5 (5)           950 ± 60 (30)
myocardium          100 ± 15 (10)        160 ± 20 (12)        55 ± 5 (8)           160 ± 20 (12)
arterial_blood      350 ± 80 (15)        900 ± 80 (40)        165 ± 25 (10)        45 ± 15 (15)
venous_blood        230 ± 70 (25)        860 ± 80 (45)        135 ± 20 (10)        120 ± 30 (25)
portal_blood        120 ± 20 (10)        700 ± 60 (40)        175 ± 20 (10)        170 ± 30 (25)
liver               70 ± 5 (6)           260 ± 25 (15)        112 ± 4 (6)          260 ± 25 (15)
spleen              110 ± 15 (10)        380 ± 30 (20)        100 ± 4 (6)          560 ± 40 (25)
kidney_cortex       160 ± 25 (10)        420 ± 30 (20)        185 ± 20 (10)        600 ± 40 (25)
kidney_medulla      60 ± 10 (8)          520 ± 30 (20)        150 ± 20 (10)        720 ± 50 (25)
urine               10 ± 5 (5)           900 ± 60 (30)        15 ± 5 (5)           1050 ± 60 (30)
bile                8 ± 5 (5)            880 ± 60 (30)        8 ± 5 (5)            1100 ± 60 (30)
gastric_wall        60 ± 8 (8)           220 ± 25 (15)        70 ± 8 (8)           220 ± 25 (15)
gastric_content     20 ± 10 (8)          750 ± 80 (60)        20 ± 10 (8)          900 ± 80 (60)
bowel               40 ± 10 (25)         350 ± 50 (80)        45 ± 10 (25)         380 ± 50 (80)
pancreas            90 ± 10 (8)          300 ± 30 (20)        95 ± 8 (8)           330 ± 30 (20)
adrenal             60 ± 8 (8)           240 ± 25 (15)        60 ± 8 (8)           260 ± 25 (15)
table               100 ± 20 (10)        0 ± 0 (0)            100 ± 20 (10)        0 ± 0 (0)
==================  ===================  ===================  ===================  ===================

Contrast relations that flip between the modalities (they are what a model trained on one modality has never
seen): fat is darker than myocardium and muscle in CT but brighter in bSSFP MR; bone is the brightest tissue in
CT and dark in MR; contrast-filled arteries are brighter than liver in CT but dark (flow void) in T2-SPIR; bile
and urine are darker than liver in CT but the brightest tissues in T2-SPIR; liver is denser than spleen in the
portal-venous CT but darker than spleen in T2-SPIR. Lung and air are dark in both.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np


class Tissue(enum.IntEnum):
    """Tissue classes; the integer value indexes lookup tables (``AIR`` must be 0: it fills empty space)."""

    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3
    BONE = 4
    CSF = 5
    MYOCARDIUM = 6
    ARTERIAL_BLOOD = 7
    VENOUS_BLOOD = 8
    PORTAL_BLOOD = 9
    LIVER = 10
    SPLEEN = 11
    KIDNEY_CORTEX = 12
    KIDNEY_MEDULLA = 13
    URINE = 14
    BILE = 15
    GASTRIC_WALL = 16
    GASTRIC_CONTENT = 17
    BOWEL = 18
    PANCREAS = 19
    ADRENAL = 20
    TABLE = 21


@dataclass(frozen=True)
class TissueIntensity:
    """Signal of one tissue under one protocol, in the protocol's units (HU for CT, a.u. for MR).

    ``mean``: expected value; ``jitter``: half-width of the uniform per-scan variation of the mean;
    ``texture``: standard deviation of the smooth within-tissue variation.
    """

    mean: float
    jitter: float
    texture: float


def _table(rows: dict[Tissue, tuple[float, float, float]]) -> Mapping[Tissue, TissueIntensity]:
    missing = set(Tissue) - set(rows)
    if missing:  # a tissue without a value would silently render as 0; fail at import instead
        raise RuntimeError(f"intensity table lacks {sorted(t.name for t in missing)}")
    return MappingProxyType({t: TissueIntensity(*rows[t]) for t in Tissue})


T = Tissue
PROTOCOL_INTENSITIES: Mapping[str, Mapping[Tissue, TissueIntensity]] = MappingProxyType({
    "mmwhs_ct": _table({
        T.AIR: (-1000, 0, 0), T.LUNG: (-820, 30, 40), T.FAT: (-100, 8, 10), T.MUSCLE: (50, 5, 8),
        T.BONE: (650, 80, 150), T.CSF: (15, 5, 5), T.MYOCARDIUM: (100, 15, 10),
        T.ARTERIAL_BLOOD: (350, 80, 15), T.VENOUS_BLOOD: (230, 70, 25), T.PORTAL_BLOOD: (120, 20, 10),
        T.LIVER: (70, 5, 6), T.SPLEEN: (110, 15, 10), T.KIDNEY_CORTEX: (160, 25, 10),
        T.KIDNEY_MEDULLA: (60, 10, 8), T.URINE: (10, 5, 5), T.BILE: (8, 5, 5), T.GASTRIC_WALL: (60, 8, 8),
        T.GASTRIC_CONTENT: (20, 10, 8), T.BOWEL: (40, 10, 25), T.PANCREAS: (90, 10, 8), T.ADRENAL: (60, 8, 8),
        T.TABLE: (100, 20, 10),
    }),
    "mmwhs_mr": _table({
        T.AIR: (0, 0, 0), T.LUNG: (25, 10, 8), T.FAT: (620, 60, 35), T.MUSCLE: (180, 20, 15),
        T.BONE: (260, 40, 60), T.CSF: (850, 60, 30), T.MYOCARDIUM: (160, 20, 12),
        T.ARTERIAL_BLOOD: (900, 80, 40), T.VENOUS_BLOOD: (860, 80, 45), T.PORTAL_BLOOD: (700, 60, 40),
        T.LIVER: (260, 25, 15), T.SPLEEN: (380, 30, 20), T.KIDNEY_CORTEX: (420, 30, 20),
        T.KIDNEY_MEDULLA: (520, 30, 20), T.URINE: (900, 60, 30), T.BILE: (880, 60, 30),
        T.GASTRIC_WALL: (220, 25, 15), T.GASTRIC_CONTENT: (750, 80, 60), T.BOWEL: (350, 50, 80),
        T.PANCREAS: (300, 30, 20), T.ADRENAL: (240, 25, 15), T.TABLE: (0, 0, 0),
    }),
    "btcv_ct": _table({
        T.AIR: (-1000, 0, 0), T.LUNG: (-850, 30, 40), T.FAT: (-105, 8, 10), T.MUSCLE: (55, 5, 8),
        T.BONE: (600, 80, 150), T.CSF: (10, 5, 5), T.MYOCARDIUM: (55, 5, 8),
        T.ARTERIAL_BLOOD: (165, 25, 10), T.VENOUS_BLOOD: (135, 20, 10), T.PORTAL_BLOOD: (175, 20, 10),
        T.LIVER: (112, 4, 6), T.SPLEEN: (100, 4, 6), T.KIDNEY_CORTEX: (185, 20, 10),
        T.KIDNEY_MEDULLA: (150, 20, 10), T.URINE: (15, 5, 5), T.BILE: (8, 5, 5), T.GASTRIC_WALL: (70, 8, 8),
        T.GASTRIC_CONTENT: (20, 10, 8), T.BOWEL: (45, 10, 25), T.PANCREAS: (95, 8, 8), T.ADRENAL: (60, 8, 8),
        T.TABLE: (100, 20, 10),
    }),
    "chaos_t2spir": _table({
        T.AIR: (0, 0, 0), T.LUNG: (20, 8, 6), T.FAT: (70, 15, 10), T.MUSCLE: (140, 15, 12),
        T.BONE: (90, 20, 25), T.CSF: (950, 60, 30), T.MYOCARDIUM: (160, 20, 12),
        T.ARTERIAL_BLOOD: (45, 15, 15), T.VENOUS_BLOOD: (120, 30, 25), T.PORTAL_BLOOD: (170, 30, 25),
        T.LIVER: (260, 25, 15), T.SPLEEN: (560, 40, 25), T.KIDNEY_CORTEX: (600, 40, 25),
        T.KIDNEY_MEDULLA: (720, 50, 25), T.URINE: (1050, 60, 30), T.BILE: (1100, 60, 30),
        T.GASTRIC_WALL: (220, 25, 15), T.GASTRIC_CONTENT: (900, 80, 60), T.BOWEL: (380, 50, 80),
        T.PANCREAS: (330, 30, 20), T.ADRENAL: (260, 25, 15), T.TABLE: (0, 0, 0),
    }),
})
# The "alt" appearance: the same protocols as other scanners and timings would image them, so that a result can be
# checked on a phantom no default was tuned on. Every value stays within what such scans show, and every contrast
# relation the module docstring lists still holds; what changes is how far apart the tissues are.
ALT_PROTOCOL_INTENSITIES: Mapping[str, Mapping[Tissue, TissueIntensity]] = MappingProxyType({
    # CTA at a lower tube voltage, later bolus: brighter iodine, right heart better opacified, noisier (see imaging)
    "mmwhs_ct": _table({
        T.AIR: (-1000, 0, 0), T.LUNG: (-780, 40, 50), T.FAT: (-85, 10, 12), T.MUSCLE: (45, 6, 9),
        T.BONE: (800, 100, 170), T.CSF: (12, 5, 5), T.MYOCARDIUM: (120, 20, 12),
        T.ARTERIAL_BLOOD: (420, 90, 20), T.VENOUS_BLOOD: (330, 80, 30), T.PORTAL_BLOOD: (140, 25, 12),
        T.LIVER: (85, 8, 8), T.SPLEEN: (125, 15, 10), T.KIDNEY_CORTEX: (190, 30, 12),
        T.KIDNEY_MEDULLA: (90, 15, 10), T.URINE: (10, 5, 5), T.BILE: (8, 5, 5), T.GASTRIC_WALL: (65, 8, 8),
        T.GASTRIC_CONTENT: (20, 10, 8), T.BOWEL: (45, 10, 25), T.PANCREAS: (100, 10, 8), T.ADRENAL: (65, 8, 8),
        T.TABLE: (100, 20, 10),
    }),
    # bSSFP of another field strength and vendor: half the blood-myocardium ratio (3 instead of 5.6), dimmer fat
    "mmwhs_mr": _table({
        T.AIR: (0, 0, 0), T.LUNG: (40, 12, 10), T.FAT: (480, 70, 40), T.MUSCLE: (220, 25, 18),
        T.BONE: (300, 50, 70), T.CSF: (780, 70, 35), T.MYOCARDIUM: (230, 30, 15),
        T.ARTERIAL_BLOOD: (700, 90, 50), T.VENOUS_BLOOD: (680, 90, 55), T.PORTAL_BLOOD: (560, 70, 45),
        T.LIVER: (300, 30, 18), T.SPLEEN: (420, 35, 22), T.KIDNEY_CORTEX: (450, 35, 22),
        T.KIDNEY_MEDULLA: (540, 35, 22), T.URINE: (820, 70, 35), T.BILE: (800, 70, 35),
        T.GASTRIC_WALL: (250, 30, 18), T.GASTRIC_CONTENT: (680, 90, 65), T.BOWEL: (380, 55, 85),
        T.PANCREAS: (330, 35, 22), T.ADRENAL: (270, 30, 18), T.TABLE: (0, 0, 0),
    }),
    # late arterial phase: corticomedullary kidneys, spleen brighter than liver (reversed), weaker portal vein
    "btcv_ct": _table({
        T.AIR: (-1000, 0, 0), T.LUNG: (-840, 30, 40), T.FAT: (-95, 10, 12), T.MUSCLE: (50, 6, 8),
        T.BONE: (650, 90, 160), T.CSF: (12, 5, 5), T.MYOCARDIUM: (60, 8, 8),
        T.ARTERIAL_BLOOD: (230, 40, 12), T.VENOUS_BLOOD: (120, 20, 10), T.PORTAL_BLOOD: (150, 25, 10),
        T.LIVER: (95, 6, 7), T.SPLEEN: (120, 10, 9), T.KIDNEY_CORTEX: (230, 30, 12),
        T.KIDNEY_MEDULLA: (110, 20, 10), T.URINE: (12, 5, 5), T.BILE: (8, 5, 5), T.GASTRIC_WALL: (80, 10, 8),
        T.GASTRIC_CONTENT: (22, 10, 8), T.BOWEL: (50, 10, 25), T.PANCREAS: (110, 10, 8), T.ADRENAL: (65, 8, 8),
        T.TABLE: (100, 20, 10),
    }),
    # T2 at 3 T with weaker fat suppression: fat grey instead of dark, organs closer together
    "chaos_t2spir": _table({
        T.AIR: (0, 0, 0), T.LUNG: (25, 10, 8), T.FAT: (160, 30, 15), T.MUSCLE: (120, 15, 12),
        T.BONE: (110, 25, 30), T.CSF: (900, 70, 35), T.MYOCARDIUM: (150, 20, 12),
        T.ARTERIAL_BLOOD: (70, 20, 20), T.VENOUS_BLOOD: (150, 35, 25), T.PORTAL_BLOOD: (200, 35, 25),
        T.LIVER: (220, 25, 15), T.SPLEEN: (470, 40, 25), T.KIDNEY_CORTEX: (520, 40, 25),
        T.KIDNEY_MEDULLA: (640, 50, 25), T.URINE: (980, 70, 35), T.BILE: (1000, 70, 35),
        T.GASTRIC_WALL: (200, 25, 15), T.GASTRIC_CONTENT: (850, 90, 65), T.BOWEL: (350, 55, 85),
        T.PANCREAS: (300, 30, 20), T.ADRENAL: (240, 25, 15), T.TABLE: (0, 0, 0),
    }),
})
del T

#: appearance name -> intensity tables of every protocol
APPEARANCES: Mapping[str, Mapping[str, Mapping[Tissue, TissueIntensity]]] = MappingProxyType({
    "standard": PROTOCOL_INTENSITIES, "alt": ALT_PROTOCOL_INTENSITIES})


def intensity_table(protocol: str, appearance: str = "standard") -> Mapping[Tissue, TissueIntensity]:
    """The intensity table of ``protocol`` in ``appearance`` (a key of :data:`APPEARANCES`)."""
    if appearance not in APPEARANCES:
        raise ValueError(f"unknown phantom appearance {appearance!r}; choose one of {', '.join(APPEARANCES)}")
    return APPEARANCES[appearance][protocol]


def draw_tissue_means(protocol: str, rng: np.random.Generator, appearance: str = "standard") -> np.ndarray:
    """Per-scan mean signal of every tissue: ``(len(Tissue),)`` float64 indexed by :class:`Tissue` value.

    Each mean is drawn uniformly within ``mean ± jitter`` of the protocol's table in ``appearance``.
    """
    table = intensity_table(protocol, appearance)
    jitter = rng.uniform(-1.0, 1.0, size=len(Tissue))
    return np.array([table[t].mean + jitter[t] * table[t].jitter for t in Tissue], dtype=np.float64)


def texture_scales(protocol: str, appearance: str = "standard") -> np.ndarray:
    """Within-tissue texture standard deviation of every tissue: ``(len(Tissue),)`` float64, protocol units."""
    table = intensity_table(protocol, appearance)
    return np.array([table[t].texture for t in Tissue], dtype=np.float64)
