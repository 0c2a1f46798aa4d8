"""The one exception type of the converters: always names the offending file and says what is wrong."""
from __future__ import annotations

import os


class ConversionError(ValueError):
    """Raised for bad input data. ``path`` is the file or folder at fault (may be ``None`` for global problems)."""

    def __init__(self, path: "str | os.PathLike | None", problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
