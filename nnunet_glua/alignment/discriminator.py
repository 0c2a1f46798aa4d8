"""Feature-level domain discriminator: a per-location source-vs-target score on segmentation-network features, one
per tapped decoder stage, and its update step."""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
from torch import nn

from nnunet_glua.alignment.local_mask import valid_feature_locations
from nnunet_glua.alignment.losses import SOURCE_LABEL, TARGET_LABEL, discriminator_loss


class FeatureDiscriminator(nn.Module):
    """Fully convolutional discriminator that keeps the spatial resolution of its input.

    Input: features ``(B, C, *spatial)`` with 2 or 3 spatial dims (a decoder stage of nnU-Net's U-Net).
    Output: raw scores ``(B, 1, *spatial)``, one per feature location; trained towards 1 for source and 0 for
    target (least-squares GAN), so a target location scored near 0 is one where the domain gap is large.

    No normalisation layers: instance or batch statistics would remove exactly the per-sample intensity/style
    statistics that tell the domains apart. Strided convolutions are avoided so the score map lines up 1:1 with
    the feature locations that the local mask selects; the receptive field is ``2 * num_layers + 1`` locations.
    """

    def __init__(self, in_channels: int, spatial_dims: int, width: int = 64, num_layers: int = 3,
                 negative_slope: float = 0.2):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_layers):
            layers += [conv(channels, width, kernel_size=3, padding=1), nn.LeakyReLU(negative_slope, inplace=True)]
            channels = width
        layers.append(conv(channels, 1, kernel_size=1))
        self.net = nn.Sequential(*layers)
        self.spatial_dims = spatial_dims

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected features of shape (B, C, {'X, Y, Z' if self.spatial_dims == 3 else 'X, Y'}), "
                             f"got {tuple(features.shape)}")
        return self.net(features)


class StageDiscriminators(nn.Module):
    """One :class:`FeatureDiscriminator` per tapped decoder stage; ``forward(list of features) -> list of scores``.

    A single module so that DDP wraps (and all-reduces) all of them with one reducer.
    """

    def __init__(self, channels: Sequence[int], spatial_dims: int, width: int, num_layers: int):
        super().__init__()
        self.stages = nn.ModuleList(FeatureDiscriminator(c, spatial_dims, width, num_layers) for c in channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.stages):
            raise ValueError(f"expected features of {len(self.stages)} stages, got {len(features)}")
        return [d(f) for d, f in zip(self.stages, features)]


def update_discriminators(discriminator: nn.Module, optimizer: torch.optim.Optimizer,
                          scaler: torch.amp.GradScaler | None, source_features: Sequence[torch.Tensor],
                          target_features: Sequence[torch.Tensor], source_valid_voxels: torch.Tensor,
                          target_valid_voxels: torch.Tensor, min_valid_fraction: float,
                          guard: Callable[[torch.Tensor], torch.Tensor] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step of ``discriminator`` (a :class:`StageDiscriminators`, possibly DDP-wrapped) on detached
    features: valid source locations towards :data:`SOURCE_LABEL`, valid target locations towards
    :data:`TARGET_LABEL`.

    ``source_features`` / ``target_features``: one ``(B_s | B_t, C, *S)`` tensor per stage; ``source_valid_voxels``
    ``(B_s, 1, *patch)`` and ``target_valid_voxels`` ``(B_t, 1, *patch)``: bool, True inside the image, so padding
    and the outside of the body count alike in both domains (else "zero padding means source" would be learnt).
    Source and target go through the discriminator in one call, concatenated along the batch axis, so DDP's gradient
    hooks fire once per parameter. ``guard(loss)`` runs before the backward pass and returns the loss to step with
    (it may raise, or return NaN so that the AMP ``scaler`` skips the step). ``scaler``: AMP's GradScaler on CUDA,
    ``None`` on the CPU. Returns 0-d tensors on the device, without waiting for it: the loss, the accuracy on valid
    source locations and on valid target locations (NaN where there are none).
    """
    n_s = source_features[0].shape[0]
    device = source_features[0].device
    amp = torch.autocast(device.type, enabled=True) if device.type == "cuda" else contextlib.nullcontext()
    optimizer.zero_grad(set_to_none=True)
    threshold = 0.5 * (SOURCE_LABEL + TARGET_LABEL)
    correct_s = correct_t = n_vs = n_vt = torch.zeros((), device=device)
    with amp:
        scores = discriminator([torch.cat((s, t), 0) for s, t in zip(source_features, target_features)])
        losses = []
        for sc in scores:
            s_sc, t_sc = sc[:n_s], sc[n_s:]
            valid_s = valid_feature_locations(source_valid_voxels, tuple(s_sc.shape[2:]), min_valid_fraction)
            valid_t = valid_feature_locations(target_valid_voxels, tuple(t_sc.shape[2:]), min_valid_fraction)
            losses.append(discriminator_loss(s_sc, t_sc, valid_s, valid_t))
            correct_s = correct_s + ((s_sc.detach() > threshold) & valid_s).sum()
            correct_t = correct_t + ((t_sc.detach() < threshold) & valid_t).sum()
            n_vs, n_vt = n_vs + valid_s.sum(), n_vt + valid_t.sum()
        loss = torch.stack(losses).mean()
    if guard is not None:
        loss = guard(loss)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), correct_s / n_vs, correct_t / n_vt
