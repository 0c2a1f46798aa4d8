"""Where the translator's data and results live in an nnU-Net installation, and the one call that makes sure a
translator exists (:func:`ensure_translator`, used by ``glua_train_style`` and by the GLUA segmentation trainer).

* source data: ``$nnUNet_preprocessed/DatasetXXX_Name/{data_identifier}`` of the configuration (nnU-Net's own
  preprocessed training cases, read through nnU-Net's ``PlansManager``);
* target data: :func:`nnunet_glua.data.target_preprocessing.target_folder` (``split="train"``), created with
  ``preprocess_target`` when missing - imported lazily so the translator itself works without it;
* results: ``$nnUNet_results/DatasetXXX_Name/GLUATranslator__{plans_identifier}__{configuration}/``.

Several folds of ``nnUNetv2_train`` may start at once; :func:`ensure_translator` holds a lock file in the results
folder so exactly one process trains and the others wait and then load its result.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterable

import torch

from nnunet_glua.nnunet_io import nnunet_folder
from nnunet_glua.style.checkpoint import checkpoint_identity, load_checkpoint
from nnunet_glua.style.config import TranslatorConfig
from nnunet_glua.style.identity import TranslatorIdentity, identity_from_plans

if TYPE_CHECKING:
    from nnunet_glua.style.translate import Translator

__all__ = ["TRANSLATOR_FOLDER_PREFIX", "NnUNetContext", "load_context", "translator_folder_name",
           "translator_output_folder", "target_train_folder", "raw_test_identifiers", "target_test_identifiers",
           "train_for_dataset", "ensure_translator", "load_translator_for",
           "load_translator"]

TRANSLATOR_FOLDER_PREFIX = "GLUATranslator"


@dataclass
class NnUNetContext:
    """Everything about one dataset/plans/configuration that the translator's commands need."""

    dataset_name: str
    plans_identifier: str
    configuration: str
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    source_folder: Path
    identity: TranslatorIdentity
    default_slice_size: tuple[int, int]

    @property
    def plans_manager(self):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        return PlansManager(self.plans)

    @property
    def configuration_manager(self):
        return self.plans_manager.get_configuration(self.configuration)

    @property
    def results_folder(self) -> Path:
        return translator_output_folder(self.dataset_name, self.plans_identifier, self.configuration)


