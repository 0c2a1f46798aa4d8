"""How right a pseudo-label set is, and what each filter setting trades: scored on target cases with known labels.

``glua_pseudo_label_quality -d D --set NAME --reference FOLDER`` re-filters the kept ensemble probabilities of a
pseudo-label set (``glua_pseudo_label ... --keep-probabilities``) with each variant of :data:`FILTER_VARIANTS` and
compares the result with reference labels of the same target *training* cases: a few target cases labelled by hand
on real data, or the upper-bound dataset's ``labelsTr`` on the phantoms. Per variant and structure it reports

- **precision**: of the voxels the pseudo-labels give the structure, the share the reference gives it too;
- **coverage**: of the reference's voxels of the structure, the share the pseudo-labels give it (ignored voxels and
  dropped cases count as not covered);
- the cases kept and the share of voxels ignored (no loss in self-training),

pooled over the voxels of every scored case. A filter that ignores more buys precision with coverage; which
trade trains the better model is what ``glua_benchmark --rows glua+st glua+st-confidence-0.6`` measures. Writes
``filter_quality.json`` and ``filter_quality.md`` into the set's folder (or ``--out``) and prints the table.

Nothing here trains: reference labels are read for scoring only, and only for the set's own target training cases.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_glua.data.pseudo_label_filter import PseudoLabelFilter, filter_pseudo_label
from nnunet_glua.data.pseudo_labels import (SET_FILE, PseudoLabelError, fold_probabilities, pseudo_label_set_folder,
                                            read_target_image)
from nnunet_glua.data.uda_dataset_info import UDADatasetError, load_uda_info
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.json_io import read_json, write_json
from nnunet_glua.volume_io import read_volume

__all__ = ["FILTER_VARIANTS", "AS_MADE", "StructureCounts", "count_agreement", "filter_variants",
           "measure_filter_quality", "quality_markdown", "main"]

AS_MADE = "as made"
#: variant name -> changes to the set's own filter settings (``as made``: none); each switches one step off or moves
#: one threshold, so a row of the table is one step's worth
FILTER_VARIANTS: dict[str, dict[str, float]] = {
    AS_MADE: {},
    "no confidence step": {"min_confidence": 0.0},
    "confidence 0.6": {"min_confidence": 0.6},
    "confidence 0.9": {"min_confidence": 0.9},
    "per-structure threshold (0.5)": {"keep_most_confident": 0.5},
    "no component clean-up": {"min_component_fraction": 0.0},
    "no volume check": {"volume_factor": math.inf},
    "no filter (ensemble argmax)": {"min_confidence": 0.0, "min_agreement": 0.0, "min_component_fraction": 0.0,
                                    "volume_factor": math.inf},
}


@dataclasses.dataclass
class StructureCounts:
    """Voxel counts of one structure, summed over cases: ``labelled`` (pseudo-label gives it), ``correct`` (and the
    reference agrees), ``reference`` (the reference gives it)."""

    labelled: int = 0
    correct: int = 0
    reference: int = 0

    def add(self, other: "StructureCounts") -> None:
        self.labelled += other.labelled
        self.correct += other.correct
        self.reference += other.reference

    @property
    def precision(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def coverage(self) -> float | None:
        return self.correct / self.reference if self.reference else None


def count_agreement(pseudo: np.ndarray | None, reference: np.ndarray, labels: Mapping[int, str]
                    ) -> dict[int, StructureCounts]:
    """Per foreground label, the counts of ``pseudo`` (a filtered label map, ignored voxels carrying a value outside
    ``labels``; ``None`` for a dropped case: nothing labelled) against ``reference`` (same shape, label values)."""
    counts = {}
    for label in labels:
        truth = reference == label
        if pseudo is None:
            counts[label] = StructureCounts(0, 0, int(truth.sum()))
        else:
            given = pseudo == label
            counts[label] = StructureCounts(int(given.sum()), int((given & truth).sum()), int(truth.sum()))
    return counts


def filter_variants(base: PseudoLabelFilter, names: Sequence[str] | None = None) -> dict[str, PseudoLabelFilter]:
    """The named variants of :data:`FILTER_VARIANTS` (default: all) applied to ``base``, the set's own settings."""
    names = list(FILTER_VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in FILTER_VARIANTS]
    if unknown:
        raise ValueError(f"unknown filter variant(s) {unknown}; choose from {list(FILTER_VARIANTS)}")
    return {n: dataclasses.replace(base, **FILTER_VARIANTS[n]) for n in names}


