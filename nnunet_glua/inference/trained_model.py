"""The trained model to predict with and the conversion its training data went through.

:func:`find_trained_model` locates ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}`` and
checks the requested folds (:class:`TrainedModel`); :func:`conversion_settings` reads from the model's copy of
``dataset.json`` how the training data were converted (target modality, canonical orientation, intensity
settings), i.e. the transform new scans must go through. Problems raise
:class:`~nnunet_glua.inference.errors.PredictionError` naming the folder or file and what exists instead.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nnunet_glua.conversion.intensity import MODALITIES, IntensitySettings
from nnunet_glua.conversion.orientation import CANONICAL_ORIENTATION
from nnunet_glua.data.uda_dataset_info import (
    UDADatasetError,
    parse_glua_block,
    resolve_dataset_name,
)
from nnunet_glua.inference.errors import PredictionError
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import RESULTS, load_plans, nnunet_folder

__all__ = ["ConversionSettings", "TrainedModel", "conversion_settings", "find_trained_model", "trained_folds"]


@dataclass(frozen=True)
class TrainedModel:
    """A trained nnU-Net model folder and the folds / checkpoint to predict with.

    ``folder`` is ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}``; ``folds`` are fold
    numbers or ``"all"``, each with ``fold_{f}/{checkpoint}`` present; ``dataset_json`` is the folder's copy.
    """

    dataset_name: str
    folder: Path
    trainer: str
    plans: str
    configuration: str
    folds: tuple[Any, ...]
    checkpoint: str
    dataset_json: dict = field(repr=False)

    def checkpoint_path(self, fold: Any) -> Path:
        return self.folder / f"fold_{fold}" / self.checkpoint

    def key(self) -> dict[str, Any]:
        """JSON-ready identity of the model: any change (e.g. a retrained fold) makes its predictions stale."""
        stats = {}
        for fold in self.folds:
            st = self.checkpoint_path(fold).stat()
            stats[str(fold)] = [st.st_size, st.st_mtime_ns]
        return {
            "folder": str(self.folder.resolve()),
            "configuration": self.configuration,
            "folds": [str(f) for f in self.folds],
            "checkpoint": self.checkpoint,
            "checkpoint_files": stats,
        }


def _fold_value(fold: Any) -> Any:
    text = str(fold).strip()
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise PredictionError(None, f"fold {fold!r} is neither a fold number nor 'all'") from None


def trained_folds(model_folder: str | os.PathLike, checkpoint: str = "checkpoint_final.pth") -> list[Any]:
    """Folds of ``model_folder`` whose ``fold_*`` folder holds ``checkpoint``: numbers sorted, then ``"all"``."""
    found: list[Any] = []
    for sub in Path(model_folder).glob("fold_*"):
        if not (sub / checkpoint).is_file():
            continue
        suffix = sub.name[len("fold_"):]
        if suffix == "all":
            found.append("all")
        elif suffix.isdigit():
            found.append(int(suffix))
    return sorted(found, key=lambda f: (isinstance(f, str), f if isinstance(f, int) else 0))


def _configuration_chain(plans: Mapping[str, Any], configuration: str) -> dict[str, Any]:
    """The entries of ``configuration`` with those it inherits (``inherits_from``) filled in."""
    configurations = plans["configurations"]
    merged: dict[str, Any] = {}
    name, seen = configuration, set()
    while name is not None and name not in seen:
        seen.add(name)
        entry = configurations.get(name, {})
        merged = {**entry, **merged}
        name = entry.get("inherits_from")
    return merged


def find_trained_model(
    dataset: int | str,
    configuration: str = "3d_fullres",
    trainer: str = "GLUATrainer",
    plans: str = "nnUNetPlans",
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "checkpoint_final.pth",
) -> TrainedModel:
    """Locate the model folder of ``dataset`` in ``$nnUNet_results`` and check the requested folds.

    ``folds=None`` takes every fold that has ``checkpoint``. Raises :class:`PredictionError` for an unknown dataset,
    a missing model folder (listing the dataset's trained models), a fold without the checkpoint (listing the
    trained folds), a cascade configuration, or a model with more than one input channel.
    """
    try:
        name = resolve_dataset_name(dataset)
    except UDADatasetError as err:
        raise PredictionError(None, err.problem) from None
    dataset_dir = nnunet_folder(RESULTS, PredictionError) / name
    folder = dataset_dir / f"{trainer}__{plans}__{configuration}"
    if not folder.is_dir():
        available = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir() and p.name.count("__") == 2) \
            if dataset_dir.is_dir() else []
        raise PredictionError(
            folder,
            f"no trained model {trainer}__{plans}__{configuration} for {name}. Trained models of this dataset: "
            f"{', '.join(available) if available else 'none'}. Choose one with -tr TRAINER -p PLANS -c CONFIGURATION, "
            f"or train it first (nnUNetv2_train {name} {configuration} FOLD -tr {trainer}).",
        )
    for required in ("dataset.json", "plans.json"):
        if not (folder / required).is_file():
            raise PredictionError(folder, f"not a complete nnU-Net model folder: {required} is missing")
    available_folds = trained_folds(folder, checkpoint)
    if folds is None:
        if not available_folds:
            raise PredictionError(
                folder,
                f"no fold_* folder holds {checkpoint}: no fold has finished training. Finish training, or pick "
                f"another checkpoint with -chk (e.g. checkpoint_best.pth or checkpoint_latest.pth).",
            )
        chosen = tuple(f for f in available_folds if f != "all") or ("all",)
    else:
        chosen = tuple(dict.fromkeys(_fold_value(f) for f in folds))
        if not chosen:
            raise PredictionError(None, "no fold requested; pass -f with at least one fold")
        missing = [f for f in chosen if f not in available_folds]
        if missing:
            raise PredictionError(
                folder,
                f"fold(s) {', '.join(str(f) for f in missing)} have no {checkpoint}. "
                f"Trained folds (with {checkpoint}): "
                f"{', '.join(str(f) for f in available_folds) if available_folds else 'none'}. Pass those with -f, "
                f"leave -f out to use all trained folds, or finish training the missing folds.",
            )
    plans_json = load_plans(folder / "plans.json", plans, configuration, PredictionError)
    dataset_json = read_json(folder / "dataset.json", PredictionError)
    config = _configuration_chain(plans_json, configuration)
    if config.get("previous_stage"):
        raise PredictionError(
            folder,
            f"configuration {configuration} is a cascade stage (it needs the predictions of "
            f"{config['previous_stage']}); this command predicts single-stage configurations such as 3d_fullres",
        )
    channels = dataset_json.get("channel_names", dataset_json.get("modality", {}))
    if len(channels) != 1:
        raise PredictionError(
            folder / "dataset.json",
            f"the model takes {len(channels)} input channels ({channels}); this command feeds one scan per case and "
            "supports single-channel models only (the GLUA converters write one channel)",
        )
    return TrainedModel(name, folder, trainer, plans, configuration, chosen, checkpoint, dataset_json)


@dataclass(frozen=True)
class ConversionSettings:
    """How the model's training data were converted: the transform new scans must go through.

    ``source`` is the dataset.json the settings came from; ``warnings`` list settings that were not recorded
    there and fell back to the converters' defaults.
    """

    target_modality: str
    canonical_orientation: str
    intensity: IntensitySettings
    source: Path
    warnings: tuple[str, ...] = ()


def conversion_settings(model: TrainedModel) -> ConversionSettings:
    """Read target modality, canonical orientation and intensity settings from the model's ``dataset.json``.

    The model folder's copy is used (not ``$nnUNet_raw``): it describes the data this model was trained on, and it
    is present on machines that hold only ``nnUNet_results``. Settings missing from the block fall back to the
    converters' defaults with a warning; malformed ones raise :class:`PredictionError`.
    """
    json_path = model.folder / "dataset.json"
    try:
        block = parse_glua_block(model.dataset_json, json_path)
    except UDADatasetError as err:
        raise PredictionError(err.path, err.problem) from None
    warnings: list[str] = []
    modality = str(block["target_modality"]).upper()
    if modality not in MODALITIES:
        raise PredictionError(json_path, f"glua.target_modality {block['target_modality']!r} is not one of "
                                         f"{MODALITIES}")
    orientation = block.get("canonical_orientation")
    if orientation is None:
        orientation = CANONICAL_ORIENTATION
        warnings.append(f"dataset.json records no glua.canonical_orientation; using the converters' "
                        f"{CANONICAL_ORIENTATION}")
    if not _valid_orientation_code(str(orientation)):
        raise PredictionError(json_path, f"glua.canonical_orientation {orientation!r} is not an orientation code "
                                         "such as 'LPS'")
    recorded = block.get("intensity")
    names = [f.name for f in fields(IntensitySettings)]
    if recorded is None:
        intensity = IntensitySettings()
        warnings.append("dataset.json records no glua.intensity settings; harmonising with the converters' "
                        f"defaults {intensity.to_dict()}")
    else:
        missing = [n for n in names if n not in recorded]
        if missing:
            raise PredictionError(json_path, f"glua.intensity lacks {missing}; re-run the dataset converter")
        try:
            intensity = IntensitySettings(**{n: float(recorded[n]) for n in names})
        except (TypeError, ValueError) as err:
            raise PredictionError(json_path, f"glua.intensity is invalid: {err}") from None
    return ConversionSettings(modality, str(orientation), intensity, json_path, tuple(warnings))


def _valid_orientation_code(code: str) -> bool:
    pairs = ("LR", "PA", "SI")
    return len(code) == 3 and all(sum(c in pair for c in code) == 1 for pair in pairs)
