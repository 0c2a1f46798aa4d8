"""File writers of the phantom in the public datasets' formats: NIfTI volumes and CHAOS-style DICOM + PNG.

Every file goes through :func:`nnunet_glua.io_utils.atomic_path` (written under a temporary name, renamed on
success). Content is a pure function of the inputs: no clock, no random UIDs (UIDs are derived from the
caller's seed string), so the same seed gives byte-identical files.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID

from nnunet_glua.phantom.acquisition import to_stored_image
from nnunet_glua.phantom.shapes import PatientGrid
from nnunet_glua.io_utils import atomic_path, write_image

#: Orders in which CHAOS-style slices are numbered (file names follow the instance number).
SLICE_ORDERS = ("head_to_foot", "interleaved", "foot_to_head", "shuffled")

_PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])


def write_nifti(array_zyx: np.ndarray, grid: PatientGrid, orientation: str, path: "str | os.PathLike") -> sitk.Image:
    """Write a patient-aligned ``(nz, ny, nx)`` array as NIfTI stored in ``orientation``; returns the image written."""
    image = to_stored_image(array_zyx, grid, orientation)
    write_image(image, path, compress=True)
    return image


def slice_order(n_slices: int, order: str, rng: np.random.Generator) -> np.ndarray:
    """Slice indices (0 = most inferior) in instance-number order for one of :data:`SLICE_ORDERS`.

    ``head_to_foot`` / ``foot_to_head``: acquisition from the top / bottom; ``interleaved``: every second slice
    first, then the others (2D multi-slice acquisitions fill the gaps in a second pass); ``shuffled``: a random
    numbering that follows neither direction, as after re-export by a tool that renumbers files.
    """
    ascending = np.arange(n_slices)
    if order == "foot_to_head":
        return ascending
    if order == "head_to_foot":
        return ascending[::-1].copy()
    if order == "interleaved":
        return np.concatenate([ascending[0::2], ascending[1::2]])
    if order == "shuffled":
        while True:
            permutation = rng.permutation(n_slices)
            monotonic = np.all(np.diff(permutation) > 0) or np.all(np.diff(permutation) < 0)
            if n_slices < 3 or not monotonic:
                return permutation
    raise ValueError(f"unknown slice order {order!r}; expected one of {SLICE_ORDERS}")


def reproducible_uid(*parts: str) -> str:
    """DICOM UID ``2.25.<uuid>`` from a name-based (SHA-1, version 5) UUID of ``parts``: same parts, same UID."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(parts)).int}"


def _ds(value: float) -> str:
    """Decimal String (DICOM DS, at most 16 characters) with 0.1 micrometre resolution."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _mr_slice(pixels: np.ndarray, grid: PatientGrid, k: int, instance: int, uids: dict[str, str],
              sop_uid: str, patient_id: int, series_number: int, slice_thickness: float) -> pydicom.Dataset:
    """Single-frame MR Image Storage dataset for axial slice ``k`` of a patient-aligned grid."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = pydicom.Dataset()
    ds.file_meta = meta
    if _PYDICOM_MAJOR < 3:  # pydicom 2 needs the encoding spelled out; 3 derives it from the transfer syntax
        ds.is_little_endian = True
        ds.is_implicit_VR = False
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    # fixed dates: the files must not depend on when they were generated
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "120000"
    ds.Modality = "MR"
    ds.Manufacturer = "nnunet-glua synthetic phantom"
    ds.StudyDescription = "synthetic abdominal phantom"
    ds.SeriesDescription = "T2SPIR"
    ds.ProtocolName = "T2 SPIR"
    ds.PatientName = f"Phantom^{patient_id}"
    ds.PatientID = f"PHANTOM{patient_id:03d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "ABDOMEN"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = "FS"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _ds(slice_thickness)
    ds.SpacingBetweenSlices = _ds(grid.spacing[2])
    ds.RepetitionTime = "1600"
    ds.EchoTime = "80"
    ds.MagneticFieldStrength = "1.5"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    z = grid.origin[2] + k * grid.spacing[2]
    ds.ImagePositionPatient = [_ds(grid.origin[0]), _ds(grid.origin[1]), _ds(z)]
    # rows run toward posterior (+y), columns toward the patient's left (+x): standard axial DICOM
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = _ds(z)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.PixelSpacing = [_ds(grid.spacing[1]), _ds(grid.spacing[0])]  # (between rows, between columns)
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "600"
    ds.WindowWidth = "1200"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def _save_dicom(ds: pydicom.Dataset, path: Path) -> None:
    with atomic_path(path) as tmp:
        if _PYDICOM_MAJOR >= 3:
            ds.save_as(tmp, enforce_file_format=True)
        else:
            ds.save_as(tmp, write_like_original=False)


def _save_png(mask: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(tmp, format="PNG")


def write_chaos_series(pixels: np.ndarray, mask: np.ndarray, grid: PatientGrid, t2spir_dir: "str | os.PathLike",
                       patient_id: int, series_number: int, order: Sequence[int], uid_seed: str,
                       slice_thickness: float) -> list[str]:
    """Write one CHAOS-style T2-SPIR series: ``DICOM_anon/IMG-<series>-<instance>.dcm`` + ``Ground/<same>.png``.

    ``pixels`` (nz, ny, nx) uint16 and ``mask`` (nz, ny, nx) uint8 are patient-aligned (k toward superior, rows
    toward posterior, columns toward the patient's left); slice ``order[i]`` gets instance number ``i + 1``.
    ``uid_seed`` makes the UIDs reproducible. Returns the file stems in instance order.
    """
    t2spir_dir = Path(t2spir_dir)
    if pixels.shape != mask.shape or pixels.shape != grid.shape:
        raise ValueError(f"pixels {pixels.shape}, mask {mask.shape} and grid {grid.shape} must have the same shape")
    if pixels.max(initial=0) > 4095:
        raise ValueError("CHAOS pixels are 12-bit: values above 4095 cannot be stored")
    uids = {part: reproducible_uid(uid_seed, part) for part in ("study", "series", "frame")}
    stems = []
    for index, k in enumerate(order):
        instance = index + 1
        stem = f"IMG-{series_number:04d}-{instance:05d}"
        sop_uid = reproducible_uid(uid_seed, "sop", str(instance))
        ds = _mr_slice(pixels[k], grid, int(k), instance, uids, sop_uid, patient_id, series_number, slice_thickness)
        _save_dicom(ds, t2spir_dir / "DICOM_anon" / f"{stem}.dcm")
        _save_png(mask[k], t2spir_dir / "Ground" / f"{stem}.png")
        stems.append(stem)
    return stems
