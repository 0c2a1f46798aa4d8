"""What a benchmark reports: benchmark.json (rows x seeds, medians, gap closed, headline, wall times, provenance)
and benchmark.md (the same as tables), read from the rows' evaluation folders."""
from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Mapping, Sequence

import numpy as np

from nnunet_glua.evaluation.evaluate import EvaluationError, load_evaluation
from nnunet_glua.evaluation.metrics import Summary
from nnunet_glua.evaluation.report import comparison, comparison_markdown, gap_closed
from nnunet_glua.experiments.datasets import preprocessed_root, upper_bound_dataset
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.medians import median_summary
from nnunet_glua.experiments.provenance import machine_info, project_commit, sha256_prefix
from nnunet_glua.experiments.rows import LOWER_ROW, ROWS, START_ROW, UPPER_ROW
from nnunet_glua.experiments.runner import check_evaluated_cases, not_trained_reason, read_record, stored_identity
from nnunet_glua.experiments.settings import ROW_RECORD, ExperimentSettings

__all__ = ["FORMAT_VERSION", "METRICS", "WIDE_MARGIN_DICE", "WIDE_MARGIN_GAP", "build_report", "benchmark_markdown",
           "report_scope"]

FORMAT_VERSION = 1
METRICS: tuple[str, ...] = ("dice", "assd_mm")
# DESIGN.md: a "wide margin" is >= 0.15 class-mean Dice over source-only and >= 50 % of the gap closed
WIDE_MARGIN_DICE = 0.15
WIDE_MARGIN_GAP = 0.5
TRANSLATOR_CHECKPOINT_GLOB = "*/GLUATranslator__*/checkpoint_final.pth"


def _metric_values(summary: Summary) -> dict[str, Any]:
    return {
        m: {"classes": {c: s.statistic(m).mean for c, s in summary.classes.items()},
            "class_mean": summary.class_mean[m].mean}
        for m in METRICS
    }


def report_scope(settings: ExperimentSettings) -> tuple[ExperimentSettings, set[tuple[int, str]]]:
    """What benchmark.json covers: this run's rows and seeds, plus every other row and seed already finished in
    the same output folder with the same settings (a benchmark run in several commands reports all of it).

    Returns settings whose ``rows`` and ``seeds`` are those reported (table order, ascending seeds) and the
    ``(seed, row key)`` pairs that have results or were found not trainable; this run's pairs are always among
    them. A finished row made with other settings (another trainer, fold or mirroring) is left out.
    """
    s = settings
    seeds = set(s.seeds)
    for folder in s.out.glob("seed_*") if s.out.is_dir() else ():
        if folder.is_dir() and folder.name[len("seed_"):].isdigit():
            seeds.add(int(folder.name[len("seed_"):]))
    upper = s.upper
    if upper is None and any(s.is_finished(k, r) for k in seeds for r in ROWS if r.upper_bound):
        try:
            upper = upper_bound_dataset(s.adaptation, s.test_cases)
        except BenchmarkError:
            upper = None  # its dataset is gone: the upper bound's stored rows cannot be checked, so are left out
    wide = dataclasses.replace(s, rows=ROWS, seeds=tuple(sorted(seeds)), upper=upper)
    this_run = {(k, r.key) for k in s.seeds for r in s.rows}
    pairs = set(this_run)
    for seed in wide.seeds:
        for row in ROWS:
            if (seed, row.key) in this_run or (row.upper_bound and upper is None):
                continue
            if not wide.is_finished(seed, row):
                if not_trained_reason(wide, seed, row) is not None:
                    pairs.add((seed, row.key))
                continue
            record = wide.evaluation_folder(seed, row) / ROW_RECORD
            if record.is_file() and stored_identity(read_record(record)) == wide.identity(seed, row):
                pairs.add((seed, row.key))
    rows = tuple(r for r in ROWS if any((k, r.key) in pairs for k in wide.seeds))
    return dataclasses.replace(wide, rows=rows, seeds=tuple(k for k in wide.seeds
                                                            if any((k, r.key) in pairs for r in rows))), pairs