def _reference_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    image = read_volume(path, "reference label", PseudoLabelError)
    array = sitk.GetArrayFromImage(image)
    if array.shape != shape:
        raise PseudoLabelError(path, f"reference label of array shape {array.shape} does not match the target image's "
                                     f"{shape}: it must be the label of the same image, in its geometry")
    return array


def measure_filter_quality(dataset: "int | str", set_name: str, reference_folder: "str | Path",
                           variants: Sequence[str] | None = None, log=print) -> dict:
    """Score every filter variant of the pseudo-label set ``set_name`` of ``dataset`` against the label files
    ``<case><file ending>`` in ``reference_folder``; cases without a reference file are left out (and listed).

    Returns ``{"set", "dataset", "reference_folder", "scored_cases", "unscored_cases", "labels", "variants": {name:
    {"filter", "cases_kept", "ignored_fraction", "structures": {name: {"precision", "coverage", "labelled_voxels",
    "reference_voxels"}}, "class_mean_precision", "class_mean_coverage"}}}``. Raises :class:`PseudoLabelError`
    naming the folder or file at fault.
    """
    info = load_uda_info(dataset)
    folder = pseudo_label_set_folder(info, set_name)
    set_file = folder / SET_FILE
    if not set_file.is_file():
        raise PseudoLabelError(folder, "holds no pseudo-label set: make it with glua_pseudo_label -o "
                                       f"{set_name} --keep-probabilities")
    state = read_json(set_file, PseudoLabelError)
    identity = state["identity"]
    folds = identity["folds"]
    labels = {int(v): n for n, v in state["labels"].items() if n not in ("background", "ignore")}
    ranges = {int(k): tuple(v) for k, v in state["source_volume_ranges_ml"].items()}
    settings = filter_variants(PseudoLabelFilter.from_dict(identity["filter"]), variants)
    if not ranges and any(math.isfinite(s.volume_factor) for s in settings.values()):
        raise PseudoLabelError(set_file, "the set was made without the volume check, so it has no source volume "
                                         "ranges; choose variants without it (--variant)")

    reference_folder = Path(reference_folder)
    if not reference_folder.is_dir():
        raise PseudoLabelError(reference_folder, "is not a folder of reference label files")
    images = {case: files[0] for case, files in info.target_image_files("train").items()}
    scored = [c for c in sorted(images) if (reference_folder / f"{c}{info.file_ending}").is_file()]
    if not scored:
        raise PseudoLabelError(reference_folder, f"holds no label of the set's target training cases (expected e.g. "
                                                 f"{sorted(images)[0]}{info.file_ending})")
    missing = [f"fold_{f}/{c}.npz" for f in folds for c in scored if not (folder / f"fold_{f}" / f"{c}.npz").is_file()]
    if missing:  # a set completed without --keep-probabilities has removed them
        raise PseudoLabelError(folder, f"has no kept probabilities {', '.join(missing[:3])}"
                                       f"{' ...' if len(missing) > 3 else ''}: make the set under a new name with "
                                       "glua_pseudo_label -o NEW_NAME --keep-probabilities")

    totals = {name: {label: StructureCounts() for label in labels} for name in settings}
    kept = {name: 0 for name in settings}
    ignored = {name: 0 for name in settings}
    voxels = 0
    for i, case in enumerate(scored, 1):
        _, shape, voxel_ml = read_target_image(images[case])
        reference = _reference_array(reference_folder / f"{case}{info.file_ending}", shape)
        probabilities = list(fold_probabilities(folder, folds, case, shape))
        voxels += reference.size
        for name, variant in settings.items():
            pseudo, report = filter_pseudo_label(case, probabilities, labels, state["ignore_label"], voxel_ml, ranges,
                                                 variant)
            kept_map = pseudo if report.status == "kept" else None  # a dropped case labels nothing
            kept[name] += kept_map is not None
            ignored[name] += pseudo.size if kept_map is None else int((pseudo == state["ignore_label"]).sum())
            for label, counts in count_agreement(kept_map, reference, labels).items():
                totals[name][label].add(counts)
        log(f"  [{i}/{len(scored)}] {case} scored")

    result_variants = {}
    for name, variant in settings.items():
        structures = {labels[label]: {"precision": c.precision, "coverage": c.coverage,
                                      "labelled_voxels": c.labelled, "reference_voxels": c.reference}
                      for label, c in totals[name].items()}
        precisions = [s["precision"] for s in structures.values() if s["precision"] is not None]
        coverages = [s["coverage"] for s in structures.values() if s["coverage"] is not None]
        result_variants[name] = {
            "filter": variant.to_dict(), "cases_kept": kept[name], "ignored_fraction": ignored[name] / voxels,
            "structures": structures,
            # a structure the variant labels nowhere has no precision; it counts 0 so that labelling nothing
            # cannot look precise
            "class_mean_precision": float(np.mean(precisions + [0.0] * (len(structures) - len(precisions)))),
            "class_mean_coverage": float(np.mean(coverages)) if coverages else None}
    return {"set": set_name, "dataset": info.dataset_name, "reference_folder": str(reference_folder),
            "model": identity["model"].get("folder"), "scored_cases": scored,
            "unscored_cases": sorted(set(images) - set(scored)), "labels": [labels[k] for k in sorted(labels)],
            "variants": result_variants}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def quality_markdown(result: Mapping) -> str:
    """The result of :func:`measure_filter_quality` as a markdown table (one row per variant)."""
    names = result["labels"]
    lines = [f"# Filter quality of pseudo-label set {result['set']}", "",
             f"{result['dataset']}, {len(result['scored_cases'])} target training cases scored against "
             f"`{result['reference_folder']}`" + (f" ({len(result['unscored_cases'])} without a reference left out)"
                                                  if result["unscored_cases"] else "") + ".",
             "Precision: share of a structure's pseudo-labelled voxels the reference agrees with; coverage: share of "
             "the reference's voxels the pseudo-labels give the structure. Pooled over voxels.", "",
             "| filter | cases kept | ignored | precision (class mean) | coverage (class mean) | "
             + " | ".join(f"{n} precision / coverage" for n in names) + " |",
             "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " |"]
    n = len(result["scored_cases"])
    for name, v in result["variants"].items():
        per = " | ".join(f"{_percent(v['structures'][s]['precision'])} / {_percent(v['structures'][s]['coverage'])}"
                         for s in names)
        lines.append(f"| {name} | {v['cases_kept']}/{n} | {_percent(v['ignored_fraction'])} | "
                     f"{_percent(v['class_mean_precision'])} | {_percent(v['class_mean_coverage'])} | {per} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glua_pseudo_label_quality",
        description="Score a pseudo-label set, and the filter's variants re-applied to its kept probabilities, "
                    "against reference labels of the same target training cases (precision and coverage per "
                    "structure, cases kept, voxels ignored). The set must have been made with --keep-probabilities. "
                    "Writes filter_quality.json and filter_quality.md into the set's folder (or --out).")
    parser.add_argument("-d", "--dataset", required=True, help="adaptation dataset id or name")
    parser.add_argument("--set", required=True, dest="set_name", help="pseudo-label set name (glua_pseudo_label -o)")
    parser.add_argument("--reference", required=True,
                        help="folder of reference labels <case><file ending> of target training cases (on the "
                             "phantoms: the upper-bound dataset's labelsTr)")
    parser.add_argument("--variant", nargs="+", default=None, choices=list(FILTER_VARIANTS),
                        help="filter variants to score (default: all)")
    parser.add_argument("--out", default=None, help="output folder (default: the set's folder)")
    args = parser.parse_args(argv)
    try:
        result = measure_filter_quality(args.dataset, args.set_name, args.reference, args.variant)
        out = Path(args.out) if args.out else pseudo_label_set_folder(load_uda_info(args.dataset), args.set_name)
        markdown = quality_markdown(result)
        write_json(result, out / "filter_quality.json")
        with atomic_path(out / "filter_quality.md") as tmp:
            tmp.write_text(markdown)
    except (PseudoLabelError, UDADatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
