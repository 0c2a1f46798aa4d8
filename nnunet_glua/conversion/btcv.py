"""BTCV (Beyond the Cranial Vault / Synapse multi-organ CT, 30 labelled volumes) as CT scans of the abdomen task.

Input layout (as distributed in ``RawData.zip``)::

    BTCV/RawData/Training/img/img0001.nii.gz      BTCV/RawData/Training/label/label0001.nii.gz
    ... ids 1-10 and 21-40

Cases are named ``ct_0001``. Labels are mapped with :data:`~.labels.BTCV_ABDOMEN` (6 liver -> 1, 2 right kidney -> 2,
3 left kidney -> 3, 1 spleen -> 4, the other nine organs -> background).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.labels import BTCV_ABDOMEN
from nnunet_glua.conversion.sources import CaseSource, load_nifti_pair

_IMAGE_PATTERN = re.compile(r"^img(\d+)\.nii(\.gz)?$")
_LABEL_PATTERN = re.compile(r"^label(\d+)\.nii(\.gz)?$")


def btcv_training_folder(btcv_root: "str | os.PathLike") -> Path:
    """The folder holding ``img/`` and ``label/``.

    ``btcv_root`` may be the BTCV folder (holding ``RawData/Training``), ``RawData``, or ``Training`` itself.
    """
    root = Path(btcv_root)
    if not root.is_dir():
        raise ConversionError(root, "BTCV folder does not exist")
    for candidate in (root / "RawData" / "Training", root / "Training", root):
        if (candidate / "img").is_dir() and (candidate / "label").is_dir():
            return candidate
    raise ConversionError(
        root, "no BTCV training data found; expected RawData/Training/img/img0001.nii.gz and "
        "RawData/Training/label/label0001.nii.gz below this folder"
    )


def _files_by_id(folder: Path, pattern: re.Pattern[str], what: str) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if not match:
            continue
        number = int(match.group(1))
        if number in found:
            raise ConversionError(path, f"BTCV {what} {number} is stored twice ({found[number].name}); keep one")
        found[number] = path
    return found


def find_btcv_scans(btcv_root: "str | os.PathLike") -> dict[int, CaseSource]:
    """All BTCV training image/label pairs as ``{public id: CaseSource}`` (case ids ``ct_0001`` ...).

    Raises :class:`ConversionError` for a missing folder, an image without label or a label without image.
    """
    training = btcv_training_folder(btcv_root)
    images = _files_by_id(training / "img", _IMAGE_PATTERN, "image")
    labels = _files_by_id(training / "label", _LABEL_PATTERN, "label")
    for number, path in images.items():
        if number not in labels:
            raise ConversionError(path, f"has no matching label file (label{number:04d}.nii.gz is missing in "
                                        f"{training / 'label'})")
    for number, path in labels.items():
        if number not in images:
            raise ConversionError(path, f"has no matching image file (img{number:04d}.nii.gz is missing in "
                                        f"{training / 'img'})")
    return {
        number: CaseSource(
            case_id=f"ct_{number:04d}",
            modality="CT",
            number=number,
            files={"image": str(images[number]), "label": str(labels[number])},
            loader=load_nifti_pair,
            label_map=BTCV_ABDOMEN,
        )
        for number in sorted(images)
    }
