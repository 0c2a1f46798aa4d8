"""The median over seeds of per-seed evaluation summaries: how the benchmark reports a row."""
from __future__ import annotations

import statistics
from typing import Iterable, Sequence

import numpy as np

from nnunet_glua.evaluation.metrics import SUMMARY_METRICS, ClassSummary, Statistic, Summary

__all__ = ["median_summary"]


def median_summary(summaries: Sequence[Summary]) -> Summary:
    """Per class and metric, the median over ``summaries`` (one per seed) of the per-seed mean over cases.

    Each :class:`Statistic` of the result has ``mean`` = that median (taken over the seeds where the value is
    defined; ``None`` if it is defined in none), ``std = None`` and ``n`` = the number of seeds that entered
    it. The class mean is the median of the defined per-seed class means, its ``n`` the fewest classes any of
    those covered (so a partial class mean stays marked as partial). Outcome counts are the per-class
    lower medians over seeds; their sum need not equal ``n_cases``. All summaries must come from one test set;
    ``ValueError`` otherwise, and for an empty sequence.
    """
    if not summaries:
        raise ValueError("no summaries to take the median of")
    first = summaries[0]
    for s in summaries[1:]:
        if list(s.classes) != list(first.classes) or s.n_cases != first.n_cases:
            raise ValueError("summaries of different test sets (classes or number of cases differ)")

    def median(values: Iterable[float | None]) -> Statistic:
        defined = [v for v in values if v is not None]
        return Statistic(float(np.median(defined)) if defined else None, None, len(defined))

    classes = {}
    for name, c in first.classes.items():
        per_seed = [s.classes[name] for s in summaries]
        stats = {m: median(cs.statistic(m).mean for cs in per_seed) for m in SUMMARY_METRICS}
        counts = {k: int(statistics.median_low(getattr(cs, k) for cs in per_seed))
                  for k in ("n_ok", "n_missed", "n_false_positive", "n_absent")}
        classes[name] = ClassSummary(label=c.label, **stats, **counts)
    class_mean = {}
    for m in SUMMARY_METRICS:
        defined = [s.class_mean[m] for s in summaries if m in s.class_mean and s.class_mean[m].mean is not None]
        stat = median(c.mean for c in defined)
        class_mean[m] = Statistic(stat.mean, None, min((c.n for c in defined), default=0))
    return Summary(n_cases=first.n_cases, classes=classes, class_mean=class_mean)
