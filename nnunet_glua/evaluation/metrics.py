"""Per-class segmentation metrics on label volumes: Dice and average symmetric surface distance (ASSD).

Array and spacing convention
----------------------------
Volumes are numpy arrays as returned by ``SimpleITK.GetArrayFromImage``, i.e. in **(z, y, x)** order for 3D
images, and ``spacing`` is given in the **same axis order** in millimetres: ``image.GetSpacing()[::-1]``
(SimpleITK reports spacing in (x, y, z) order). Any number of dimensions works; 2D and 3D are the ones in use.

Definitions
-----------
* **Dice** = 2·|A∩B| / (|A| + |B|), in [0, 1], computed on the binary masks of one class.
* **Surface** of a binary object = its boundary voxels: the object minus its binary erosion with the
  connectivity-1 structuring element (6-neighbourhood in 3D), with everything outside the array treated as
  background, so object voxels on the array border are surface voxels. This is medpy's definition.
* **Directed average surface distance** d(A→B) = mean over the surface voxels of A of the Euclidean distance
  to the nearest surface voxel of B (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``).
* **ASSD** = (d(A→B) + d(B→A)) / 2 (medpy's ``assd``), reported in **mm** (true spacing) and in **voxels**
  (unit spacing). Voxel ASSD is how several cross-modality adaptation papers report it; it is *not*
  comparable across datasets or scans with different spacings, the mm value is.

Conventions for empty structures (one class in one case; reference = ground truth)
----------------------------------------------------------------------------------
=====================  ==================  ======  =========  ============================================
reference              prediction          Dice    ASSD       outcome
=====================  ==================  ======  =========  ============================================
present                present             value   value      ``ok``
present                empty               0       missing    ``missed``: counts in the Dice mean, not in ASSD
empty                  present             0       missing    ``false_positive``: counts in the Dice mean
empty                  empty               --      --         ``absent``: the case is excluded for that class
=====================  ==================  ======  =========  ============================================

"Missing" values are ``None``, never NaN. Summaries (:func:`summarize`) give, per class, mean ± std over the
cases in which the value is defined (population standard deviation, ``ddof=0``) together with the number
of cases used and the outcome counts, so that a method which misses a structure cannot hide behind a
good ASSD: its ``missed`` count is reported next to it. The class mean is the mean over classes of the
per-class means, taken over the classes whose mean is defined; how many classes entered it is recorded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "Outcome",
    "ClassMetrics",
    "Statistic",
    "ClassSummary",
    "Summary",
    "SUMMARY_METRICS",
    "surface_mask",
    "dice_coefficient",
    "directed_surface_distances",
    "average_symmetric_surface_distance",
    "compute_class_metrics",
    "compute_case_metrics",
    "summarize",
]

# the per-case values that are summarised as mean ± std; order used by every table
SUMMARY_METRICS: tuple[str, ...] = ("dice", "assd_mm", "assd_voxel")


class Outcome(str, Enum):
    """What happened to one class in one case (see the module docstring for the rules)."""

    OK = "ok"
    MISSED = "missed"
    FALSE_POSITIVE = "false_positive"
    ABSENT = "absent"


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class in one case.

    ``dice`` is in [0, 1] (``None`` only for ``absent``); ``assd_mm`` / ``assd_voxel`` are >= 0 and ``None``
    unless the outcome is ``ok``. ``n_reference`` / ``n_prediction`` / ``n_overlap`` are voxel counts.
    """

    outcome: Outcome
    dice: float | None
    assd_mm: float | None
    assd_voxel: float | None
    n_reference: int
    n_prediction: int
    n_overlap: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "dice": self.dice,
            "assd_mm": self.assd_mm,
            "assd_voxel": self.assd_voxel,
            "n_reference": self.n_reference,
            "n_prediction": self.n_prediction,
            "n_overlap": self.n_overlap,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClassMetrics":
        return cls(
            outcome=Outcome(d["outcome"]),
            dice=_optional_float(d.get("dice")),
            assd_mm=_optional_float(d.get("assd_mm")),
            assd_voxel=_optional_float(d.get("assd_voxel")),
            n_reference=int(d["n_reference"]),
            n_prediction=int(d["n_prediction"]),
            n_overlap=int(d["n_overlap"]),
        )


@dataclass(frozen=True)
class Statistic:
    """Mean ± std of one metric over ``n`` values; ``mean``/``std`` are ``None`` when ``n == 0``.

    ``std`` is the population standard deviation (``ddof=0``); it is ``None`` where no spread is defined
    (class means, see :class:`Summary`).
    """

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Statistic":
        if len(values) == 0:
            return cls(None, None, 0)
        arr = np.asarray(values, dtype=np.float64)
        return cls(float(arr.mean()), float(arr.std()), int(arr.size))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Statistic":
        return cls(_optional_float(d.get("mean")), _optional_float(d.get("std")), int(d["n"]))