def build_report(settings: ExperimentSettings) -> dict[str, Any]:
    """The content of benchmark.json, read from every finished row and seed of ``settings`` and from those that
    :func:`report_scope` adds. Per row, ``seeds`` maps every reported seed to its values (``None`` where that row
    has no result for the seed) and the medians are over the seeds it has.

    Raises :class:`BenchmarkError` when a row's evaluation is missing, unreadable or scored on other cases.
    """
    run_rows, run_seeds = [r.key for r in settings.rows], list(settings.seeds)
    s, pairs = report_scope(settings)
    rows: dict[str, Any] = {}
    medians: dict[str, Summary] = {}
    not_trained: dict[str, dict[str, str]] = {}
    for row in s.rows:
        per_seed: dict[str, Any] = {}
        summaries = []
        for seed in s.seeds:
            reason = None if s.is_finished(seed, row) else not_trained_reason(s, seed, row)
            if reason is not None:
                not_trained.setdefault(row.label, {})[str(seed)] = reason
            if (seed, row.key) not in pairs or reason is not None:
                per_seed[str(seed)] = None
                continue
            folder = s.evaluation_folder(seed, row)
            try:
                result = load_evaluation(folder)
            except EvaluationError as e:
                raise BenchmarkError(folder, f"cannot be read ({e.problem}); remove it to run it again") from None
            check_evaluated_cases(s, result, folder)
            record = read_record(folder / ROW_RECORD)
            summaries.append(result.summary)
            per_seed[str(seed)] = {
                **_metric_values(result.summary),
                "n_missed": sum(c.n_missed for c in result.summary.classes.values()),
                "n_false_positive": sum(c.n_false_positive for c in result.summary.classes.values()),
                "wall_time_s": record["wall_time_s"],
                "checkpoint_sha256": record["checkpoint_sha256"],
                "project_commit": (record.get("project") or {}).get("commit"),
                "evaluation_folder": str(folder),
            }
        if not summaries:
            continue  # not trained in any seed
        medians[row.label] = median_summary(summaries)
        totals = [v["wall_time_s"]["total_s"] for v in per_seed.values()
                  if v is not None and v["wall_time_s"]["total_s"] is not None]
        rows[row.label] = {
            "key": row.key,
            "trainer": s.trainer(row),
            "starts_from": row.starts_from,
            "trained_dataset": s.trained_dataset(row).name,
            "description": row.description,
            "seeds": per_seed,
            "median": _metric_values(medians[row.label]),
            "median_summary": medians[row.label].to_dict(),
            "wall_time_s": {"median_total_s": float(np.median(totals)) if totals else None,
                            "sum_total_s": round(sum(totals), 1) if totals else None,
                            "seeds_timed": len(totals)},
        }
    table = comparison(medians, lower=LOWER_ROW, upper=UPPER_ROW, metrics=METRICS)
    hashes: dict[str, Any] = {"plans": {"file": str(s.plans_file), "sha256": sha256_prefix(s.plans_file)}}
    if s.upper is not None and any(r.upper_bound for r in s.rows):
        upper_plans = preprocessed_root() / s.upper.name / f"{s.plans}.json"
        hashes["upper_bound_plans"] = {"file": str(upper_plans),
                                       "sha256": sha256_prefix(upper_plans) if upper_plans.is_file() else None}
    hashes["translators"] = {
        str(seed): {str(p.relative_to(s.seed_root(seed))): sha256_prefix(p)
                    for p in sorted(s.seed_root(seed).glob("nnUNet_results*/" + TRANSLATOR_CHECKPOINT_GLOB))}
        for seed in s.seeds
    }
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "dataset": s.adaptation.name,
            "upper_bound_dataset": s.upper.name if s.upper is not None else None,
            "configuration": s.configuration,
            "plans": s.plans,
            "fold": s.fold,
            "schedule": s.schedule,
            "fine_tune_schedule": s.fine_tune_schedule,
            "seeds": list(s.seeds),
            "rows": [r.key for r in s.rows],
            "this_run": {"seeds": run_seeds, "rows": run_rows},
            "device": s.device,
            "test_time_mirroring": s.test_time_mirroring,
            "output_folder": str(s.out),
        },
        "test_set": {
            "images": str(s.adaptation.images_ts),
            "labels": str(s.adaptation.labels_ts),
            "cases": list(s.test_cases),
            "target_modality": s.adaptation.glua.get("target_modality"),
            "direction": s.adaptation.glua.get("direction"),
        },
        "machine": machine_info(),
        "project": project_commit(),
        "hashes": hashes,
        "notes": {
            "values": "per row: each seed's mean over the test cases; 'median' = median over seeds of those "
                      "values (Dice in [0, 1], ASSD in mm; null where undefined)",
            "gap_closed": f"(row - {LOWER_ROW}) / ({UPPER_ROW} - {LOWER_ROW}) on the medians",
            "comparison": "report.comparison of the per-row median summaries: a per-class 'n' counts the "
                          "seeds with a defined value, a class-mean 'n' the classes it covers",
            "seeds": "each seed trains every row, and the GLUA translator, in its own nnUNet_results",
            "wide_margin": f">= {WIDE_MARGIN_DICE} class-mean Dice over {LOWER_ROW} and >= "
                           f"{WIDE_MARGIN_GAP:.0%} of the gap closed, on the medians",
        },
        "rows": rows,
        "not_trained": not_trained,
        "comparison": table,
        "headline": _headline(rows, table, s.seeds),
    }


