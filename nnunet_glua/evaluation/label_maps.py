"""Reading label maps (and the images beside them) for evaluation and figures, with errors that name the file.

Both functions raise ``error(path, problem)``, a :class:`~nnunet_glua.errors.PathError` subclass chosen by the
caller, so each command keeps its own error type.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_glua.errors import PathError

__all__ = ["read_scalar_image", "as_integer_labels"]


def read_scalar_image(path: Path, role: str, error: type[PathError]) -> sitk.Image:
    """Read ``path`` with SimpleITK; it must have one component per voxel. ``role`` names it in messages
    (e.g. "prediction")."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise error(path, f"the {role} cannot be read ({detail})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise error(path, f"the {role} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                          "expected one (a scalar image or a label map)")
    return image


def as_integer_labels(array: np.ndarray, path: Path, role: str, error: type[PathError]) -> np.ndarray:
    """``array`` unchanged if it is integer, else as int64 when every value is a whole number; otherwise
    ``error`` (a label map holds integer labels)."""
    if np.issubdtype(array.dtype, np.integer):
        return array
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise error(path, f"the {role} holds non-integer values; a label map holds integer labels")
    return array.astype(np.int64)
