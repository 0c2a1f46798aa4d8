"""What a run keeps in its output folder so that the next run can resume, and the record of what it did.

An interrupted run leaves its work folder (:data:`~nnunet_glua.inference.output_layout.WORK_FOLDER_NAME`) behind.
Its ``state.json`` holds a fingerprint of every case (input files' size and modification time, modality,
intensity settings, canonical orientation) and of the model (folder, folds, checkpoint files, step size,
mirroring); :func:`reusable_predictions` keeps the canonical predictions whose fingerprints still match and
removes the rest, so only those are predicted again. :func:`write_predictions_json` merges the run's per-case
records into ``predictions.json``, keeping the records of earlier runs.
"""
from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk

import nnunet_glua
from nnunet_glua.errors import PathError
from nnunet_glua.inference.output_layout import OUTPUT_SUFFIX, PREDICTIONS_JSON
from nnunet_glua.inference.scan_inputs import ScanInput
from nnunet_glua.inference.trained_model import ConversionSettings, TrainedModel
from nnunet_glua.json_io import write_json
from nnunet_glua.json_io import read_json
from nnunet_glua.volume_io import check_nifti_file

__all__ = [
    "FORMAT_VERSION",
    "case_fingerprint",
    "model_fingerprint",
    "reusable_predictions",
    "timestamp",
    "write_predictions_json",
    "write_state",
]

#: version of the predictions.json layout
FORMAT_VERSION = 1
_STATE_JSON = "state.json"


def case_fingerprint(scan: ScanInput, modality: str, settings: ConversionSettings) -> dict[str, Any]:
    """JSON-ready identity of a case's harmonised image: any change (a replaced scan file, other intensity settings)
    makes its canonical prediction stale."""
    return _json_ready({"files": _file_fingerprint(scan), "modality": modality,
                        "intensity": settings.intensity.to_dict(),
                        "canonical_orientation": settings.canonical_orientation})


def model_fingerprint(model: TrainedModel, step_size: float, use_mirroring: bool) -> dict[str, Any]:
    """JSON-ready identity of the prediction: the model (:meth:`TrainedModel.key`), step size and mirroring."""
    return _json_ready({**model.key(), "step_size": float(step_size), "mirroring": use_mirroring})


def _file_fingerprint(scan: ScanInput) -> list[list[Any]]:
    out = []
    for f in scan.files():
        st = f.stat()
        out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _json_ready(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _read_json(path: Path) -> dict | None:
    """The JSON object stored at ``path``; ``None`` if it is missing, unreadable or not an object (a record of an
    interrupted run that cannot be trusted is ignored, not an error)."""
    try:
        data = read_json(path)
    except PathError:
        return None
    return data if isinstance(data, dict) else None


def _prediction_complete(path: Path) -> bool:
    # a prediction cut off by the crash that interrupted the run must be predicted again
    try:
        check_nifti_file(path, "prediction")
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except (PathError, RuntimeError):
        return False
    return True


def reusable_predictions(work: Path, model_key: dict, case_keys: Mapping[str, dict], ending: str,
                         fresh: bool) -> set[str]:
    """Cases whose canonical prediction from an interrupted earlier run is still valid; stale files are removed."""
    predictions = work / "predictions"
    previous = None if fresh else _read_json(work / _STATE_JSON)
    if previous is None or previous.get("model") != model_key:
        shutil.rmtree(predictions, ignore_errors=True)
        return set()
    reusable = set()
    for case, key in case_keys.items():
        path = predictions / f"{case}{ending}"
        if not path.is_file():
            continue
        if previous.get("cases", {}).get(case) == key and _prediction_complete(path):
            reusable.add(case)
        else:
            path.unlink()
    return reusable


def write_state(work: Path, model_key: dict, case_keys: Mapping[str, dict]) -> None:
    """Record the fingerprints of this run's cases in ``{work}/state.json``, keeping those of other cases of an
    earlier run with the same model (their predictions stay reusable)."""
    previous = _read_json(work / _STATE_JSON) or {}
    cases = dict(previous.get("cases", {})) if previous.get("model") == model_key else {}
    cases.update(case_keys)
    write_json({"model": model_key, "cases": cases}, work / _STATE_JSON)


def timestamp() -> str:
    """The current UTC time, ISO 8601 to the second (the ``created`` entries of predictions.json)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_predictions_json(output: Path, scans: Sequence[ScanInput], entries: Mapping[str, dict],
                           model_record: Mapping[str, Any], settings: ConversionSettings, modality: str,
                           step_size: float, disable_tta: bool, device: str | None) -> None:
    """Write ``{output}/predictions.json``: the run's settings and, per case, ``entries`` (the cases written by this
    run), else the record of an earlier run, else a note that an existing output's origin is unknown.

    Called also after a failure, so the cases written so far keep their record.
    """
    previous = _read_json(output / PREDICTIONS_JSON) or {}
    cases: dict[str, Any] = dict(previous.get("cases", {})) if isinstance(previous.get("cases"), dict) else {}
    for scan in scans:
        if scan.case_id in entries:
            cases[scan.case_id] = entries[scan.case_id]
        elif scan.case_id not in cases and (output / f"{scan.case_id}{OUTPUT_SUFFIX}").exists():
            # segmented before this command recorded anything here: say so rather than invent a record
            cases[scan.case_id] = {
                "input": str(scan.path.resolve()),
                "output": f"{scan.case_id}{OUTPUT_SUFFIX}",
                "skipped": "the output existed before this run; how it was made is not recorded",
            }
    record = {
        "format_version": FORMAT_VERSION,
        "created": timestamp(),
        "nnunet_glua_version": nnunet_glua.__version__,
        **model_record,
        "step_size": float(step_size),
        "test_time_mirroring": not disable_tta,
        "device": device,
        "modality": modality,
        "canonical_orientation": settings.canonical_orientation,
        "intensity_settings": settings.intensity.to_dict(),
        "settings_source": str(settings.source),
        "settings_warnings": list(settings.warnings),
        "output_geometry": "each output has its scan's size, spacing, origin and direction (uint8 labels)",
        "cases": dict(sorted(cases.items())),
    }
    write_json(record, output / PREDICTIONS_JSON)
