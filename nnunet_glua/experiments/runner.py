"""Train -> predict -> evaluate of one benchmark row and seed, resumable at every step.

* **train** (``nnUNetv2_train``): skipped when the fold's ``checkpoint_final.pth`` exists; an interrupted training
  continues from its ``checkpoint_latest.pth`` (``--c``); a row that starts from another gets that row's final
  checkpoint (``-pretrained_weights``);
* **predict** (``nnUNetv2_predict``) the adaptation dataset's target test images into a folder that appears only
  when complete; skipped when it is newer than the checkpoint and its time was recorded;
* **evaluate** against the adaptation dataset's test labels; the evaluation and the row's record (identity,
  timings, commands, checkpoint hashes) are written together, last, so a row with an evaluation is finished.

A self-training row whose pseudo-label set keeps no case (its start model's predictions were all dropped by the
filter), or a row that starts from a row that could not be trained, is **not trained**: the benchmark writes why
into the row's ``not_trained.json``, reports the row as such and goes on with the other rows. Running the benchmark
again tries that row again (the pseudo-labelling resumes, so this costs little when nothing changed).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time
from pathlib import Path
from typing import Any

from nnunet_glua.data.pseudo_labelled_target import PSEUDO_LABELS_ENV
from nnunet_glua.data.pseudo_labels import PSEUDO_LABEL_FOLDER, SET_FILE
from nnunet_glua.evaluation.evaluate import EvaluationResult, evaluate_dataset, write_evaluation
from nnunet_glua.experiments.commands import Command, Executor
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.experiments.provenance import project_commit, sha256_prefix
from nnunet_glua.experiments.rows import Row
from nnunet_glua.experiments.settings import PROGRESS_RECORD, ROW_RECORD, ExperimentSettings
from nnunet_glua.io_utils import staged_directory
from nnunet_glua.json_io import read_json, write_json
from nnunet_glua.paths import EXT_TRAINER_ENV
from nnunet_glua.style.integration import translator_folder_name

__all__ = ["SEED_ENV", "read_record", "stored_identity", "check_existing_rows", "check_evaluated_cases",
           "RowNotTrainable", "not_trained_reason", "RowRunner"]

SEED_ENV = "GLUA_SEED"  # the seed variable that the trainers of nnunet_glua.training read


def read_record(path: Path) -> dict[str, Any]:
    """A row's JSON record (row.json, timing.json); the error says to remove the row's folder to run it again."""
    return read_json(path, BenchmarkError, advice=f"remove {path.parent} to run that row again")


def stored_identity(record: dict[str, Any]) -> Any:
    """The settings a row's record was made with (compare with :meth:`ExperimentSettings.identity`)."""
    identity = record.get("identity")
    if isinstance(identity, dict):
        # rows recorded before mirroring was a setting were predicted with nnU-Net's default, mirroring on
        identity = {**identity, "test_time_mirroring": identity.get("test_time_mirroring", True)}
    return identity


def check_existing_rows(settings: ExperimentSettings) -> None:
    """Refuse to mix results of other settings into this benchmark's folder (checked before any work)."""
    for seed in settings.seeds:
        for row in settings.rows:
            record = settings.evaluation_folder(seed, row) / ROW_RECORD
            if record.is_file():
                stored = stored_identity(read_record(record))
                expected = settings.identity(seed, row)
                if stored != expected:
                    raise BenchmarkError(
                        record, f"was produced with other settings ({stored}) than this run ({expected}); "
                                "use another output folder (--out) or remove that row's folder")


