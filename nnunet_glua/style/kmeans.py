"""Small seeded k-means (k-means++ initialisation, Lloyd iterations) in torch, for style codes.

Style codes are few (thousands) and low-dimensional (8), so this runs in milliseconds on the CPU; it exists so the
package needs no scikit-learn. Deterministic for a given seed: all randomness comes from one ``torch.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["KMeansResult", "kmeans"]


@dataclass
class KMeansResult:
    """``centres`` (k, d), ``labels`` (n,) int64, ``inertia`` = sum of squared distances to the assigned centre."""

    centres: torch.Tensor
    labels: torch.Tensor
    inertia: float


def _plus_plus_init(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    centres = [x[int(torch.randint(n, (1,), generator=gen))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # all remaining points coincide with a centre
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(d2 / total, 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return torch.stack(centres)


def _lloyd(x: torch.Tensor, centres: torch.Tensor, max_iter: int, tol: float) -> KMeansResult:
    labels = torch.zeros(x.shape[0], dtype=torch.int64)
    for _ in range(max_iter):
        dist = torch.cdist(x, centres)
        labels = dist.argmin(1)
        new = centres.clone()
        for j in range(centres.shape[0]):
            members = x[labels == j]
            if len(members):
                new[j] = members.mean(0)
            else:
                # an empty cluster takes the point farthest from its centre, so k clusters survive
                far = int(dist.gather(1, labels[:, None]).squeeze(1).argmax())
                new[j] = x[far]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= tol:
            break
    dist = torch.cdist(x, centres)
    labels = dist.argmin(1)
    inertia = float((dist.gather(1, labels[:, None]) ** 2).sum())
    return KMeansResult(centres, labels, inertia)


def kmeans(x: torch.Tensor, k: int, seed: int = 0, n_init: int = 4, max_iter: int = 100,
           tol: float = 1e-8) -> KMeansResult:
    """Cluster ``x`` (n, d) into ``min(k, number of distinct points)`` clusters; the best of ``n_init`` restarts.

    Computed in float64 on the CPU regardless of ``x``'s device (tiny problem; exact reproducibility matters more).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty (n, d) tensor, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"kmeans needs k >= 1, got {k}")
    x = x.detach().to("cpu", torch.float64)
    k = min(k, int(torch.unique(x, dim=0).shape[0]))
    gen = torch.Generator().manual_seed(int(seed))
    best: KMeansResult | None = None
    for _ in range(max(1, n_init)):
        result = _lloyd(x, _plus_plus_init(x, k, gen), max_iter, tol)
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    return best