def _headline(rows: Mapping[str, Any], table: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """Per adapted row: Dice gain over source-only, continued, and gap closed (class means, on the medians; also per
    seed) and whether that is a wide margin."""
    if LOWER_ROW not in rows or UPPER_ROW not in rows:
        return {}
    lower, upper = rows[LOWER_ROW], rows[UPPER_ROW]
    out = {}
    for label, row in rows.items():
        if label in (START_ROW, LOWER_ROW, UPPER_ROW):
            continue
        value, base = row["median"]["dice"]["class_mean"], lower["median"]["dice"]["class_mean"]
        gain = None if value is None or base is None else value - base
        gap = table["gap_closed"].get(label, {}).get("dice", {}).get("class_mean")
        out[label] = {
            "dice_gain": gain,
            "gap_closed_dice": gap,
            "gap_closed_dice_per_seed": {
                str(k): gap_closed(*(_seed_dice(r, k) for r in (row, lower, upper)))
                if all(r["seeds"][str(k)] is not None for r in (row, lower, upper)) else None
                for k in seeds
            },
            "wide_margin": None if gain is None or gap is None else bool(gain >= WIDE_MARGIN_DICE
                                                                         and gap >= WIDE_MARGIN_GAP),
        }
    return out


def _seed_dice(row: Mapping[str, Any], seed: int) -> float | None:
    values = row["seeds"][str(seed)]
    return None if values is None else values["dice"]["class_mean"]


# ----------------------------------------------------------------------------------------------- markdown
_NOT_RUN = "—"
_NOT_TRAINED = "not trained"


def _row_commits(rows: Mapping[str, Any]) -> str:
    """Which commit finished which row and seed: ``c06da69 (GLUA seed 0, 1); not recorded (source-only seed 0)``."""
    by_commit: dict[str, dict[str, list[str]]] = {}
    for label, row in rows.items():
        for seed, values in row["seeds"].items():
            if values is not None:
                commit = values.get("project_commit") or "not recorded"
                by_commit.setdefault(commit if commit == "not recorded" else commit[:7], {}).setdefault(
                    label, []).append(seed)
    return "; ".join(f"{commit} (" + ", ".join(f"{label} seed {', '.join(seeds)}" for label, seeds in found.items())
                     + ")" for commit, found in by_commit.items())


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 3600:.2f} h" if value >= 3600 else f"{value / 60:.1f} min" if value >= 60 else f"{value:.0f} s"


