"""Feature-level domain discriminator: a per-location source-vs-target score on segmentation-network features."""
from __future__ import annotations

import torch
from torch import nn


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
