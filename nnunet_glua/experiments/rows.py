"""The rows of an adaptation benchmark, as a table.

A row names a trainer (without its schedule suffix), the dataset it trains on and the row whose final checkpoint
starts it. Rows that start from another row train the second-stage schedule; rows trained from scratch train the
first-stage one. Adding a row (a baseline such as nnU-Net's ``nnUNetTrainerDA5`` continued from source-only, or a
self-training stage started from GLUA) is one more :class:`Row` in :data:`ROWS`: the runner derives its results
root, start checkpoint and schedule from these fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nnunet_glua.experiments.errors import BenchmarkError

__all__ = ["Row", "ROWS", "START_ROW", "LOWER_ROW", "ADAPTED_ROW", "UPPER_ROW", "row_by_key", "select_rows",
           "normalise_schedule", "trainer_name", "results_folder_name"]


@dataclass(frozen=True)
class Row:
    """One row of the benchmark table.

    ``key`` names it on the command line and is its folder name; ``label`` is its name in the tables;
    ``trainer`` is the trainer class without schedule suffix; ``upper_bound`` rows train on the upper-bound
    dataset instead of the adaptation dataset; ``ablation`` rows are left out by ``ablations=False``;
    ``starts_from`` is the key of the row whose final checkpoint (same seed and fold) initialises this one, which
    then trains the second-stage schedule (``None``: from scratch, first-stage schedule); ``pseudo_labels`` rows
    self-train: before training, the start row's model pseudo-labels the unlabelled target training images
    (``glua_pseudo_label``, with the filter options ``pseudo_label_options``) and the row trains on that set;
    ``on_request`` rows run only when ``--rows`` names them (the self-training rows: each adds a stage to the rows it
    starts from).
    """

    key: str
    label: str
    trainer: str
    description: str
    upper_bound: bool = False
    ablation: bool = False
    starts_from: str | None = None
    pseudo_labels: bool = False
    pseudo_label_options: tuple[str, ...] = ()
    on_request: bool = False

    @property
    def first_stage(self) -> bool:
        """Whether the row trains from scratch (with the first-stage schedule)."""
        return self.starts_from is None


START_ROW = "source-only"
LOWER_ROW = "source-only, continued"
ADAPTED_ROW = "GLUA"
UPPER_ROW = "target-supervised"
_START = "source-only"  # key of the first-stage row every other row starts from
_ST = ("self-training: the labelled source batch plus the target training images pseudo-labelled by the "
       "{start} model (filtered, untrusted voxels ignored), half of the samples each")
# run order: source-only first (every other row starts from it), then the headline rows, so an interrupted
# benchmark has them before the ablations
ROWS: tuple[Row, ...] = (
    Row(_START, START_ROW, "SourceOnlyTrainer",
        "plain nnU-Net trained from scratch on the labelled source domain; every other row starts from it"),
    Row("source-only-continued", LOWER_ROW, "SourceOnlyTrainer",
        "source-only trained on for the second stage: as many steps as GLUA, without adaptation (lower bound)",
        starts_from=_START),
    Row("glua", ADAPTED_ROW, "GLUATrainer",
        "style translation + structure-wise intensity shift + locally masked feature alignment", starts_from=_START),
    Row("target-supervised", UPPER_ROW, "SourceOnlyTrainer",
        "source-only fine-tuned on labelled target scans (upper bound), same plans", upper_bound=True,
        starts_from=_START),
    Row("glua+st", "GLUA + self-training", "GLUATrainer_SelfTrain", _ST.format(start="GLUA") + "; GLUA's batch",
        starts_from="glua", pseudo_labels=True, on_request=True),
    Row("source-only+st", "source-only + self-training", "SourceOnlyTrainer_SelfTrain",
        _ST.format(start="source-only continued") + "; no adaptation (the baseline)",
        starts_from="source-only-continued", pseudo_labels=True, on_request=True),
    Row("glua+st2", "GLUA + self-training, round 2", "GLUATrainer_SelfTrain",
        _ST.format(start="GLUA + self-training") + " (a second round)", starts_from="glua+st", pseudo_labels=True,
        on_request=True),
    Row("source-only+st2", "source-only + self-training, round 2", "SourceOnlyTrainer_SelfTrain",
        _ST.format(start="source-only + self-training") + " (a second round)", starts_from="source-only+st",
        pseudo_labels=True, on_request=True),
    Row("glua+st-steered", "GLUA + self-training, steered shift", "GLUATrainer_SelfTrainSteered",
        _ST.format(start="GLUA") + "; the structure shift steered towards the pseudo-labels' target intensities",
        starts_from="glua", pseudo_labels=True, on_request=True),
    Row("glua+st-balanced", "GLUA + self-training, per-structure threshold", "GLUATrainer_SelfTrain",
        _ST.format(start="GLUA") + "; each structure keeps at least its most confident half (--keep-most-confident "
        "0.5)", starts_from="glua", pseudo_labels=True, pseudo_label_options=("--keep-most-confident", "0.5"),
        on_request=True),
    Row("glua+st-confidence-0.6", "GLUA + self-training, confidence 0.6", "GLUATrainer_SelfTrain",
        _ST.format(start="GLUA") + "; voxels kept from an ensemble probability of 0.6 instead of 0.8 (more of each "
        "structure labelled, less of it right: --min-confidence 0.6)", starts_from="glua", pseudo_labels=True,
        pseudo_label_options=("--min-confidence", "0.6"), on_request=True),
    Row("nnunet-da5-continued", "nnU-Net DA5, continued", "SourceOnlyTrainer_DA5",
        "source-only trained on with nnU-Net's heavy augmentation (nnUNetTrainerDA5's pipeline), no adaptation: the "
        "first baseline an nnU-Net user tries", starts_from=_START, on_request=True),
    Row("class-aug-continued", "class-level intensity augmentation, continued", "SourceOnlyTrainer_ClassAug",
        "source-only trained on with a random intensity curve, scale and shift per class region of the source labels "
        "(location-scale style), no adaptation", starts_from=_START, on_request=True),
    Row("translation-only", "translation only", "GLUATrainer_StyleOnly_NoStructureShift",
        "plain nnU-Net on translated source copies: no structure shift, no feature alignment", starts_from=_START,
        on_request=True),
    Row("glua-no-local-mask", "GLUA: no local mask", "GLUATrainer_NoLocalMask",
        "feature alignment at every valid location (global feature alignment)", ablation=True, starts_from=_START),
    Row("glua-style-only", "GLUA: style only", "GLUATrainer_StyleOnly",
        "style translation without feature alignment", ablation=True, starts_from=_START),
    Row("glua-feature-only", "GLUA: feature only", "GLUATrainer_FeatureOnly",
        "locally masked feature alignment without style translation", ablation=True, starts_from=_START),
    Row("glua-no-structure-shift", "GLUA: no structure shift", "GLUATrainer_NoStructureShift",
        "the published method alone: translation + local feature alignment, without the structure-wise "
        "intensity shift", ablation=True, starts_from=_START),
    Row("source-only-structure-shift", "source-only + structure shift", "SourceOnlyTrainer_StructureShift",
        "plain nnU-Net with the structure-wise intensity shift, no adaptation", ablation=True, starts_from=_START),
    Row("glua-late-translation", "GLUA: translation after augmentation", "GLUATrainer_LateTranslation",
        "translation and structure shift applied to the augmented batch in the training step (the earlier order)",
        ablation=True, starts_from=_START),
)


def _check_table(rows: Sequence[Row]) -> dict[str, Row]:
    """``{key: row}``; a row must start from a row listed before it, since rows run in table order."""
    by_key: dict[str, Row] = {}
    for row in rows:
        if row.key in by_key or any(r.label == row.label for r in by_key.values()):
            raise ValueError(f"row key or label {row.key!r}/{row.label!r} is used twice in the row table")
        if row.starts_from is not None and row.starts_from not in by_key:
            raise ValueError(f"row {row.key!r} starts from {row.starts_from!r}, which is not listed before it")
        by_key[row.key] = row
    return by_key


_ROWS_BY_KEY = _check_table(ROWS)


def results_folder_name(row: Row) -> str:
    """The ``nnUNet_results`` folder (within a seed's folder) that ``row`` trains into.

    First-stage rows share ``nnUNet_results``; a row started from another trains into
    ``nnUNet_results_from_<start row>``, so that both stages may use the same trainer name. nnU-Net names a model
    folder by trainer, plans and configuration only, so a row with the same trainer, start row and dataset as a row
    listed before it in :data:`ROWS` (a self-training row with other filter options) gets
    ``nnUNet_results_from_<start row>__<row key>``: in a shared folder it would find and report the other row's
    model instead of training its own.
    """
    if row.starts_from is None:
        return "nnUNet_results"
    name = f"nnUNet_results_from_{row.starts_from}"
    for other in ROWS:
        if other.key == row.key:
            break
        if (other.starts_from, other.trainer, other.upper_bound) == (row.starts_from, row.trainer, row.upper_bound):
            return f"{name}__{row.key}"
    return name


def row_by_key(key: str) -> Row:
    """The row of :data:`ROWS` with this key; :class:`BenchmarkError` if there is none."""
    try:
        return _ROWS_BY_KEY[key]
    except KeyError:
        raise BenchmarkError(None, f"unknown row {key!r}; choose from {', '.join(r.key for r in ROWS)}") from None


def select_rows(rows: Sequence[str] | None = None, ablations: bool = True) -> list[Row]:
    """The rows to run, in table order.

    ``rows`` lists row keys (or labels; case-insensitive); ``None`` means the headline rows plus, with
    ``ablations``, the ablation rows (never the ``on_request`` rows). An explicit ``rows`` list wins over
    ``ablations``. A row that starts from another brings that row along, and that one its own start row (they must
    be trained first).
    """
    if rows is None:
        return [row for row in ROWS if (ablations or not row.ablation) and not row.on_request]
    lookup = {row.key.lower(): row for row in ROWS} | {row.label.lower(): row for row in ROWS}
    chosen: set[str] = set()
    for name in rows:
        row = lookup.get(str(name).strip().lower())
        if row is None:
            raise BenchmarkError(None, f"unknown row {name!r}; choose from {', '.join(r.key for r in ROWS)}")
        while row is not None and row.key not in chosen:
            chosen.add(row.key)
            row = None if row.starts_from is None else _ROWS_BY_KEY[row.starts_from]
    if not chosen:
        raise BenchmarkError(None, "no rows selected")
    return [row for row in ROWS if row.key in chosen]


def normalise_schedule(schedule: str | None) -> str:
    """``"Short"``/``"_Short"`` -> ``"_Short"``; ``""``/``None``/``"default"`` -> ``""`` (nnU-Net's schedule)."""
    schedule = (schedule or "").strip()
    if schedule.lower() in ("", "default", "none"):
        return ""
    return schedule if schedule.startswith("_") else "_" + schedule


def trainer_name(row: Row, schedule: str) -> str:
    """Trainer class name of ``row`` under ``schedule`` (e.g. ``GLUATrainer_NoLocalMask_Short``)."""
    return row.trainer + normalise_schedule(schedule)