def benchmark_markdown(report: Mapping[str, Any]) -> str:
    """benchmark.md: the comparison table of the medians (headline rows, then ablations, then gap closed),
    per-seed class-mean Dice, wall times, machine, commit and hashes. Ends with a newline."""
    st, test = report["settings"], report["test_set"]
    seeds = st["seeds"]
    rows = report["rows"]
    lines = [
        f"# Adaptation benchmark — {st['dataset']}",
        "",
        f"Configuration {st['configuration']}, plans {st['plans']}, fold {st['fold']}, schedule "
        f"{st['schedule'] or 'default (nnU-Net)'} for {START_ROW}, then "
        f"{st['fine_tune_schedule'] or 'default (nnU-Net)'} for every other row, started from the {START_ROW} "
        f"model; device {st['device']}, test-time mirroring {'on' if st['test_time_mirroring'] else 'off'}, seeds "
        f"{', '.join(map(str, seeds))}. "
        f"Every row is evaluated on the same {len(test['cases'])} target test cases ({test['labels']}). "
        "Values: median over seeds of each seed's mean over the test cases.",
        "",
        f"This run: rows {', '.join(st['this_run']['rows'])}; seeds {', '.join(map(str, st['this_run']['seeds']))}. "
        "The tables also hold every row and seed finished earlier in this folder with the same settings.",
        "",
        "## Results",
        "",
    ]
    medians = {label: Summary.from_dict(row["median_summary"]) for label, row in rows.items()}
    lines.append(comparison_markdown(medians, lower=LOWER_ROW, upper=UPPER_ROW, metrics=METRICS, title=None))
    headline = report.get("headline") or {}
    if headline:
        lines += ["### Headline", "", f"| Row | Dice gain over {LOWER_ROW} | Gap closed (Dice) | Per seed | "
                  "Wide margin |", "| :--- | ---: | ---: | ---: | :---: |"]
        for label, h in headline.items():
            per_seed = " / ".join("n/a" if v is None else f"{100 * v:.0f} %"
                                  for v in h["gap_closed_dice_per_seed"].values())
            gap = "n/a" if h["gap_closed_dice"] is None else f"{100 * h['gap_closed_dice']:.1f} %"
            wide = {True: "yes", False: "no", None: "n/a"}[h["wide_margin"]]
            lines.append(f"| {label} | {_fmt(h['dice_gain'])} | {gap} | {per_seed} | {wide} |")
        lines += ["", f"Wide margin: {report['notes']['wide_margin']}.", ""]
    lines += ["### Class-mean Dice per seed", "",
              "| Row | Trainer | " + " | ".join(f"seed {k}" for k in seeds) + " | median | missed per seed |",
              "| :--- | :--- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: |"]
    not_trained = report.get("not_trained") or {}
    for label, row in rows.items():
        per_seed = [_NOT_TRAINED if str(k) in not_trained.get(label, {}) else
                    _NOT_RUN if row["seeds"][str(k)] is None else _fmt(_seed_dice(row, k)) for k in seeds]
        missed = " / ".join(_NOT_RUN if v is None else str(v["n_missed"]) for v in row["seeds"].values())
        lines.append(f"| {label} | {row['trainer']} | " + " | ".join(per_seed)
                     + f" | {_fmt(row['median']['dice']['class_mean'])} | {missed} |")
    lines += ["", "### Wall time (train + predict + evaluate)", "",
              "| Row | " + " | ".join(f"seed {k}" for k in seeds) + " | median | total |",
              "| :--- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: |"]
    for label, row in rows.items():
        per_seed = [_NOT_RUN if v is None else _fmt_seconds(v["wall_time_s"]["total_s"]) for v in row["seeds"].values()]
        lines.append(f"| {label} | " + " | ".join(per_seed) + f" | {_fmt_seconds(row['wall_time_s']['median_total_s'])}"
                     f" | {_fmt_seconds(row['wall_time_s']['sum_total_s'])} |")
    notes = []
    if any(v is not None and v["wall_time_s"]["total_s"] is None for row in rows.values()
           for v in row["seeds"].values()):
        notes.append("n/a: the model was trained before this benchmark recorded its training time.")
    if any(v is None for row in rows.values() for v in row["seeds"].values()):
        notes.append(f"{_NOT_RUN}: that row has not been run for that seed; its median is over the seeds it has.")
    if any(row["trainer"].startswith("GLUATrainer") for row in rows.values()):
        notes.append("Each seed trains the GLUA style translator once, in the first GLUA row of that seed that uses "
                     "it (counted in that row's time unless it existed before); the other GLUA rows of the seed reuse "
                     "it.")
    lines += ["", " ".join(notes), ""] if notes else [""]
    if not_trained:
        lines += ["### Not trained", "", "| Row | Seed | Why |", "| :--- | ---: | :--- |"]
        lines += [f"| {label} | {seed} | {reason} |" for label, by_seed in not_trained.items()
                  for seed, reason in by_seed.items()]
        lines.append("")
    m, p, h = report["machine"], report["project"], report["hashes"]
    dirty = " (with uncommitted changes)" if p.get("dirty") else ""
    lines += [
        "### Provenance",
        "",
        f"- Machine: {m['hostname']}, {m['cpu']} ({m['cpu_count']} CPUs), GPU {m['gpu'] or 'none'}; torch "
        f"{m['torch']}, nnunetv2 {m['nnunetv2']}, nnunet_glua {m['nnunet_glua']}, Python {m['python']}",
        f"- Project commit of this report: {p['commit']}{dirty}",
        "- Rows finished at: " + _row_commits(rows),
        f"- Plans: {h['plans']['file']} (SHA-256 {h['plans']['sha256']})",
    ]
    if "upper_bound_plans" in h:
        lines.append(f"- Upper-bound plans: {h['upper_bound_plans']['file']} "
                     f"(SHA-256 {h['upper_bound_plans']['sha256'] or 'n/a: file removed'})")
    if any(row["trainer"].startswith("GLUATrainer") for row in rows.values()):
        for seed, found in h["translators"].items():
            text = ", ".join(f"{path} ({digest})" for path, digest in found.items()) or "none"
            lines.append(f"- Translator, seed {seed}: {text}")
    return "\n".join(lines) + "\n"
