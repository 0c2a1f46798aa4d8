"""Which voxels of an ensemble's prediction of an unlabelled target image are trusted as a pseudo-label.

:func:`filter_pseudo_label` takes the class probabilities of each fold model for one image and returns a label map in
which every voxel the filter does not trust carries nnU-Net's ``ignore`` label (so it adds no loss in training), plus
what was kept, ignored and dropped per structure, and why. The filter's steps, each a field of
:class:`PseudoLabelFilter`:

1. **Confidence**: a voxel whose ensemble (mean over folds) probability of its predicted class is below
   ``min_confidence`` is ignored. With ``keep_most_confident = q > 0`` the threshold of each structure of each case
   is lowered, where needed, so that at least the most confident fraction ``q`` of its predicted voxels passes: a
   structure the model is never sure of (on the demo phantom the aorta: median confidence 0.55 against a threshold of
   0.8) then still gets its most trusted core instead of nothing (class-balanced thresholds, as in class-balanced
   self-training).
2. **Fold agreement**: a voxel for which fewer than ``min_agreement`` of the folds predict the ensemble's class is
   ignored.
3. **Connected components**: per structure, every connected component smaller than ``min_component_fraction`` of that
   structure's largest one is ignored (stray islands are the typical error of a model under domain shift).
4. **Plausible volume**: a structure whose volume after step 3 lies outside ``[v_min / volume_factor, v_max *
   volume_factor]``, with ``v_min, v_max`` the range of its volumes in the labelled source cases, is dropped: all of
   its predicted voxels are ignored. A structure every source case has and the prediction lacks is dropped too
   (its true location is then unknown). When more than ``max_dropped_fraction`` of the structures are dropped, the
   whole case is dropped.

A structure that is predicted but keeps no voxel after steps 1-3 is reported as ``ignored`` (it adds no loss but was
not judged implausible), one that is judged implausible as ``dropped``, every other as ``kept``.

Nothing here reads a label file: the source volume ranges are passed in (:func:`source_volume_ranges` in
:mod:`nnunet_glua.data.pseudo_labels` computes them from the source training labels).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import numpy as np
from scipy import ndimage

__all__ = ["PseudoLabelFilter", "StructureReport", "CaseReport", "filter_pseudo_label"]


@dataclass(frozen=True)
class PseudoLabelFilter:
    """The filter's settings; every step can be switched off (0, or ``inf`` for ``volume_factor``)."""

    #: ensemble probability of the predicted class below which a voxel is ignored, in [0, 1]
    min_confidence: float = 0.8
    #: per structure and case, this fraction of its predicted voxels (the most confident) passes the confidence
    #: step even below ``min_confidence``, in [0, 1]; 0 switches the per-structure threshold off
    keep_most_confident: float = 0.0
    #: fraction of folds that must predict the ensemble's class, in [0, 1]
    min_agreement: float = 1.0
    #: components smaller than this fraction of the structure's largest component are ignored, in [0, 1]
    min_component_fraction: float = 0.1
    #: how far outside the source volume range a structure may lie before it is dropped (>= 1)
    volume_factor: float = 2.0
    #: a case is dropped when more than this fraction of its structures is dropped, in [0, 1]
    max_dropped_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_confidence", "keep_most_confident", "min_agreement", "min_component_fraction",
                     "max_dropped_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not self.volume_factor >= 1.0:
            raise ValueError(f"volume_factor must be >= 1 (inf switches the volume check off), got "
                             f"{self.volume_factor}")

    def to_dict(self) -> dict:
        return {k: (None if v == float("inf") else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping) -> "PseudoLabelFilter":
        """The settings :meth:`to_dict` wrote (``None`` back to ``inf``)."""
        return cls(**{k: (float("inf") if v is None else v) for k, v in values.items()})


@dataclass
class StructureReport:
    """One structure of one case. Voxel counts; ``volume_ml`` after the component clean-up; ``mean_confidence``:
    mean ensemble probability over the structure's predicted voxels (None when it has none)."""

    label: int
    name: str
    predicted_voxels: int
    kept_voxels: int
    ignored_low_confidence: int
    ignored_disagreement: int
    ignored_small_components: int
    components: int
    volume_ml: float
    source_range_ml: tuple[float, float] | None
    mean_confidence: float | None
    status: str  # "kept", "ignored" (no voxel passed the filters) or "dropped" (implausible)
    reason: str = ""
    #: the confidence threshold applied to this structure (below ``min_confidence`` with ``keep_most_confident``)
    confidence_threshold: float | None = None


@dataclass
class CaseReport:
    """One case: its structures, the share of voxels ignored and whether the case was kept."""

    case: str
    status: str  # "kept" or "dropped"
    reason: str
    ignored_fraction: float
    mean_confidence: float
    structures: list[StructureReport]

    def to_dict(self) -> dict:
        return asdict(self)


def _ensemble(case: str, fold_probabilities: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ensemble class, its mean probability and the fraction of folds predicting it, per voxel. The folds are read
    one at a time (an iterable may load each from disk), so memory holds one fold's probabilities plus the sum."""
    total = None
    fold_classes = []
    for probs in fold_probabilities:
        probs = np.asarray(probs, dtype=np.float32)
        if total is not None and probs.shape != total.shape:
            raise ValueError(f"{case}: the folds' probability arrays differ in shape: {total.shape} and {probs.shape}")
        total = probs.copy() if total is None else total + probs
        fold_classes.append(np.argmax(probs, axis=0).astype(np.uint8))
    if total is None:
        raise ValueError(f"{case}: no fold probabilities given")
    predicted = np.argmax(total, axis=0).astype(np.uint8)
    confidence = np.take_along_axis(total, predicted[None].astype(np.int64), axis=0)[0] / len(fold_classes)
    agreement = np.mean([c == predicted for c in fold_classes], axis=0)
    return predicted, confidence, agreement


def _confidence_thresholds(predicted: np.ndarray, confidence: np.ndarray, labels: Mapping[int, str],
                           settings: PseudoLabelFilter) -> np.ndarray:
    """Per class value (index), the confidence a voxel predicted as that class needs: ``min_confidence``, lowered
    for a foreground structure to the ``1 - keep_most_confident`` quantile of its voxels' confidences when that is
    lower. Background keeps ``min_confidence``."""
    thresholds = np.full(int(max(max(labels, default=0), predicted.max(initial=0))) + 1, settings.min_confidence,
                         np.float32)
    if settings.keep_most_confident > 0:
        for label in labels:
            values = confidence[predicted == label]
            if values.size:
                quantile = float(np.quantile(values, 1.0 - settings.keep_most_confident))
                thresholds[label] = min(settings.min_confidence, quantile)
    return thresholds


def filter_pseudo_label(
    case: str,
    fold_probabilities: Iterable[np.ndarray],
    labels: Mapping[int, str],
    ignore_label: int,
    voxel_volume_ml: float,
    source_ranges_ml: Mapping[int, tuple[float, float]],
    settings: PseudoLabelFilter = PseudoLabelFilter(),
) -> tuple[np.ndarray, CaseReport]:
    """Pseudo-label of one case from its fold models' probabilities.

    ``fold_probabilities``: one ``(classes, *spatial)`` float array per fold model (any iterable, read once), softmax
    probabilities (class 0 is background, class ``k`` is label value ``k``), all of the same shape; ``labels``:
    foreground label value -> structure name; ``ignore_label``: nnU-Net's ignore value (the dataset's highest label
    + 1, at most 255); ``voxel_volume_ml``: one voxel's volume in millilitres; ``source_ranges_ml``: per label, the
    (min, max) volume in the source labels (a
    label without an entry gets no volume check).

    Returns ``(label map, report)``: a ``uint8`` array of the spatial shape with values in ``{0, labels..., ignore}``
    and the :class:`CaseReport`. A dropped case still returns its filtered map (the caller does not write it).
    """
    if ignore_label <= max(labels, default=0) or ignore_label > 255:
        raise ValueError(f"ignore_label must be above every label value and at most 255, got {ignore_label}")
    predicted, confidence, agreement = _ensemble(case, fold_probabilities)
    thresholds = _confidence_thresholds(predicted, confidence, labels, settings)
    low_confidence = confidence < thresholds[predicted]
    disagreement = (agreement < settings.min_agreement - 1e-6) & ~low_confidence
    pseudo = predicted.copy()
    pseudo[low_confidence | disagreement] = ignore_label

    structures: list[StructureReport] = []
    for label, name in sorted(labels.items()):
        mask = predicted == label
        predicted_voxels = int(mask.sum())
        components, n_components = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
        small = np.zeros_like(mask)
        if n_components > 1 and settings.min_component_fraction > 0:
            sizes = np.bincount(components.ravel())[1:]
            too_small = np.flatnonzero(sizes < settings.min_component_fraction * sizes.max()) + 1
            small = np.isin(components, too_small)
        ignored_small = int((small & (pseudo == label)).sum())
        pseudo[small] = ignore_label
        volume_ml = float((mask & ~small).sum()) * voxel_volume_ml
        source_range = source_ranges_ml.get(label)
        status, reason = "kept", ""
        if source_range is not None and np.isfinite(settings.volume_factor):
            low, high = source_range[0] / settings.volume_factor, source_range[1] * settings.volume_factor
            if not low <= volume_ml <= high:
                status = "dropped"
                reason = (f"volume {volume_ml:.2f} ml outside the plausible {low:.2f}-{high:.2f} ml (source "
                          f"{source_range[0]:.2f}-{source_range[1]:.2f} ml, factor {settings.volume_factor:g})")
        if status == "dropped":
            pseudo[mask] = ignore_label
        elif predicted_voxels and not (pseudo == label).any():
            status, reason = "ignored", f"none of its {predicted_voxels} predicted voxels passed the filters"
        structures.append(StructureReport(
            label=label, name=name, predicted_voxels=predicted_voxels,
            kept_voxels=int((pseudo == label).sum()),
            ignored_low_confidence=int((mask & low_confidence).sum()),
            ignored_disagreement=int((mask & disagreement).sum()),
            ignored_small_components=ignored_small, components=int(n_components), volume_ml=round(volume_ml, 4),
            source_range_ml=None if source_range is None else (float(source_range[0]), float(source_range[1])),
            mean_confidence=float(confidence[mask].mean()) if predicted_voxels else None,
            status=status, reason=reason, confidence_threshold=round(float(thresholds[label]), 4)))

    dropped = [s for s in structures if s.status == "dropped"]
    case_status, case_reason = "kept", ""
    if structures and len(dropped) > settings.max_dropped_fraction * len(structures):
        case_status = "dropped"
        case_reason = (f"{len(dropped)} of {len(structures)} structures dropped ("
                       f"{', '.join(s.name for s in dropped)}), more than {settings.max_dropped_fraction:.0%}")
    report = CaseReport(case=case, status=case_status, reason=case_reason,
                        ignored_fraction=float((pseudo == ignore_label).mean()),
                        mean_confidence=float(confidence.mean()), structures=structures)
    return pseudo, report
