"""Label maps: how the raw values of a public dataset's label files become the task's consecutive labels.

A :class:`LabelMap` lists inclusive ranges of raw values and the task label each range becomes (0 = background).
Raw values that are known to occur by mistake (e.g. 421 next to 420 in some MMWHS files) are listed as *strays*:
they are mapped like the value they stand for and always reported. Any other value is an error, because a silent
"everything else is background" would hide a wrong file or a wrong label map.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from nnunet_glua.conversion.errors import ConversionError


@dataclass(frozen=True)
class ValueRule:
    """Raw values ``low..high`` (inclusive) mean structure ``name`` and become task label ``target``."""

    low: int
    high: int
    target: int
    name: str

    def matches(self, value: int) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        raw = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{raw} ({self.name})"


@dataclass(frozen=True)
class LabelMap:
    """Mapping from a dataset's raw label values to task labels.

    ``labels`` is nnU-Net's ``dataset.json`` ``"labels"`` entry (name -> consecutive int, ``"background": 0``).
    ``strays`` maps a known stray raw value to the raw value it stands for.
    """

    name: str
    labels: dict[str, int]
    rules: tuple[ValueRule, ...]
    strays: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = sorted(self.labels.values())
        if self.labels.get("background") != 0 or values != list(range(len(values))):
            raise ValueError(f"label map {self.name}: labels must be background=0 and consecutive, got {self.labels}")
        for rule in self.rules:
            if rule.target not in values:
                raise ValueError(f"label map {self.name}: rule {rule} targets undefined label {rule.target}")
        for stray, meant in self.strays.items():
            if self.rule_for(stray) is not None or self.rule_for(meant) is None:
                raise ValueError(f"label map {self.name}: stray {stray} -> {meant} must be unmapped -> mapped")

    def rule_for(self, value: int) -> ValueRule | None:
        for rule in self.rules:
            if rule.matches(value):
                return rule
        return None

    def known_values(self) -> str:
        return ", ".join(rule.describe() for rule in self.rules)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``dataset.json`` (``glua.label_map``): task labels, raw-value rules and stray values."""
        return {
            "name": self.name,
            "labels": dict(self.labels),
            "raw_values": [
                {"low": r.low, "high": r.high, "target": r.target, "structure": r.name} for r in self.rules
            ],
            "stray_values": {str(k): v for k, v in self.strays.items()},
        }


@dataclass
class LabelRecord:
    """What :func:`apply_label_map` found in one label file."""

    values_found: dict[int, int]
    mapping: dict[int, int]
    stray_values: dict[int, dict[str, int]]
    voxels_per_label: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["values_found"] = {str(k): v for k, v in self.values_found.items()}
        d["mapping"] = {str(k): v for k, v in self.mapping.items()}
        d["stray_values"] = {str(k): v for k, v in self.stray_values.items()}
        return d


def _integer_values(array: np.ndarray, path: "str | os.PathLike | None") -> np.ndarray:
    """``array`` as an integer array; raises if a float label holds non-integer or non-finite values."""
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array
    if not np.all(np.isfinite(array)):
        raise ConversionError(path, "label file contains NaN or infinite values; it is not a label map")
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        examples = np.unique(array[rounded != array])[:5]
        raise ConversionError(
            path, f"label file contains non-integer values (e.g. {examples.tolist()}); it is not a label map "
            "(was it resampled with linear interpolation?)"
        )
    return rounded.astype(np.int64)