def check_evaluated_cases(settings: ExperimentSettings, result: EvaluationResult, where: Path) -> None:
    """Every row must be scored on exactly the benchmark's test cases and reference folder; :class:`BenchmarkError`
    naming ``where`` (the evaluation folder) otherwise."""
    cases = sorted(c.case for c in result.cases)
    if cases != list(settings.test_cases):
        raise BenchmarkError(where, f"evaluated cases {cases} differ from the benchmark's test cases "
                                    f"{list(settings.test_cases)}; remove this folder to evaluate it again")
    reference = result.metadata.get("reference_folder")
    if reference is not None and Path(reference).resolve() != settings.adaptation.labels_ts.resolve():
        raise BenchmarkError(where, f"was evaluated against {reference}, not {settings.adaptation.labels_ts}; "
                                    "remove this folder to evaluate it again")


class RowNotTrainable(Exception):
    """``row`` cannot be trained for ``reason``, a fact about the data or an earlier row to report (not an error
    to fix before the other rows can run)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def not_trained_reason(settings: ExperimentSettings, seed: int, row: Row) -> str | None:
    """Why ``row`` of ``seed`` could not be trained with these settings, from its record; ``None`` when it has no
    such record (or one made with other settings)."""
    path = settings.not_trained_record(seed, row)
    if not path.is_file():
        return None
    record = read_record(path)
    return record.get("reason") if stored_identity(record) == settings.identity(seed, row) else None


class RowRunner:
    """Runs rows of one benchmark through an :class:`Executor` (which prints, records and runs the commands)."""

    def __init__(self, settings: ExperimentSettings, executor: Executor):
        self.s = settings
        self.executor = executor
        self.n_done = 0

    def row_env(self, seed: int, row: Row) -> dict[str, str]:
        """Environment overrides of ``row``'s nnU-Net commands: its results root, the seed, the trainer folder and,
        for a self-training row, its pseudo-label set."""
        env = {
            "nnUNet_results": str(self.s.results_root(seed, row)),
            SEED_ENV: str(seed),
            EXT_TRAINER_ENV: os.environ[EXT_TRAINER_ENV],
        }
        if row.pseudo_labels:
            env[PSEUDO_LABELS_ENV] = self.s.pseudo_label_set(seed, row)
        return env

    def run(self, seed: int, row: Row) -> None:
        """Train, predict and evaluate ``row`` for ``seed``, skipping what is done; in a dry run only print."""
        s = self.s
        self.n_done += 1
        head = f"[{self.n_done}/{len(s.seeds) * len(s.rows)}] seed {seed} · {row.label} ({s.trainer(row)})"
        evaluation = s.evaluation_folder(seed, row)
        if s.is_finished(seed, row):
            print(f"{head}: finished earlier, kept ({evaluation})", flush=True)
            return
        print(f"\n{head}", flush=True)
        progress_file = s.row_folder(seed, row) / PROGRESS_RECORD
        progress = read_record(progress_file) if progress_file.is_file() else {}
        commands: list[Command] = []
        try:
            self._train(seed, row, progress, commands)
        except RowNotTrainable as e:
            self._record_not_trained(seed, row, e.reason, commands)
            print(f"{head}: not trained: {e.reason}", flush=True)
            return
        self._predict(seed, row, progress, commands)
        predictions = s.prediction_folder(seed, row)
        if s.dry_run:
            self.executor.note(f"evaluate {predictions} against {s.adaptation.labels_ts} -> {evaluation}")
            return
        mean, total = self._evaluate(seed, row, progress, commands)
        print(f"{head}: class-mean Dice {'n/a' if mean is None else f'{mean:.3f}'}, "
              f"wall time {'n/a' if total is None else f'{total:.0f} s'}", flush=True)

    def _record_not_trained(self, seed: int, row: Row, reason: str, commands: list[Command]) -> None:
        if self.s.dry_run:
            return
        write_json({"identity": self.s.identity(seed, row), "label": row.label, "reason": reason,
                    "commands": [c.shell() for c in commands], "project": project_commit(),
                    "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
                   self.s.not_trained_record(seed, row))

    def _save_progress(self, seed: int, row: Row, progress: dict[str, Any]) -> None:
        write_json(progress, self.s.row_folder(seed, row) / PROGRESS_RECORD)

    def _train(self, seed: int, row: Row, progress: dict[str, Any], commands: list[Command]) -> None:
        s = self.s
        fold_folder = s.fold_folder(seed, row)
        checkpoint = fold_folder / "checkpoint_final.pth"
        if checkpoint.is_file():
            self.executor.note(f"trained earlier, not retrained: {checkpoint}")
            return
        start_row = None if row.starts_from is None else s.row(row.starts_from)
        if start_row is not None and not s.dry_run:
            reason = not_trained_reason(s, seed, start_row)
            if reason is not None and not s.start_checkpoint(seed, row).is_file():
                raise RowNotTrainable(f"starts from row {start_row.key!r}, which was not trained ({reason})")
        if row.pseudo_labels:
            self._pseudo_label(seed, row, commands)
            if not s.dry_run and not self._kept_pseudo_labelled_cases(seed, row):
                raise RowNotTrainable(f"pseudo-label set {s.pseudo_label_set(seed, row)} keeps no case: "
                                      f"glua_pseudo_label's filter dropped every prediction of row "
                                      f"{row.starts_from!r} (its report.md says why)")
        self._share_translator(seed, row)
        argv = [self.executor.program("nnUNetv2_train"), str(s.trained_dataset(row).id), s.configuration, s.fold,
                "-tr", s.trainer(row), "-p", s.plans, "-device", s.device]
        start_checkpoint = s.start_checkpoint(seed, row)
        if (fold_folder / "checkpoint_latest.pth").is_file():
            argv.append("--c")  # continue the interrupted training (its weights replace the start weights)
        elif start_checkpoint is not None:
            if not s.dry_run and not start_checkpoint.is_file():
                raise BenchmarkError(start_checkpoint, f"is missing, but row {row.key!r} starts from it; run row "
                                                       f"{row.starts_from!r} of seed {seed} first")
            argv += ["-pretrained_weights", str(start_checkpoint)]
        commands.append(Command(tuple(argv), self.row_env(seed, row)))
        start = time.perf_counter()
        self.executor.execute(commands[-1])
        if not s.dry_run:
            if not checkpoint.is_file():
                raise BenchmarkError(checkpoint, "training finished but left no final checkpoint")
            progress["train_s"] = round(time.perf_counter() - start, 1)
            self._save_progress(seed, row, progress)

    def _pseudo_label(self, seed: int, row: Row, commands: list[Command]) -> None:
        """``glua_pseudo_label`` with the start row's model (this benchmark's fold) into the row's set; resumable,
        and made afresh (``--overwrite``) when the start model changed since the set was made."""
        s = self.s
        start = s.row(row.starts_from)
        argv = [self.executor.program("glua_pseudo_label"), "-d", str(s.adaptation.id), "-c", s.configuration,
                "-tr", s.trainer(start), "-p", s.plans, "-f", s.fold, "-o", s.pseudo_label_set(seed, row),
                "-device", s.device, "-np", str(s.num_processes), "--overwrite", *row.pseudo_label_options]
        if not s.test_time_mirroring:
            argv.append("--disable-tta")
        commands.append(Command(tuple(argv), self.row_env(seed, start)))
        self.executor.execute(commands[-1])

    def _kept_pseudo_labelled_cases(self, seed: int, row: Row) -> list[str]:
        """The cases that ``row``'s pseudo-label set keeps (read from its set file)."""
        set_file = self.s.adaptation.folder / PSEUDO_LABEL_FOLDER / self.s.pseudo_label_set(seed, row) / SET_FILE
        state = read_json(set_file, BenchmarkError, advice="run the same glua_benchmark command again")
        return sorted(case for case, entry in state.get("cases", {}).items() if entry.get("status") == "kept")

    def _share_translator(self, seed: int, row: Row) -> None:
        """A row started from a GLUA row uses that row's style translator: linked into its own results root (which
        would otherwise train a second one)."""
        s = self.s
        if row.starts_from is None or s.dry_run:
            return
        name = translator_folder_name(s.plans, s.configuration)
        dataset = s.trained_dataset(row).name
        source = s.results_root(seed, s.row(row.starts_from)) / dataset / name
        link = s.results_root(seed, row) / dataset / name
        if (source / "checkpoint_final.pth").is_file() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve(), target_is_directory=True)
            self.executor.note(f"translator of row {row.starts_from!r} shared: {link} -> {source}")

    def _predict(self, seed: int, row: Row, progress: dict[str, Any], commands: list[Command]) -> None:
        s = self.s
        predictions = s.prediction_folder(seed, row)
        checkpoint = s.fold_folder(seed, row) / "checkpoint_final.pth"
        fresh = (predictions.is_dir() and checkpoint.is_file()
                 and predictions.stat().st_mtime >= checkpoint.stat().st_mtime)
        if fresh and "predict_s" in progress:
            self.executor.note(f"predicted earlier: {predictions}")
            return
        workers = "1" if s.device == "cpu" else "3"
        start = time.perf_counter()
        with (contextlib.nullcontext(predictions) if s.dry_run
              else staged_directory(predictions, overwrite=True)) as target:
            argv = [self.executor.program("nnUNetv2_predict"), "-i", str(s.adaptation.images_ts), "-o", str(target),
                    "-d", str(s.trained_dataset(row).id), "-c", s.configuration, "-tr", s.trainer(row), "-p", s.plans,
                    "-f", s.fold, "-device", s.device, "-npp", workers, "-nps", workers]
            if not s.test_time_mirroring:
                argv.append("--disable_tta")
            commands.append(Command(tuple(argv), self.row_env(seed, row)))
            self.executor.execute(commands[-1])
        if not s.dry_run:
            progress["predict_s"] = round(time.perf_counter() - start, 1)
            self._save_progress(seed, row, progress)

    def _evaluate(self, seed: int, row: Row, progress: dict[str, Any],
                  commands: list[Command]) -> tuple[float | None, float | None]:
        """Evaluate and write the evaluation with the row's record; returns the class-mean Dice and the row's total
        wall time (``None`` when undefined, or when its training time is unknown)."""
        s = self.s
        evaluation, predictions = s.evaluation_folder(seed, row), s.prediction_folder(seed, row)
        checkpoint = s.fold_folder(seed, row) / "checkpoint_final.pth"
        start_checkpoint = s.start_checkpoint(seed, row)
        start = time.perf_counter()
        result = evaluate_dataset(s.adaptation.folder, predictions, num_processes=s.num_processes, run_name=row.label)
        check_evaluated_cases(s, result, evaluation)
        times = {"train_s": progress.get("train_s"), "predict_s": progress.get("predict_s"),
                 "evaluate_s": round(time.perf_counter() - start, 1)}
        total = None if times["train_s"] is None else round(sum(times.values()), 1)
        record = {
            "identity": s.identity(seed, row),
            "label": row.label,
            "description": row.description,
            "device": s.device,
            "results_root": str(s.results_root(seed, row)),
            "starts_from": None if start_checkpoint is None else {
                "row": row.starts_from, "checkpoint": str(start_checkpoint),
                "checkpoint_sha256": sha256_prefix(start_checkpoint)},
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_prefix(checkpoint),
            "prediction_folder": str(predictions),
            "wall_time_s": {**times, "total_s": total},
            "trained_by_this_benchmark": times["train_s"] is not None,
            "commands": [c.shell() for c in commands],
            "project": project_commit(),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        with staged_directory(evaluation, overwrite=True) as tmp:
            write_evaluation(result, tmp)
            write_json(record, tmp / ROW_RECORD)
        s.not_trained_record(seed, row).unlink(missing_ok=True)  # an earlier try's record no longer holds
        return result.summary.class_mean["dice"].mean, total
