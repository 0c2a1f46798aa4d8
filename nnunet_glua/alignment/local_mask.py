"""The local feature mask: where on a target sample is the domain gap largest?

For each target sample, a per-location *gap map* is computed from the feature discriminator's scores (under
``no_grad``: the mask is a selection, not something to optimise). Locations outside the image (nnU-Net padding or
the zero region outside the body) are never selected. Either the top fraction ``ratio`` of the valid locations is
selected (hard mask), or every valid location gets a weight that grows with its gap (soft mask).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gap_map(target_scores: torch.Tensor, source_label: float = 1.0) -> torch.Tensor:
    """Per-location domain gap of target features: the squared distance of the discriminator score from the
    source label, i.e. the least-squares alignment loss each location would pay. Shape is kept ``(B, 1, *S)``."""
    return (target_scores.detach().float() - source_label) ** 2


def valid_feature_locations(valid_voxels: torch.Tensor, feature_shape: tuple[int, ...],
                            min_valid_fraction: float = 0.5) -> torch.Tensor:
    """Bring a voxel-level validity mask ``(B, 1, *patch)`` (True inside the image) to the feature grid ``*S``.

    A feature location is valid when at least ``min_valid_fraction`` of the voxels it covers are valid
    (area averaging; feature grids of nnU-Net's decoder divide the patch size exactly).
    """
    if tuple(valid_voxels.shape[2:]) == tuple(feature_shape):
        return valid_voxels.bool()
    fraction = F.adaptive_avg_pool3d(valid_voxels.float(), feature_shape) if len(feature_shape) == 3 \
        else F.adaptive_avg_pool2d(valid_voxels.float(), feature_shape)
    return fraction >= min_valid_fraction


def top_fraction_mask(gap: torch.Tensor, valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """Select, per sample, the ``ceil(ratio * n_valid)`` valid locations with the largest gap.

    Args:
        gap: ``(B, 1, *S)`` float gap map.
        valid: ``(B, 1, *S)`` bool, True where a location may be selected.
        ratio: fraction in (0, 1]; 1 selects every valid location (global alignment).
    Returns:
        bool mask ``(B, 1, *S)``; a sample without valid locations selects nothing.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"mask ratio must be in (0, 1], got {ratio}")
    if gap.shape != valid.shape:
        raise ValueError(f"gap {tuple(gap.shape)} and valid {tuple(valid.shape)} must have the same shape")
    b = gap.shape[0]
    flat_valid = valid.reshape(b, -1)
    flat_gap = gap.reshape(b, -1).float().masked_fill(~flat_valid, float("-inf"))
    k = torch.ceil(ratio * flat_valid.sum(dim=1, keepdim=True).float())
    # rank of every location within its sample (0 = largest gap), without per-sample Python loops: k differs per
    # sample, and a loop would wait for the device to learn it
    order = flat_gap.argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)
    return ((ranks < k) & flat_valid).reshape(gap.shape)

def soft_gap_weights(gap: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft alternative to the hard mask: weights ``softmax(gap / (temperature * mean_gap))`` over each sample's
    valid locations, rescaled to average 1 over them (so the loss scale matches the hard mask). Invalid: 0."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = gap.shape[0]
    flat_gap = gap.reshape(b, -1).float()
    flat_valid = valid.reshape(b, -1)
    n_valid = flat_valid.sum(dim=1, keepdim=True).clamp_min(1)
    mean_gap = (flat_gap * flat_valid).sum(dim=1, keepdim=True) / n_valid
    logits = (flat_gap / (temperature * mean_gap.clamp_min(1e-8))).masked_fill(~flat_valid, float("-inf"))
    weights = torch.softmax(logits, dim=1).nan_to_num(0.0) * n_valid
    return weights.reshape(gap.shape)
