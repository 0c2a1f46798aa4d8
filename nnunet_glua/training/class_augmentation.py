"""Class-level intensity augmentation, a baseline in the spirit of location-scale augmentation (SLAug's local
location-scale step): every class region of a labelled source sample (each structure, and the background) gets its
own random intensity curve, then its own scale and shift, so that a network trained on it has seen many contrasts
between the structures. Source labels only; part of nnU-Net's augmentation, after the spatial and before the
intensity transforms (``SourceOnlyTrainer_ClassAug``)."""
from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

__all__ = ["ClassLevelIntensityAugmentation", "augment_class_intensities"]


def augment_class_intensities(image: torch.Tensor, labels: torch.Tensor, gamma_range: tuple[float, float] = (0.5, 2.0),
                              invert_probability: float = 0.5, scale_range: tuple[float, float] = (0.8, 1.2),
                              shift_range: tuple[float, float] = (-0.2, 0.2)) -> torch.Tensor:
    """``image`` ``(C, *spatial)`` float with a random curve per class region of ``labels`` (``(*spatial)`` int; every
    value, the background and nnU-Net's outside marker -1 included, is a region).

    Per channel the image is mapped to [0, 1] by its minimum and maximum; each region gets ``x ** gamma`` (gamma
    log-uniform in ``gamma_range``), inverted (``1 - y``) with ``invert_probability``, then ``y * scale + shift``
    (uniform in the ranges); the result goes back to the channel's mean and standard deviation. Draws from torch's
    global generator (seeded in nnU-Net's workers)."""
    out = torch.empty_like(image)
    log_lo, log_hi = torch.log(torch.tensor(gamma_range[0])), torch.log(torch.tensor(gamma_range[1]))
    for c in range(image.shape[0]):
        x = image[c]
        lo, hi = x.min(), x.max()
        unit = (x - lo) / (hi - lo).clamp_min(1e-6)
        y = torch.empty_like(unit)
        for value in torch.unique(labels):
            region = labels == value
            gamma = torch.exp(log_lo + torch.rand(()) * (log_hi - log_lo))
            curve = unit[region] ** gamma
            if torch.rand(()) < invert_probability:
                curve = 1 - curve
            scale = scale_range[0] + torch.rand(()) * (scale_range[1] - scale_range[0])
            shift = shift_range[0] + torch.rand(()) * (shift_range[1] - shift_range[0])
            y[region] = curve * scale + shift
        out[c] = (y - y.mean()) / y.std().clamp_min(1e-6) * x.std() + x.mean()
    return out


class ClassLevelIntensityAugmentation(BasicTransform):
    """:func:`augment_class_intensities` on a ``probability`` fraction of the samples (image ``(C, *spatial)``,
    segmentation with the labels in channel 0)."""

    labelled_source_only = True

    def __init__(self, probability: float):
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        self.probability = float(probability)

    def apply(self, data_dict: dict, **params) -> dict:
        if torch.rand(()) < self.probability:
            data_dict["image"] = augment_class_intensities(data_dict["image"], data_dict["segmentation"][0].long())
        return data_dict