def load_context(dataset: str | int, configuration: str, plans_identifier: str = "nnUNetPlans") -> NnUNetContext:
    """Read plans and dataset.json of a planned dataset; clear errors for each missing piece."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_name = maybe_convert_to_dataset_name(dataset)
    pre = nnunet_folder("nnUNet_preprocessed") / dataset_name
    plans_file = pre / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(f"{plans_file}: plans not found. Run nnUNetv2_plan_and_preprocess -d {dataset} "
                                f"-c {configuration} first (or pass the right -p PLANS).")
    plans = json.loads(plans_file.read_text())
    dataset_json_file = pre / "dataset.json"
    dataset_json = json.loads(dataset_json_file.read_text()) if dataset_json_file.is_file() else {}
    pm = PlansManager(plans)
    if configuration not in pm.available_configurations:
        raise ValueError(f"{plans_file}: has no configuration {configuration!r}; available: "
                         f"{pm.available_configurations}")
    cm = pm.get_configuration(configuration)
    patch = [int(p) for p in cm.patch_size]
    return NnUNetContext(dataset_name=dataset_name, plans_identifier=plans_identifier, configuration=configuration,
                         plans=plans, dataset_json=dataset_json, source_folder=pre / cm.data_identifier,
                         identity=identity_from_plans(plans, configuration, plans_identifier),
                         default_slice_size=(patch[-2], patch[-1]))


def translator_folder_name(plans_identifier: str, configuration: str) -> str:
    return f"{TRANSLATOR_FOLDER_PREFIX}__{plans_identifier}__{configuration}"


def translator_output_folder(dataset_name: str, plans_identifier: str, configuration: str) -> Path:
    """``$nnUNet_results/DatasetXXX_Name/GLUATranslator__{plans}__{configuration}``."""
    return nnunet_folder("nnUNet_results") / dataset_name / translator_folder_name(plans_identifier, configuration)


def target_train_folder(ctx: NnUNetContext, create: bool = True, num_processes: int | None = None) -> Path:
    """The preprocessed unlabelled target training cases; preprocessed first if missing and ``create``."""
    try:
        from nnunet_glua.data.target_preprocessing import preprocess_target, target_folder
    except ImportError as e:
        raise ValueError(f"target preprocessing is unavailable ({e}); pass the preprocessed target case folder "
                         f"explicitly (--target-folder)") from e

    folder = Path(target_folder(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, split="train"))
    if not folder.is_dir() and create:
        folder = Path(preprocess_target(ctx.dataset_name, ctx.configuration, ctx.plans_identifier,
                                        include_test=False, num_processes=num_processes))
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: preprocessed target training cases not found; run glua_preprocess_target "
                                f"-d {ctx.dataset_name} -c {ctx.configuration}")
    return folder


def raw_test_identifiers(dataset_name: str) -> set[str]:
    """Case ids in ``$nnUNet_raw/<dataset>/imagesTs`` (the target test volumes), which the translator must never
    train on. Empty if the raw dataset or its imagesTs folder is absent."""
    from nnunetv2.utilities.utils import get_identifiers_from_splitted_dataset_folder

    raw = os.environ.get("nnUNet_raw")
    if not raw:
        return set()
    root = Path(raw) / dataset_name
    folder = root / "imagesTs"
    if not folder.is_dir() or not (root / "dataset.json").is_file():
        return set()
    file_ending = json.loads((root / "dataset.json").read_text()).get("file_ending", ".nii.gz")
    return {str(i) for i in get_identifiers_from_splitted_dataset_folder(str(folder), file_ending)}


def target_test_identifiers(dataset_name: str) -> set[str]:
    """Target test case ids: those the UDA dataset's ``dataset.json`` ("glua" block) lists, plus imagesTs ids."""
    ids = raw_test_identifiers(dataset_name)
    try:
        from nnunet_glua.data.uda_dataset_info import load_uda_info
        ids |= set(load_uda_info(dataset_name).target_test_cases)
    except (ImportError, ValueError, KeyError, OSError, RuntimeError):
        pass  # not a UDA dataset (plain folders, tests): imagesTs is all there is
    return ids


def train_for_dataset(ctx: NnUNetContext, config: TranslatorConfig | None = None, *,
                      device: str | torch.device = "cuda", seed: int = 0, resume: bool = False,
                      overwrite: bool = False, source_folder: str | os.PathLike | None = None,
                      target_folder: str | os.PathLike | None = None, progress: bool = True,
                      num_processes: int | None = None, lock_timeout_s: float = -1):
    """Train (or continue) the translator of ``ctx`` into its results folder, holding the folder's lock.

    ``config.slice_size`` None takes the configuration's in-plane patch size. ``overwrite`` deletes a previous run
    in the folder first; without it and without ``resume`` an existing run raises ``FileExistsError``. Target test
    case ids (``imagesTs``) are refused as training data. Returns the
    :class:`~nnunet_glua.style.trainer.TrainingResult`.
    """
    import shutil

    from filelock import FileLock

    from nnunet_glua.style.trainer import train_translator

    cfg = config or TranslatorConfig()
    if cfg.slice_size is None:
        cfg = cfg.with_overrides({"slice_size": list(ctx.default_slice_size)})
    out = ctx.results_folder
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".train.lock"), timeout=lock_timeout_s):
        if overwrite:
            for child in out.iterdir():
                if child.name == ".train.lock":
                    continue
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        src = Path(source_folder) if source_folder else ctx.source_folder
        tgt = Path(target_folder) if target_folder else target_train_folder(ctx, True, num_processes)
        return train_translator(src, tgt, config=cfg, out_dir=out, device=device, seed=seed, identity=ctx.identity,
                                resume=resume, forbidden_identifiers=target_test_identifiers(ctx.dataset_name),
                                progress=progress)


