"""The error of the experiments package."""
from __future__ import annotations

from nnunet_glua.errors import PathError


class BenchmarkError(PathError):
    """A benchmark cannot run or continue. ``path`` is the file or folder at fault (``None`` if global)."""
