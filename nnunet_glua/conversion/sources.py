"""The scans a converter reads: one :class:`CaseSource` per scan, and the loader of scans stored as NIfTI pairs.

The dataset readers (:mod:`.mmwhs`, :mod:`.btcv`, :mod:`.chaos`) describe each scan they find as a
:class:`CaseSource`; the writer (:mod:`.uda_dataset`) calls its loader in a worker process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.labels import LabelMap
from nnunet_glua.volume_io import read_volume

__all__ = ["CaseSource", "load_nifti_pair"]


@dataclass(frozen=True)
class CaseSource:
    """One scan of a public dataset and how to read it.

    ``case_id`` is the output case name (``"mr_1001"``), ``number`` the public id (1001), ``files`` the input
    paths shown in errors and in the report (keys ``"image"`` and ``"label"``, folders for DICOM data, plus any
    key the loader needs, e.g. ``"series"``).
    ``loader(source, with_label)`` returns ``(image, raw_label_or_None)`` as SimpleITK images on the same grid and
    raises :class:`ConversionError` naming the file at fault; it must be a module-level function (it is pickled
    to worker processes). ``label_map`` maps the raw label values of this scan's dataset to task labels.
    """

    case_id: str
    modality: str
    number: int
    files: Mapping[str, str]
    loader: Callable[["CaseSource", bool], tuple[sitk.Image, "sitk.Image | None"]]
    label_map: LabelMap



def load_nifti_pair(source: CaseSource, with_label: bool) -> tuple[sitk.Image, "sitk.Image | None"]:
    """Loader for scans stored as one image file and one label file (MMWHS, BTCV): ``source.files["image"]`` and,
    if ``with_label``, ``source.files["label"]``, read with :func:`~nnunet_glua.volume_io.read_volume`.

    Returns ``(image, label or None)``; raises :class:`ConversionError` naming the file that is missing, damaged or
    holds NaN/infinite voxels.
    """
    image = read_volume(source.files["image"], "image", ConversionError)
    label = read_volume(source.files["label"], "label", ConversionError) if with_label else None
    return image, label
