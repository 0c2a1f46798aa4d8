"""Intensity harmonisation of one volume: label-free body mask, robust clipping inside it, positive body, zero outside.

Why: nnU-Net z-scores each image of a channel named ``"zscore"`` on its own. Without clipping, CT air at
-1000 HU (or MR background noise) dominates those statistics and the tissue contrast the network needs is squeezed
into a narrow band. So, per volume:

1. **Body mask, found without labels.** CT: voxels above ``ct_body_threshold`` (default -500 HU, between air at
   -1000 and fat at about -100). MR: voxels above ``mr_otsu_scale`` x Otsu's threshold of the *log* intensities
   (default scale 1). In log space the background noise and the tissues form two clear populations whatever the
   contrast; on linear intensities Otsu separates bright organs from dark tissue instead, and a fat-suppressed
   T2 body (dark fat and muscle) would lose half of its volume. The largest 6-connected component is kept: it
   drops coils, noise specks and a CT table separated from the body by the air-dark mattress (a table that touches
   the skin stays in the mask, which only widens nnU-Net's crop a little). Holes are filled in 3D and in every
   axial slice (lungs and airways are open to the volume border in 3D through the trachea, but enclosed in each
   axial slice).
2. **Robust clipping.** The ``lower_percentile`` / ``upper_percentile`` percentiles (default 0.5 / 99.5) are
   computed over body voxels only and the volume is clipped to them.
3. **Positive body, zero background.** The clipped range is mapped linearly to ``[output_min, output_max]``
   (default [1, 1000], float32) inside the body; everything outside the body is set to exactly 0, so nnU-Net's
   crop-to-nonzero removes it and its nonzero mask marks the body.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.orientation import CANONICAL_AXIAL_ARRAY_AXIS
from nnunet_glua.volume_io import require_finite

MODALITIES = ("CT", "MR")

# A CT whose thresholded body covers nearly the whole volume although no voxel is air-dark was not stored in HU
# (e.g. shifted by +1024); the HU threshold cannot find the body there, Otsu can.
_CT_NOT_HU_BODY_FRACTION = 0.995
_CT_NOT_HU_MINIMUM = -100.0
_SMALL_BODY_FRACTION = 0.01


@dataclass(frozen=True)
class IntensitySettings:
    """Knobs of the intensity harmonisation (defaults are the documented conversion defaults)."""

    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    output_min: float = 1.0
    output_max: float = 1000.0
    ct_body_threshold: float = -500.0
    mr_otsu_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower_percentile < self.upper_percentile <= 100.0:
            raise ValueError(
                f"need 0 <= lower_percentile < upper_percentile <= 100, got {self.lower_percentile}, "
                f"{self.upper_percentile}"
            )
        if not 0.0 < self.output_min < self.output_max:
            raise ValueError(
                f"need 0 < output_min < output_max (the background is 0 and must stay distinguishable), got "
                f"{self.output_min}, {self.output_max}"
            )
        if self.mr_otsu_scale <= 0:
            raise ValueError(f"mr_otsu_scale must be positive, got {self.mr_otsu_scale}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IntensityRecord:
    """What :func:`harmonise_intensities` found and did for one volume (intensities in the input's units)."""

    modality: str
    body_mask_method: str
    body_threshold: float
    body_fraction: float
    clip_low: float
    clip_high: float
    input_min: float
    input_max: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D array of intensities (maximises the between-class variance of the histogram).

    Values above the 99.9th percentile are clipped first so one extreme voxel cannot collapse the histogram.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(np.percentile(values, 99.9))
    if high <= low:
        return low
    hist, edges = np.histogram(np.clip(values, low, high), bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(hist, dtype=np.float64)
    weight_above = weight_below[-1] - weight_below
    cum_mass = np.cumsum(hist * centres)
    mean_below = cum_mass / np.maximum(weight_below, 1)
    mean_above = (cum_mass[-1] - cum_mass) / np.maximum(weight_above, 1)
    between = (weight_below * weight_above * (mean_below - mean_above) ** 2)[:-1]
    # Across an empty stretch of the histogram the criterion is flat; take the middle of the maximal run rather
    # than its first bin, which would hug the darker population.
    first = int(np.argmax(between))
    last = first
    while last + 1 < len(between) and between[last + 1] >= between[first] * (1 - 1e-12):
        last += 1
    # the threshold is the upper edge of the last bin of the lower class
    return float(edges[(first + last) // 2 + 1])


def log_otsu_threshold(values: np.ndarray, scale: float = 1.0) -> float:
    """``scale`` x Otsu's threshold of ``log(1 + values - min)``, returned in the units of ``values``.

    The scale applies to the distance above the minimum, so 1 is the plain log-domain Otsu threshold.
    """
    low = float(np.min(values))
    logs = np.log1p(np.asarray(values, dtype=np.float64) - low)
    return low + scale * float(np.expm1(otsu_threshold(logs)))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a boolean array (empty input gives an empty output)."""
    components, count = ndimage.label(mask)
    if count <= 1:
        return components > 0
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray, axial_axis: int = CANONICAL_AXIAL_ARRAY_AXIS) -> np.ndarray:
    """Fill enclosed holes in 3D, then in every 2D slice perpendicular to ``axial_axis``."""
    filled = ndimage.binary_fill_holes(mask)
    moved = np.moveaxis(filled, axial_axis, 0)  # a view: slices are filled in place
    for index in range(moved.shape[0]):
        if moved[index].any():
            moved[index] = ndimage.binary_fill_holes(moved[index])
    return filled


def body_mask(
    array: np.ndarray,
    modality: str,
    settings: IntensitySettings = IntensitySettings(),
    axial_axis: int = CANONICAL_AXIAL_ARRAY_AXIS,
) -> tuple[np.ndarray, str, float, list[str]]:
    """Boolean body mask of a 3D intensity array (CT in HU, MR in scanner units), found without labels.

    Returns ``(mask, method, threshold, warnings)``: the mask has ``array``'s shape, ``method`` is
    ``"threshold"`` (CT), ``"log_otsu"`` (MR) or ``"otsu"`` (CT not stored in HU), ``threshold`` the intensity cut
    that was used.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    warnings: list[str] = []
    if modality == "CT":
        method, threshold = "threshold", float(settings.ct_body_threshold)
        raw = array > threshold
        if raw.mean() > _CT_NOT_HU_BODY_FRACTION and float(array.min()) > _CT_NOT_HU_MINIMUM:
            # shifted/unscaled CT: no air-dark voxel at all, the HU threshold would keep the whole field of view
            method, threshold = "otsu", otsu_threshold(array)
            raw = array > threshold
            warnings.append(
                f"CT intensities do not look like HU (minimum {float(array.min()):.4g} > {_CT_NOT_HU_MINIMUM:g}); "
                f"body mask found with Otsu's threshold {threshold:.4g} instead of {settings.ct_body_threshold:g} HU"
            )
    else:
        method = "log_otsu"
        threshold = log_otsu_threshold(array, settings.mr_otsu_scale)
        raw = array > threshold
    return fill_holes(largest_component(raw), axial_axis), method, threshold, warnings


def harmonise_intensities(
    image: sitk.Image,
    modality: str,
    settings: IntensitySettings = IntensitySettings(),
    path: "str | os.PathLike | None" = None,
    axial_axis: int = CANONICAL_AXIAL_ARRAY_AXIS,
) -> tuple[sitk.Image, IntensityRecord]:
    """Apply body mask, robust clipping and positive mapping to a 3D ``image`` (see module docstring).

    Returns a float32 image on the same voxel grid whose body voxels lie in ``[output_min, output_max]`` and whose
    other voxels are exactly 0, and the record of what was done. Raises :class:`ConversionError` naming ``path``
    when a voxel is NaN or infinite, no body is found or the body has a single intensity (nothing to normalise).
    """
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    # a NaN would turn the percentiles and so the whole volume into NaN
    require_finite(array, path, "image", ConversionError)
    mask, method, threshold, warnings = body_mask(array, modality, settings, axial_axis)
    body_fraction = float(mask.mean())
    if body_fraction == 0.0:
        raise ConversionError(
            path,
            f"no body found: no voxel of this {modality} volume lies above the body threshold {threshold:.4g} "
            f"(intensity range {float(array.min()):.4g}..{float(array.max()):.4g}). Is it empty or in unexpected "
            "units? Adjust the body threshold option if the data is valid.",
        )
    if body_fraction < _SMALL_BODY_FRACTION:
        warnings.append(f"body mask covers only {100 * body_fraction:.2f}% of the volume")
    body_values = array[mask]
    clip_low, clip_high = (
        float(v) for v in np.percentile(body_values, [settings.lower_percentile, settings.upper_percentile])
    )
    if clip_high <= clip_low:
        raise ConversionError(
            path,
            f"the body region has a single intensity ({clip_low:.4g}) between the {settings.lower_percentile} and "
            f"{settings.upper_percentile} percentiles; the volume carries no contrast to normalise",
        )
    scale = (settings.output_max - settings.output_min) / (clip_high - clip_low)
    out = np.zeros(array.shape, dtype=np.float32)
    # compute in float64 then clamp so rounding can never push a body voxel to 0 or outside the documented range
    body = (np.clip(body_values, clip_low, clip_high).astype(np.float64) - clip_low) * scale + settings.output_min
    out[mask] = np.clip(body, settings.output_min, settings.output_max).astype(np.float32)
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(image)
    record = IntensityRecord(
        modality=modality,
        body_mask_method=method,
        body_threshold=float(threshold),
        body_fraction=body_fraction,
        clip_low=clip_low,
        clip_high=clip_high,
        input_min=float(array.min()),
        input_max=float(array.max()),
        warnings=warnings,
    )
    return result, record
