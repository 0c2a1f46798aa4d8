"""nnU-Net's on-disk conventions, read the same way by every part of the package.

- its three folders, named by the environment variables ``nnUNet_raw``, ``nnUNet_preprocessed`` and
  ``nnUNet_results`` (read when called, so a changed environment is honoured);
- dataset folders ``Dataset{ID:03d}_{Name}``, which nnU-Net finds by the ``Dataset{ID:03d}_`` prefix;
- file names: images ``{case}_{XXXX}{file_ending}`` (one file per channel), labels ``{case}{file_ending}``;
- its JSON files (``dataset.json``, plans).

Errors are raised as the caller's :class:`~nnunet_glua.errors.PathError` subclass (argument ``error``), so each
command keeps reporting the errors of its own stage.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from nnunet_glua.errors import PathError
from nnunet_glua.json_io import read_json

RAW, PREPROCESSED, RESULTS = "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"
_FOLDER_CONTENT = {RAW: "raw data", PREPROCESSED: "preprocessed data", RESULTS: "results"}
_DATASET_NAME = re.compile(r"^Dataset(\d+)(_|$)")


def nnunet_folder(variable: str, error: type[PathError] = PathError, advice: str | None = None) -> Path:
    """The folder named by the environment variable ``variable`` (e.g. ``"nnUNet_raw"``).

    Raises ``error(None, ...)`` if the variable is unset or empty; ``advice`` replaces the default advice (set
    it, e.g. ``export nnUNet_raw=/data/nnUNet_raw``). The folder itself need not exist.
    """
    value = os.environ.get(variable)
    if not value:
        if advice is None:
            advice = (f"set it to nnU-Net's {_FOLDER_CONTENT.get(variable, variable)} folder, e.g. export "
                      f"{variable}=/data/{variable} (see nnU-Net's documentation/setting_up_paths.md)")
        raise error(None, f"the environment variable {variable} is not set; {advice}")
    return Path(value)


def dataset_id_from_name(name: str) -> int:
    """``"Dataset701_MMWHS"`` -> ``701``; ``ValueError`` if ``name`` is not an nnU-Net dataset name."""
    match = _DATASET_NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not an nnU-Net dataset name (DatasetXXX_Name)")
    return int(match.group(1))


def dataset_folders_with_id(root: Path, dataset_id: int) -> list[Path]:
    """The folders ``root/Dataset{dataset_id:03d}_*``, sorted; empty if ``root`` is not a folder.

    nnU-Net resolves ``-d ID`` by this prefix and refuses an id that more than one name uses.
    """
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir())


def image_cases(folder: Path, file_ending: str) -> list[str]:
    """Sorted case ids of the image files ``{case}_{XXXX}{file_ending}`` in ``folder`` (several channels of one
    case give one id). Hidden names are skipped: the atomic writers keep unfinished files under a leading dot."""
    pattern = re.compile(r"^(?P<case>.+)_\d{4}" + re.escape(file_ending) + r"$")
    cases = set()
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match and not path.name.startswith(".") and path.is_file():
            cases.add(match.group("case"))
    return sorted(cases)


def label_files(folder: Path, file_ending: str) -> dict[str, Path]:
    """``{case: path}`` of the label files ``{case}{file_ending}`` in ``folder``, sorted by case id; hidden names
    (unfinished atomic writes) are skipped."""
    found = {
        path.name[: -len(file_ending)]: path
        for path in folder.iterdir()
        if path.name.endswith(file_ending) and len(path.name) > len(file_ending) and not path.name.startswith(".")
        and path.is_file()
    }
    return dict(sorted(found.items()))


def load_plans(path: Path, plans_name: str, configuration: str, error: type[PathError] = PathError,
               advice: str = "") -> dict[str, Any]:
    """nnU-Net plans read from ``path`` (plans identifier ``plans_name``), checked to hold ``configuration``.

    Raises ``error(path, ...)`` if the file cannot be read (with ``advice``) or lacks the configuration (listing
    the configurations it has).
    """
    plans = read_json(path, error, advice)
    configurations = plans.get("configurations") if isinstance(plans, dict) else None
    if not isinstance(configurations, dict) or configuration not in configurations:
        available = sorted(configurations) if isinstance(configurations, dict) else []
        raise error(path, f"configuration '{configuration}' is not in plans '{plans_name}'. Available "
                          f"configurations: {available}")
    return plans
