"""The one exception type of the converters: always names the offending file and says what is wrong."""
from __future__ import annotations

from nnunet_glua.errors import PathError


class ConversionError(PathError):
    """Raised for bad input data. ``path`` is the file or folder at fault (may be ``None`` for global problems)."""
