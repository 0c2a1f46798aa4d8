"""Tables of evaluation results: one evaluation, and the comparison of an adaptation experiment.

The headline of an adaptation experiment compares, on the same target test set, a lower bound
(``source-only``: nnU-Net trained on the source modality), one or more adapted models (``GLUA`` and its
ablations) and an upper bound (``target-supervised``: nnU-Net trained on labelled target data):

    gap closed = (adapted − lower) / (upper − lower)

per class (on the per-class means over cases) and for the class mean. 1 (100 %) means the adapted model
reaches the upper bound, 0 means no gain over source-only, negative values mean it is worse than
source-only. The same formula serves Dice (higher is better) and ASSD (lower is better): the sign of the
denominator takes care of the direction. Gap closed is **undefined** ("n/a", ``None``) when any of the
three values is undefined or when ``|upper − lower|`` is below ``min_gap`` (default 1e-3 in the metric's
unit), because the ratio of two near-zero differences is noise. For the class mean it is also undefined
when the three class means are not taken over the same classes (e.g. a class whose ASSD is undefined for
one method because that method missed it in every case).

Results are accepted as :class:`~nnunet_glua.evaluation.metrics.Summary`, as an evaluation result (any
object with a ``summary`` attribute), as the dict of an evaluation.json or of a summary, or as the path to
an evaluation.json (or the folder that holds it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from nnunet_glua.evaluation.metrics import SUMMARY_METRICS, Statistic, Summary

__all__ = [
    "ResultLike",
    "METRIC_TITLES",
    "as_summary",
    "format_statistic",
    "evaluation_markdown",
    "gap_closed",
    "comparison",
    "comparison_markdown",
]

ResultLike = Union[Summary, Mapping[str, Any], str, "os.PathLike[str]", Any]

METRIC_TITLES = {"dice": "Dice", "assd_mm": "ASSD (mm)", "assd_voxel": "ASSD (voxel)"}
_DIGITS = {"dice": 3, "assd_mm": 2, "assd_voxel": 2}
_NA = "n/a"


def as_summary(result: ResultLike) -> Summary:
    """The :class:`Summary` of any accepted result form (see the module docstring)."""
    if isinstance(result, Summary):
        return result
    summary = getattr(result, "summary", None)
    if isinstance(summary, Summary):
        return summary
    if isinstance(result, (str, os.PathLike)):
        path = Path(result)
        if path.is_dir():
            path = path / "evaluation.json"
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read an evaluation result ({e})") from None
    if isinstance(result, Mapping):
        data = result.get("summary", result)
        try:
            return Summary.from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not an evaluation summary (missing or bad entry: {e})") from None
    raise TypeError(f"cannot take an evaluation summary from a {type(result).__name__}")


def format_statistic(stat: Statistic | None, digits: int = 3, with_std: bool = True) -> str:
    """``"0.812 ± 0.041"``; ``"n/a"`` when the mean is undefined; the std is left out when undefined."""
    if stat is None or stat.mean is None:
        return _NA
    if with_std and stat.std is not None:
        return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f}"


def _format_gap(value: float | None) -> str:
    return _NA if value is None else f"{100.0 * value:.1f} %"


def _format_difference(value: float | None, digits: int) -> str:
    return _NA if value is None else f"{value:+.{digits}f}"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    align = [":---" if i < right_from else "---:" for i in range(len(header))]
    return [_md_row(header), _md_row(align), *(_md_row(r) for r in rows)]


def _class_mean_text(stat: Statistic, n_classes: int, metric: str) -> str:
    # a class mean over fewer classes than exist is not comparable to a full one: say so in the cell
    text = format_statistic(stat, _DIGITS[metric], with_std=False)
    if stat.mean is not None and stat.n < n_classes:
        text += f" ({stat.n}/{n_classes} classes)"
    return text


def evaluation_markdown(result: ResultLike, title: str | None = "Evaluation") -> str:
    """Markdown table of one evaluation: per class Dice, ASSD mm and ASSD voxel (mean ± std), outcome counts,
    and the class mean. Ends with a newline."""
    summary = as_summary(result)
    header = ["Class", "Label", *(METRIC_TITLES[m] for m in SUMMARY_METRICS),
              "Cases", "Missed", "False pos.", "Absent"]
    rows = []
    for name, s in summary.classes.items():
        rows.append([
            name, str(s.label),
            *(format_statistic(s.statistic(m), _DIGITS[m]) for m in SUMMARY_METRICS),
            str(s.dice.n), str(s.n_missed), str(s.n_false_positive), str(s.n_absent),
        ])
    n_classes = len(summary.classes)
    rows.append(["**Class mean**", "",
                 *(_class_mean_text(summary.class_mean[m], n_classes, m) for m in SUMMARY_METRICS),
                 "", "", "", ""])
    lines = [f"## {title}", ""] if title else []
    cases = "1 case" if summary.n_cases == 1 else f"{summary.n_cases} cases"
    lines += [f"{cases}; mean ± std over the cases where a value is defined.", ""]
    lines += _md_table(header, rows, right_from=1)
    lines += [
        "",
        "Missed: structure present, prediction empty (Dice 0, no ASSD). False pos.: structure absent, "
        "predicted anyway (Dice 0, no ASSD). Absent: in neither (case not counted). ASSD (voxel) is not "
        "comparable across spacings; ASSD (mm) is.",
    ]
    return "\n".join(lines) + "\n"


def gap_closed(value: float | None, lower: float | None, upper: float | None, min_gap: float = 1e-3) -> float | None:
    """(value − lower) / (upper − lower); ``None`` if any input is ``None`` or ``|upper − lower| < min_gap``."""
    if value is None or lower is None or upper is None:
        return None
    denominator = upper - lower
    if abs(denominator) < min_gap:
        return None
    return (value - lower) / denominator


def _difference(value: float | None, lower: float | None) -> float | None:
    return None if value is None or lower is None else value - lower


def _defined_classes(summary: Summary, metric: str) -> frozenset[str]:
    return frozenset(n for n, s in summary.classes.items() if s.statistic(metric).mean is not None)


def comparison(
    results: Mapping[str, ResultLike],
    lower: str = "source-only",
    upper: str = "target-supervised",
    metrics: Sequence[str] = ("dice", "assd_mm"),
    min_gap: float = 1e-3,
) -> dict[str, Any]:
    """Comparison of named results on one test set, as a JSON-ready dict.

    ``results`` maps a method name to its result (order is kept). Gap closed is computed for every method
    other than ``lower`` and ``upper`` when both of those are among the results (otherwise it is left out).
    All results must cover the same classes. Returns::

        {"classes": [...], "lower": str|None, "upper": str|None, "min_gap": float,
         "methods": {name: {"n_cases": int,
                            metric: {"classes": {class: {"mean", "std", "n"}}, "class_mean": {"mean", "std", "n"}}}},
         "gap_closed": {name: {metric: {"classes": {class: float|None}, "class_mean": float|None}}},
         "difference": {name: {metric: {"classes": {class: float|None}, "class_mean": float|None}}}}

    ``difference`` (method minus ``lower``, in the metric's units) is there for every method other than the two
    bounds whenever ``lower`` is among the results, with or without ``upper``.
    """
    if not results:
        raise ValueError("no results to compare")
    for m in metrics:
        if m not in SUMMARY_METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(SUMMARY_METRICS)}")
    summaries = {name: as_summary(r) for name, r in results.items()}
    first_name, first = next(iter(summaries.items()))
    classes = list(first.classes)
    for name, s in summaries.items():
        if set(s.classes) != set(classes):
            raise ValueError(f"results {first_name!r} and {name!r} have different classes "
                             f"({sorted(classes)} vs {sorted(s.classes)}); compare results of one test set")
    methods = {
        name: {
            "n_cases": s.n_cases,
            **{m: {"classes": {c: s.classes[c].statistic(m).to_dict() for c in classes},
                   "class_mean": s.class_mean[m].to_dict()} for m in metrics},
        }
        for name, s in summaries.items()
    }
    with_gap = lower in summaries and upper in summaries
    gaps: dict[str, Any] = {}
    differences: dict[str, Any] = {}
    if lower in summaries:
        lo = summaries[lower]
        up = summaries[upper] if with_gap else None
        for name, s in summaries.items():
            if name in (lower, upper):
                continue
            differences[name], gaps_of_method = {}, {}
            for m in metrics:
                same_as_lower = _defined_classes(s, m) == _defined_classes(lo, m)
                differences[name][m] = {
                    "classes": {c: _difference(s.classes[c].statistic(m).mean, lo.classes[c].statistic(m).mean)
                                for c in classes},
                    "class_mean": (_difference(s.class_mean[m].mean, lo.class_mean[m].mean) if same_as_lower
                                   else None),
                }
                if up is None:
                    continue
                per_class = {
                    c: gap_closed(s.classes[c].statistic(m).mean, lo.classes[c].statistic(m).mean,
                                  up.classes[c].statistic(m).mean, min_gap)
                    for c in classes
                }
                same_classes = same_as_lower and _defined_classes(lo, m) == _defined_classes(up, m)
                mean_gap = (gap_closed(s.class_mean[m].mean, lo.class_mean[m].mean, up.class_mean[m].mean, min_gap)
                            if same_classes else None)
                gaps_of_method[m] = {"classes": per_class, "class_mean": mean_gap}
            if up is not None:
                gaps[name] = gaps_of_method
    return {
        "classes": classes,
        "lower": lower if with_gap else None,
        "upper": upper if with_gap else None,
        "min_gap": min_gap,
        "methods": methods,
        "gap_closed": gaps,
        "difference": differences,
    }


def comparison_markdown(
    results: Mapping[str, ResultLike],
    lower: str = "source-only",
    upper: str = "target-supervised",
    metrics: Sequence[str] = ("dice", "assd_mm"),
    min_gap: float = 1e-3,
    title: str | None = "Adaptation results",
) -> str:
    """Markdown of :func:`comparison`: one table per metric, rows = methods (mean ± std per class, class
    mean) followed by a "gap closed" row per adapted method; without ``upper`` among the results, a row per method
    with its difference to ``lower`` instead. Ends with a newline."""
    table = comparison(results, lower=lower, upper=upper, metrics=metrics, min_gap=min_gap)
    classes = table["classes"]
    lines = [f"## {title}", ""] if title else []
    for m in metrics:
        header = ["Method", "Cases", *classes, "Mean"]
        rows = []
        for name, entry in table["methods"].items():
            mean_text = _class_mean_text(Statistic.from_dict(entry[m]["class_mean"]), len(classes), m)
            rows.append([name, str(entry["n_cases"]),
                         *(format_statistic(Statistic.from_dict(entry[m]["classes"][c]), _DIGITS[m])
                           for c in classes),
                         mean_text])
        for name, gap in table["gap_closed"].items():
            rows.append([f"gap closed: {name}", "",
                         *(_format_gap(gap[m]["classes"][c]) for c in classes),
                         _format_gap(gap[m]["class_mean"])])
        if not table["gap_closed"]:
            # without an upper bound the difference to the lower bound is the comparison a reader looks for
            for name, diff in table["difference"].items():
                rows.append([f"{name} − {lower}", "",
                             *(_format_difference(diff[m]["classes"][c], _DIGITS[m]) for c in classes),
                             _format_difference(diff[m]["class_mean"], _DIGITS[m])])
        lines += [f"### {METRIC_TITLES[m]}", ""] + _md_table(header, rows, right_from=1) + [""]
    if table["gap_closed"]:
        lines.append(f"Gap closed = (method − {lower}) / ({upper} − {lower}); n/a where a value is undefined or "
                     f"|{upper} − {lower}| < {min_gap:g}.")
    elif table["difference"]:
        lines.append(f"Gap closed needs '{upper}' (the upper bound) among the results; shown instead: each "
                     f"method minus '{lower}'.")
    else:
        lines.append(f"Gap closed needs both '{lower}' and '{upper}' among the results; not shown.")
    return "\n".join(lines) + "\n"
