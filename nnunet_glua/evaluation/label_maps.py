"""Label maps as evaluation and figures need them: integer arrays, with errors that name the file.

The files themselves are read with :func:`nnunet_glua.volume_io.read_volume`, the reader every command shares.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_glua.errors import PathError

__all__ = ["as_integer_labels"]


def as_integer_labels(array: np.ndarray, path: Path, role: str, error: type[PathError]) -> np.ndarray:
    """``array`` unchanged if it is integer, else as int64 when every value is a whole number; otherwise
    ``error`` naming ``path`` (a label map holds integer labels). ``role`` names the file in the message."""
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise error(path, f"the {role} holds non-integer values; a label map holds integer labels")
    return array.astype(np.int64)
