"""The common base of the package's input errors: each names the file or folder at fault and says what to do.

Every stage has its own subclass (:class:`~nnunet_glua.conversion.errors.ConversionError`,
:class:`~nnunet_glua.data.uda_dataset_info.UDADatasetError`, :class:`~nnunet_glua.evaluation.evaluate.EvaluationError`,
...), so a command catches the errors of its own stage and lets programming errors surface as tracebacks.
"""
from __future__ import annotations

import os


class PathError(ValueError):
    """Bad input. ``path`` is the file or folder at fault (``None`` for a global problem, e.g. an unset
    environment variable); ``problem`` says what is wrong and what to do about it.

    ``str(error)`` is ``"{path}: {problem}"``. The error survives pickling, so it can be raised inside a worker
    process and re-raised in the parent (the default pickling of exceptions passes only the message, which a
    two-argument constructor cannot take back).
    """

    def __init__(self, path: "str | os.PathLike | None", problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):
        return (type(self), (self.path, self.problem))
