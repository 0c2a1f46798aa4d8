"""Least-squares adversarial losses on feature maps, averaged over selected locations only."""
from __future__ import annotations

import torch
from torch import nn

SOURCE_LABEL = 1.0
TARGET_LABEL = 0.0


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights.to(values.dtype)
    return (values * w).sum() / w.sum().clamp_min(1e-8)


def discriminator_loss(source_scores: torch.Tensor, target_scores: torch.Tensor,
                       source_valid: torch.Tensor, target_valid: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss: source locations towards 1, target locations towards 0, each domain averaged
    over its valid locations, the two halves weighted equally. Scores ``(B, 1, *S)``; valid masks bool, same shape."""
    src = _weighted_mean((source_scores.float() - SOURCE_LABEL) ** 2, source_valid)
    tgt = _weighted_mean((target_scores.float() - TARGET_LABEL) ** 2, target_valid)
    return 0.5 * (src + tgt)


def masked_alignment_loss(discriminator: nn.Module, target_features: torch.Tensor,
                          weights: torch.Tensor) -> torch.Tensor:
    """Alignment loss that pushes target features towards the source domain at the selected locations only.

    ``weights`` ``(B, 1, *S)``: a bool mask (hard local mask) or non-negative float weights (soft mask).
    The discriminator sees ``where(selected, f, f.detach())``: its receptive field spans neighbouring locations,
    and without the detach those unselected neighbours would receive gradient too. The loss is the
    weighted mean of ``(D(f) - 1)^2`` over the selected locations. The caller keeps the discriminator's own
    parameters out of this update (their gradients are zeroed or frozen around the call).
    """
    selected = weights > 0 if weights.dtype != torch.bool else weights
    routed = torch.where(selected, target_features, target_features.detach())
    scores = discriminator(routed)
    return _weighted_mean((scores.float() - SOURCE_LABEL) ** 2, weights)
