"""A small CNN that tells source slices from target slices - the judge of "how target-like" translations are.

Trained on real source (label 0) vs real target (label 1) slices for a fixed number of Adam steps, then asked
about translated source slices: the fraction it calls "target" measures how well translation fooled an independent
observer (the translator's own discriminators are not used: they co-adapted with the generators). Its accuracy on
held-out real slices is reported alongside, since a classifier that cannot separate the real domains says nothing.

Architecture: three stride-2 3x3 convs (16, 32, 64 channels, LeakyReLU, instance norm after the first), global
average pooling, linear. Deliberately small so it trains in seconds on the CPU and cannot memorise anatomy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DomainClassifier", "train_domain_classifier", "predict_target_probability"]


class DomainClassifier(nn.Module):
    """``(N, C, H, W)`` -> logit ``(N,)`` of "target"."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(16, 32, 3, 2, 1), nn.InstanceNorm2d(32), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        )
        self.head = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)).flatten()


def train_domain_classifier(source: np.ndarray, target: np.ndarray, device: torch.device, seed: int = 0,
                            iterations: int = 300, batch_size: int = 32, lr: float = 1e-3) -> DomainClassifier:
    """Fit on real slices ``source`` and ``target`` ((N, C, H, W) float32 arrays, same C, H, W), balanced batches."""
    if len(source) == 0 or len(target) == 0:
        raise ValueError("the domain classifier needs at least one source and one target slice")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(source.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xs, xt = torch.from_numpy(source), torch.from_numpy(target)
    half = max(1, batch_size // 2)
    model.train()
    for _ in range(iterations):
        i = torch.randint(len(xs), (half,), generator=gen)
        j = torch.randint(len(xt), (half,), generator=gen)
        x = torch.cat([xs[i], xt[j]]).to(device)
        y = torch.cat([torch.zeros(half), torch.ones(half)]).to(device)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict_target_probability(model: DomainClassifier, images: np.ndarray, device: torch.device,
                               batch_size: int = 128) -> np.ndarray:
    """P(target) for each slice of ``images`` (N, C, H, W) -> (N,) float."""
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).to(device)
        out.append(torch.sigmoid(model(x)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)
