"""The error of the scan-prediction stage: a problem with the model, the dataset or the output folder.

Problems with a scan itself are :class:`~nnunet_glua.conversion.errors.ConversionError`, as in the converters.
"""
from __future__ import annotations

from nnunet_glua.errors import PathError

__all__ = ["PredictionError"]


class PredictionError(PathError):
    """A model, dataset or output folder problem. ``path`` names the file or folder at fault (may be ``None``)."""
