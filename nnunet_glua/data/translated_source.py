"""The labelled source cases as nnU-Net's training loader sees them when GLUA translates before augmentation.

:class:`SourceWithTranslatedCopies` is a drop-in for nnU-Net's training dataset: its identifiers are the source cases
*and* their translated copies (:mod:`nnunet_glua.style.translated_copies`), and its ``sampling_probabilities`` make
nnU-Net's loader draw a copy with probability ``translate_probability`` (one of the case's styles, uniformly) and the
untranslated case otherwise. Patch location, foreground oversampling and the whole augmentation pipeline then apply to
the translated image exactly as to a source image, and the batch's ``keys`` tell which samples are copies.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from nnunet_glua.style.translated_copies import copy_identifier, source_case_of

__all__ = ["SourceWithTranslatedCopies", "translated_samples"]


class SourceWithTranslatedCopies:
    """``base``: nnU-Net's training dataset (an ``nnUNetBaseDataset`` over the fold's training cases);
    ``copies_folder``: the folder of their translated copies; ``styles_per_case``: copies per case;
    ``translate_probability`` in [0, 1]: the chance that a drawn sample is a copy."""

    def __init__(self, base, copies_folder: "str | os.PathLike", styles_per_case: int, translate_probability: float):
        from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

        if not 0.0 <= translate_probability <= 1.0:
            raise ValueError(f"translate_probability must be in [0, 1], got {translate_probability}")
        self.base = base
        cases = list(base.identifiers)
        ambiguous = [c for c in cases if source_case_of(c) is not None]
        if ambiguous:
            raise ValueError(f"source cases {ambiguous[:5]} are named like translated copies (*__style<k>); rename "
                             "them before planning, or train without translation before augmentation")
        copies = [copy_identifier(c, k) for c in cases for k in range(styles_per_case)]
        missing = [c for c in copies if not os.path.isfile(os.path.join(copies_folder, c + ".pkl"))]
        if missing:
            raise FileNotFoundError(f"{copies_folder}: translated copies {missing[:5]} are missing; delete the folder "
                                    f"and start the training again to rebuild them")
        self.copies = nnUNetDatasetBlosc2(str(copies_folder), copies)
        self.identifiers = cases + copies
        n = len(cases)
        self.sampling_probabilities = np.array([(1.0 - translate_probability) / n] * n
                                               + [translate_probability / (n * styles_per_case)] * len(copies))
        self.source_folder = base.source_folder

    def __getitem__(self, identifier: str):
        return self.load_case(identifier)

    def load_case(self, identifier: str):
        """``(data, seg, seg_prev, properties)`` of a source case or of a translated copy (same segmentation and
        properties as its source case)."""
        if source_case_of(identifier) is None:
            return self.base.load_case(identifier)
        return self.copies.load_case(identifier)


def translated_samples(keys: Sequence[str]) -> np.ndarray:
    """Bool ``(B,)``: which samples of a batch (nnU-Net's ``batch["keys"]``) are translated copies."""
    return np.array([source_case_of(str(k)) is not None for k in keys], dtype=bool)