@dataclass(frozen=True)
class ClassSummary:
    """Summary of one class over all evaluated cases.

    ``n_ok + n_missed + n_false_positive + n_absent`` equals the number of cases. ``dice.n`` is
    ``n_ok + n_missed + n_false_positive``; ``assd_mm.n == assd_voxel.n == n_ok``.
    """

    label: int
    dice: Statistic
    assd_mm: Statistic
    assd_voxel: Statistic
    n_ok: int
    n_missed: int
    n_false_positive: int
    n_absent: int

    def statistic(self, metric: str) -> Statistic:
        """The :class:`Statistic` of ``metric`` (one of :data:`SUMMARY_METRICS`)."""
        if metric not in SUMMARY_METRICS:
            raise KeyError(f"unknown metric {metric!r}; choose one of {', '.join(SUMMARY_METRICS)}")
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            **{m: self.statistic(m).to_dict() for m in SUMMARY_METRICS},
            "n_ok": self.n_ok,
            "n_missed": self.n_missed,
            "n_false_positive": self.n_false_positive,
            "n_absent": self.n_absent,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClassSummary":
        return cls(
            label=int(d["label"]),
            dice=Statistic.from_dict(d["dice"]),
            assd_mm=Statistic.from_dict(d["assd_mm"]),
            assd_voxel=Statistic.from_dict(d["assd_voxel"]),
            n_ok=int(d["n_ok"]),
            n_missed=int(d["n_missed"]),
            n_false_positive=int(d["n_false_positive"]),
            n_absent=int(d["n_absent"]),
        )


@dataclass(frozen=True)
class Summary:
    """Per-class summaries (ordered by label value) and the class means.

    ``class_mean[metric]`` is a :class:`Statistic` whose ``mean`` is the mean of the per-class means of the
    classes where that mean is defined, ``n`` the number of such classes and ``std`` is ``None``.
    """

    n_cases: int
    classes: dict[str, ClassSummary]
    class_mean: dict[str, Statistic] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_cases": self.n_cases,
            "classes": {name: s.to_dict() for name, s in self.classes.items()},
            "class_mean": {m: s.to_dict() for m, s in self.class_mean.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Summary":
        return cls(
            n_cases=int(d["n_cases"]),
            classes={name: ClassSummary.from_dict(s) for name, s in d["classes"].items()},
            class_mean={m: Statistic.from_dict(s) for m, s in d["class_mean"].items()},
        )


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric values must be finite or None, got {value}")
    return value


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} entries but the arrays have {ndim} dimensions")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be positive and finite, got {sp}")
    return sp


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary object: ``mask`` minus its erosion (connectivity-1 structuring element).

    Voxels outside the array count as background, so object voxels on the array border are surface voxels.
    Returns a boolean array of the shape of ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)
    return mask & ~eroded


