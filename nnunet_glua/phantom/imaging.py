"""Image formation of the phantom: tissue map -> scanner intensities with each modality's artefacts.

Pipeline for one scan (all arrays ``(nz, ny, nx)`` on the scan's :class:`~.shapes.PatientGrid`):

1. per-scan tissue means drawn from the protocol's table (:mod:`.tissues`), plus a smooth
   within-tissue texture (Gaussian-filtered noise, correlation length about two voxels);
2. partial-volume blur: a Gaussian point-spread function of ``PSF_SIGMA_VOXELS`` along every array axis, so
   boundary voxels mix their neighbours' signals (thicker slices mix more millimetres along z, as real
   slice profiles do);
3. CT: additive Gaussian quantum noise (sigma drawn per scan, HU), optionally the reconstruction circle
   (voxels outside the inscribed circle of the field of view set to -1024 HU, as scanners pad them), then
   rounding to int16 and clipping to [-1024, 3071] HU;
4. MR: a smooth multiplicative bias field (exponential of a random quadratic polynomial in the normalised
   patient coordinates, with a stronger anterior coil gain), a per-scan receiver gain, Rician noise (magnitude
   of signal plus complex Gaussian noise, so the air around the body is a Rayleigh-distributed background
   near zero), then rounding to non-negative integers capped at the protocol's maximum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_glua.phantom.shapes import PatientGrid
from nnunet_glua.phantom.tissues import Tissue, draw_tissue_means, texture_scales

#: Standard deviation of the Gaussian point-spread function, in voxels along each array axis.
PSF_SIGMA_VOXELS = 0.6
_TEXTURE_SIGMA_VOXELS = 2.0
_CT_MIN_HU, _CT_MAX_HU = -1024, 3071


@dataclass(frozen=True)
class ImagingSettings:
    """How one protocol turns tissues into stored values.

    ``modality`` "CT" or "MR". CT: ``noise`` is the range of the Gaussian noise sigma in HU and
    ``circle_probability`` the chance that the reconstruction circle is visible. MR: ``noise`` is the range of
    the Rician sigma relative to ``reference_tissue``'s mean, ``gain`` the range of the receiver gain,
    ``bias_strength`` the range of the polynomial coefficients of the log bias field, ``max_value`` the largest
    storable value (12-bit DICOM: 4095); ``appearance`` the intensity table of :mod:`.tissues`.
    """

    protocol: str
    modality: str
    noise: tuple[float, float]
    circle_probability: float = 0.0
    gain: tuple[float, float] = (1.0, 1.0)
    bias_strength: tuple[float, float] = (0.0, 0.0)
    reference_tissue: Tissue = Tissue.AIR
    max_value: int = _CT_MAX_HU
    #: which intensity table of :mod:`.tissues` the protocol's tissues take (``"standard"`` or ``"alt"``)
    appearance: str = "standard"


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    std = float(field.std())
    return field / std if std > 0 else field


def _normalised_coordinates(grid: PatientGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient coordinates scaled to [-1, 1] over the grid, broadcastable to ``grid.shape``."""
    x, y, z = grid.axis_coordinates()

    def unit(c: np.ndarray) -> np.ndarray:
        half = max((c[-1] - c[0]) / 2.0, 1e-6)
        return ((c - (c[0] + c[-1]) / 2.0) / half).astype(np.float32)

    return unit(x)[None, None, :], unit(y)[None, :, None], unit(z)[:, None, None]


def mr_bias_field(grid: PatientGrid, rng: np.random.Generator, strength: tuple[float, float]) -> np.ndarray:
    """Smooth multiplicative bias ``exp(P(x, y, z))``, ``P`` a random quadratic; ``(nz, ny, nx)`` float32.

    The linear y coefficient is biased negative: receive coils on the chest/abdomen make the anterior side
    brighter than the back, the dominant inhomogeneity of body MR.
    """
    x, y, z = _normalised_coordinates(grid)
    terms = [x, z, x * x, y * y, z * z, x * y, x * z, y * z]
    log_field = np.zeros(grid.shape, dtype=np.float32)
    for term in terms:
        log_field = log_field + np.float32(rng.uniform(-1.0, 1.0) * rng.uniform(*strength)) * term
    log_field = log_field - np.float32(rng.uniform(*strength) * rng.uniform(0.5, 1.0)) * y
    return np.exp(log_field)


def render_intensities(tissues: np.ndarray, grid: PatientGrid, settings: ImagingSettings,
                       rng: np.random.Generator) -> np.ndarray:
    """Simulate one scan of the tissue map ``tissues`` ((nz, ny, nx) uint8 :class:`Tissue` values).

    Returns float32 values in the protocol's units (HU for CT, a.u. for MR), before rounding to the stored
    integer type; see :func:`quantise`.
    """
    means = draw_tissue_means(settings.protocol, rng, settings.appearance).astype(np.float32)
    textures = texture_scales(settings.protocol, settings.appearance).astype(np.float32)
    image = means[tissues] + textures[tissues] * _smooth_noise(tissues.shape, rng, _TEXTURE_SIGMA_VOXELS)
    image = ndimage.gaussian_filter(image, PSF_SIGMA_VOXELS, mode="nearest")
    if settings.modality == "CT":
        image += rng.normal(0.0, rng.uniform(*settings.noise), size=image.shape).astype(np.float32)
        if rng.random() < settings.circle_probability:
            x, y, _ = _normalised_coordinates(grid)
            outside = np.broadcast_to(x * x + y * y > 1.0, image.shape)
            image = np.where(outside, np.float32(_CT_MIN_HU), image)
        return image
    if settings.modality != "MR":
        raise ValueError(f"unknown modality {settings.modality!r}; expected 'CT' or 'MR'")
    image = image * mr_bias_field(grid, rng, settings.bias_strength) * np.float32(rng.uniform(*settings.gain))
    sigma = float(rng.uniform(*settings.noise) * means[settings.reference_tissue])
    real = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def quantise(image: np.ndarray, settings: ImagingSettings, dtype: type) -> np.ndarray:
    """Round to the stored integer type: CT clipped to [-1024, 3071] HU, MR to [0, ``settings.max_value``]."""
    low = _CT_MIN_HU if settings.modality == "CT" else 0
    return np.clip(np.rint(image), low, settings.max_value).astype(dtype)
