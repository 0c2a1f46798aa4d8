"""JSON files of the package, read and written in one place.

Reading names the file in the error when it cannot be read or parsed; writing is atomic (a temporary sibling
renamed on success, :func:`nnunet_glua.io_utils.atomic_path`), so an interrupted run never leaves half a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nnunet_glua.errors import PathError
from nnunet_glua.io_utils import atomic_path

__all__ = ["read_json", "write_json"]


def read_json(path: "str | os.PathLike", error: type[PathError] = PathError, advice: str = "") -> Any:
    """The content of the JSON file ``path``; ``error(path, ...)`` if it cannot be read or parsed.

    ``advice`` (what to do about it) is appended to the error message.
    """
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:  # ValueError: invalid JSON or text that is not UTF-8
        raise error(path, f"cannot be read as JSON ({e})" + (f"; {advice}" if advice else "")) from None


def write_json(obj: Any, path: "str | os.PathLike", indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (parent folders are created)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent, sort_keys=False)
            f.write("\n")