def dice_coefficient(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Dice of two binary masks, in [0, 1]; ``None`` when both are empty (the class is absent)."""
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    _check_pair(prediction, reference)
    total = int(np.count_nonzero(prediction)) + int(np.count_nonzero(reference))
    if total == 0:
        return None
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def _union_crop(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``a | b``.

    Cropping to it changes no surface and no distance: everything just outside the box is background, as is
    everything outside the array for the erosion, and every surface voxel lies inside the box. On real
    volumes an organ is a small part of the scan, so the crop saves most of the work.
    """
    union = a | b
    box = []
    for axis in range(union.ndim):
        other_axes = tuple(i for i in range(union.ndim) if i != axis)
        hits = np.flatnonzero(np.any(union, axis=other_axes))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def directed_surface_distances(
    surface_from: np.ndarray, surface_to: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance from every voxel of ``surface_from`` to the nearest voxel of ``surface_to``.

    Both arguments are boolean surface masks of equal shape (see :func:`surface_mask`); ``surface_to`` must
    not be empty. ``spacing`` is per array axis, in the unit the distances are wanted in (mm, or 1 for
    voxels). Returns a 1D float64 array with one entry per voxel of ``surface_from`` (C order).
    """
    if not np.any(surface_to):
        raise ValueError("the target surface is empty; distances to it are undefined")
    distance_to_target = ndimage.distance_transform_edt(~surface_to, sampling=spacing)
    return distance_to_target[surface_from]


def _assd_from_surfaces(surface_a: np.ndarray, surface_b: np.ndarray, spacing: Sequence[float]) -> float:
    d_ab = directed_surface_distances(surface_a, surface_b, spacing)
    d_ba = directed_surface_distances(surface_b, surface_a, spacing)
    return 0.5 * (float(d_ab.mean()) + float(d_ba.mean()))


def _assd_mm_and_voxel(
    prediction: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...]
) -> tuple[float, float]:
    crop = _union_crop(prediction, reference)
    surface_p = surface_mask(prediction[crop])
    surface_r = surface_mask(reference[crop])
    assd_mm = _assd_from_surfaces(surface_p, surface_r, spacing)
    if all(s == spacing[0] for s in spacing):
        # isotropic: the nearest surface voxel is the same in both metrics, only the unit differs
        return assd_mm, assd_mm / spacing[0]
    # anisotropic: the nearest voxel in mm is not the nearest in voxel units, so transform again
    return assd_mm, _assd_from_surfaces(surface_p, surface_r, (1.0,) * len(spacing))


def average_symmetric_surface_distance(
    prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None
) -> float:
    """ASSD of two non-empty binary masks, in the unit of ``spacing`` (per array axis; ``None`` = voxels).

    Raises ``ValueError`` if either mask is empty (the distance is undefined; see the module docstring for
    how :func:`compute_class_metrics` reports that case).
    """
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    _check_pair(prediction, reference)
    sp = (1.0,) * prediction.ndim if spacing is None else _check_spacing(spacing, prediction.ndim)
    if not prediction.any() or not reference.any():
        raise ValueError("ASSD is undefined when the prediction or the reference is empty")
    crop = _union_crop(prediction, reference)
    return _assd_from_surfaces(surface_mask(prediction[crop]), surface_mask(reference[crop]), sp)


def compute_class_metrics(
    prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]
) -> ClassMetrics:
    """Dice and ASSD (mm and voxels) of one class; binary masks of equal shape, ``spacing`` in mm per axis."""
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    _check_pair(prediction, reference)
    sp = _check_spacing(spacing, prediction.ndim)
    n_pred = int(np.count_nonzero(prediction))
    n_ref = int(np.count_nonzero(reference))
    n_overlap = int(np.count_nonzero(prediction & reference)) if n_pred and n_ref else 0
    counts = {"n_reference": n_ref, "n_prediction": n_pred, "n_overlap": n_overlap}
    if n_ref == 0 and n_pred == 0:
        return ClassMetrics(Outcome.ABSENT, None, None, None, **counts)
    if n_pred == 0:
        return ClassMetrics(Outcome.MISSED, 0.0, None, None, **counts)
    if n_ref == 0:
        return ClassMetrics(Outcome.FALSE_POSITIVE, 0.0, None, None, **counts)
    dice = 2.0 * n_overlap / (n_pred + n_ref)
    assd_mm, assd_voxel = _assd_mm_and_voxel(prediction, reference, sp)
    return ClassMetrics(Outcome.OK, dice, assd_mm, assd_voxel, **counts)


def compute_case_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    labels: Mapping[str, int],
    spacing: Sequence[float],
) -> dict[str, ClassMetrics]:
    """Metrics of every class of ``labels`` (name -> integer label value) in one case.

    ``prediction`` and ``reference`` are integer label volumes of equal shape in (z, y, x) order,
    ``spacing`` in mm in the same order. The background (value 0) is never evaluated; pass only
    foreground classes or a full nnU-Net label map (background is skipped).
    """
    prediction = np.asarray(prediction)
    reference = np.asarray(reference)
    _check_pair(prediction, reference)
    sp = _check_spacing(spacing, prediction.ndim)
    return {
        name: compute_class_metrics(prediction == value, reference == value, sp)
        for name, value in labels.items()
        if int(value) != 0
    }


def summarize(cases: Sequence[Mapping[str, ClassMetrics]], labels: Mapping[str, int]) -> Summary:
    """Mean ± std per class over ``cases`` (each: class name -> :class:`ClassMetrics`) and the class means.

    ``labels`` (name -> value; background skipped) fixes the classes and their order (by label value).
    Every case must hold every class. No value of the result is NaN; undefined means are ``None``.
    """
    foreground = sorted(((int(v), name) for name, v in labels.items() if int(v) != 0))
    classes: dict[str, ClassSummary] = {}
    for value, name in foreground:
        per_case = []
        for i, case in enumerate(cases):
            if name not in case:
                raise KeyError(f"case {i} has no metrics for class {name!r}")
            per_case.append(case[name])
        outcomes = [m.outcome for m in per_case]
        classes[name] = ClassSummary(
            label=value,
            dice=Statistic.of([m.dice for m in per_case if m.dice is not None]),
            assd_mm=Statistic.of([m.assd_mm for m in per_case if m.assd_mm is not None]),
            assd_voxel=Statistic.of([m.assd_voxel for m in per_case if m.assd_voxel is not None]),
            n_ok=outcomes.count(Outcome.OK),
            n_missed=outcomes.count(Outcome.MISSED),
            n_false_positive=outcomes.count(Outcome.FALSE_POSITIVE),
            n_absent=outcomes.count(Outcome.ABSENT),
        )
    class_mean = {}
    for metric in SUMMARY_METRICS:
        means = [s.statistic(metric).mean for s in classes.values()]
        defined = [m for m in means if m is not None]
        class_mean[metric] = Statistic(float(np.mean(defined)) if defined else None, None, len(defined))
    return Summary(n_cases=len(cases), classes=classes, class_mean=class_mean)