def ensure_translator(dataset: str | int, configuration: str, plans_identifier: str = "nnUNetPlans", *,
                      iterations: int | None = None, device: str | torch.device = "cuda", seed: int = 0,
                      config: TranslatorConfig | None = None, log: Callable[[str], None] | None = None,
                      source_folder: str | os.PathLike | None = None, target_folder: str | os.PathLike | None = None,
                      progress: bool = True, num_processes: int | None = None, lock_timeout_s: float = -1) -> Path:
    """Path of a finished translator (``checkpoint_final.pth``) for this dataset/plans/configuration, training
    one if needed - the call for the segmentation trainer.

    * A finished translator for the same identity is always reused, however long it was trained (extend one with
      ``glua_train_style --continue --iterations N``). One for *other* plans raises
      :class:`~nnunet_glua.style.identity.TranslatorMismatchError` (retrain with ``glua_train_style --overwrite``).
    * An unfinished run is continued with the configuration it was started with.
    * Otherwise a new one is trained with ``config`` (default :class:`TranslatorConfig`), ``iterations``
      overriding its iteration count.

    Concurrent callers (several folds started at once) wait for the first one's lock (``lock_timeout_s`` < 0:
    forever) and then reuse its result. ``log`` receives one-line status messages.
    """
    from filelock import FileLock

    from nnunet_glua.style.trainer import FINAL_CHECKPOINT, LATEST_CHECKPOINT

    say = log or (lambda msg: None)
    ctx = load_context(dataset, configuration, plans_identifier)
    out = ctx.results_folder
    out.mkdir(parents=True, exist_ok=True)
    final, latest = out / FINAL_CHECKPOINT, out / LATEST_CHECKPOINT
    with FileLock(str(out / ".train.lock"), timeout=lock_timeout_s):
        # checked under the lock: a concurrent trainer may just have finished
        if final.is_file():
            done = load_checkpoint(final)
            checkpoint_identity(done).check_matches(ctx.identity, str(final))
            say(f"style translator: using {final} ({int(done['iteration'])} iterations)")
            return final
        if latest.is_file():
            started = load_checkpoint(latest)
            checkpoint_identity(started).check_matches(ctx.identity, str(latest))
            config = TranslatorConfig.from_dict(started["config"])
            say(f"style translator: continuing the unfinished run in {out} at iteration {int(started['iteration'])}")
        elif iterations is not None:
            config = (config or TranslatorConfig()).with_overrides({"iterations": int(iterations)})
    say(f"style translator: training into {out} on {device} (progress: {out / 'training_log.jsonl'}, "
        f"previews: {out / 'previews'})")
    # FileLock is re-entrant per object only, so train_for_dataset takes the lock itself
    result = train_for_dataset(ctx, config, device=device, seed=seed, resume=True, source_folder=source_folder,
                               target_folder=target_folder, progress=progress, num_processes=num_processes,
                               lock_timeout_s=lock_timeout_s)
    say(f"style translator: finished {result.iterations} iterations, {result.final_checkpoint}")
    return result.final_checkpoint


def load_translator(dataset: str | int, configuration: str, plans_identifier: str = "nnUNetPlans",
                    device: str | torch.device = "cpu", checkpoint: str | os.PathLike | None = None, **kwargs):
    """Load the finished translator of this dataset/plans/configuration, checking it was trained for them."""
    from nnunet_glua.style.trainer import FINAL_CHECKPOINT
    from nnunet_glua.style.translate import Translator

    ctx = load_context(dataset, configuration, plans_identifier)
    path = Path(checkpoint) if checkpoint else ctx.results_folder / FINAL_CHECKPOINT
    return Translator.from_checkpoint(path, device=device, expected_identity=ctx.identity, **kwargs)


def load_translator_for(dataset: str | int, configuration: str, plans_identifier: str = "nnUNetPlans", *,
                        device: str | torch.device = "cpu", forbidden_cases: Iterable[str] = (),
                        checkpoint: str | os.PathLike | None = None, **kwargs) -> tuple[Translator, str]:
    """(:func:`load_translator` result, its checkpoint path), refusing a translator whose target training cases
    include any of ``forbidden_cases`` (the target test cases)."""
    translator = load_translator(dataset, configuration, plans_identifier, device=device, checkpoint=checkpoint,
                                 **kwargs)
    leaked = sorted(set(translator.target_identifiers) & set(forbidden_cases))
    if leaked:
        raise ValueError(f"{translator.source}: the translator was trained on target cases {leaked}, which are test "
                         f"cases. Retrain it without them: glua_train_style -d {dataset} -c {configuration} "
                         f"-p {plans_identifier} --overwrite")
    return translator, translator.source