def unique_value_counts(array: np.ndarray) -> dict[int, int]:
    """Raw value -> voxel count of an integer array (bincount for the usual small non-negative range)."""
    flat = array.ravel()
    low, high = int(flat.min()), int(flat.max())
    if low >= 0 and high < 2**16:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=high + 1)
        present = np.flatnonzero(counts)
        return {int(v): int(counts[v]) for v in present}
    values, counts = np.unique(flat, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def apply_label_map(
    array: np.ndarray, label_map: LabelMap, path: "str | os.PathLike | None" = None
) -> tuple[np.ndarray, LabelRecord]:
    """Map a raw label array (numpy order (z, y, x), any integer or integer-valued float type) to task labels.

    Returns a uint8 array of the same shape holding only values of ``label_map.labels`` and the record of what
    was found. Raises :class:`ConversionError` naming ``path`` for unknown or non-integer values.
    """
    ints = _integer_values(np.asarray(array), path)
    found = unique_value_counts(ints)
    mapping: dict[int, int] = {}
    strays: dict[int, dict[str, int]] = {}
    unknown: list[int] = []
    for value, count in found.items():
        meant = label_map.strays.get(value, value)
        rule = label_map.rule_for(meant)
        if rule is None:
            unknown.append(value)
            continue
        mapping[value] = rule.target
        if meant != value:
            strays[value] = {"voxels": count, "treated_as": meant, "target": rule.target}
    if unknown:
        # numpy (z, y, x) -> the (x, y, z) voxel index that viewers such as ITK-SNAP show
        first = tuple(int(i) for i in np.argwhere(ints == unknown[0])[0][::-1])
        raise ConversionError(
            path,
            f"unknown label values {unknown} (voxel counts {[found[v] for v in unknown]}; value {unknown[0]} "
            f"first at voxel index (x, y, z) = {first}) for label map "
            f"'{label_map.name}', which knows: {label_map.known_values()}"
            + (f"; known stray values: {label_map.strays}" if label_map.strays else "")
            + ". Check that the file belongs to this dataset.",
        )
    out = np.zeros(ints.shape, dtype=np.uint8)
    for value, target in mapping.items():
        if target != 0:
            out[ints == value] = target
    names = {v: k for k, v in label_map.labels.items()}
    per_label = {names[t]: 0 for t in sorted(names)}
    for value, target in mapping.items():
        per_label[names[target]] += found[value]
    warnings = [
        f"stray label value {value} ({info['voxels']} voxels) treated as {info['treated_as']} "
        f"-> label {info['target']} ({names[info['target']]})"
        for value, info in strays.items()
    ]
    absent = [name for name, count in per_label.items() if name != "background" and count == 0]
    if absent:
        warnings.append(f"structures absent from this label file: {', '.join(absent)}")
    return out, LabelRecord(found, mapping, strays, per_label, warnings)


# --- the benchmarks' label maps ---------------------------------------------------------------------------------

_MMWHS_STRUCTURES = {
    205: "myocardium of the left ventricle",
    420: "left atrium blood cavity",
    500: "left ventricle blood cavity",
    550: "right atrium blood cavity",
    600: "right ventricle blood cavity",
    820: "ascending aorta",
    850: "pulmonary artery",
}
# 421 appears in a few released MMWHS label files as a mislabelled left-atrium value
_MMWHS_STRAYS = {421: 420}


def _mmwhs_map(name: str, targets: dict[int, tuple[str, int]]) -> LabelMap:
    rules = [ValueRule(0, 0, 0, "background")]
    for raw, structure in _MMWHS_STRUCTURES.items():
        target = targets.get(raw, (None, 0))[1]
        rules.append(ValueRule(raw, raw, target, structure))
    labels = {"background": 0, **{short: t for short, t in sorted(targets.values(), key=lambda x: x[1])}}
    return LabelMap(name, labels, tuple(rules), dict(_MMWHS_STRAYS))


#: Standard 4-class MMWHS UDA task (SIFA protocol): right heart and pulmonary artery become background.
MMWHS_STANDARD = _mmwhs_map(
    "mmwhs_standard", {205: ("MYO", 1), 420: ("LAC", 2), 500: ("LVC", 3), 820: ("AA", 4)}
)
#: All seven MMWHS structures.
MMWHS_ALL = _mmwhs_map(
    "mmwhs_all",
    {205: ("MYO", 1), 420: ("LA", 2), 500: ("LV", 3), 550: ("RA", 4), 600: ("RV", 5), 820: ("AA", 6), 850: ("PA", 7)},
)
MMWHS_LABEL_SETS = {"standard": MMWHS_STANDARD, "all": MMWHS_ALL}

ABDOMEN_LABELS = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}

#: CHAOS PNG masks: nominal 63/126/189/252, matched by range because some exports are slightly off.
CHAOS_ABDOMEN = LabelMap(
    "chaos_abdomen",
    dict(ABDOMEN_LABELS),
    (
        ValueRule(0, 0, 0, "background"),
        ValueRule(55, 70, 1, "liver"),
        ValueRule(110, 135, 2, "right kidney"),
        ValueRule(175, 200, 3, "left kidney"),
        ValueRule(240, 255, 4, "spleen"),
    ),
)

_BTCV_ORGANS = {
    1: ("spleen", 4),
    2: ("right kidney", 2),
    3: ("left kidney", 3),
    4: ("gallbladder", 0),
    5: ("esophagus", 0),
    6: ("liver", 1),
    7: ("stomach", 0),
    8: ("aorta", 0),
    9: ("inferior vena cava", 0),
    10: ("portal and splenic vein", 0),
    11: ("pancreas", 0),
    12: ("right adrenal gland", 0),
    13: ("left adrenal gland", 0),
}
#: BTCV (Synapse multi-organ CT): the four CHAOS organs kept, the other nine organs become background.
BTCV_ABDOMEN = LabelMap(
    "btcv_abdomen",
    dict(ABDOMEN_LABELS),
    (ValueRule(0, 0, 0, "background"),)
    + tuple(ValueRule(raw, raw, target, name) for raw, (name, target) in _BTCV_ORGANS.items()),
)
