"""Exponential moving average of the generators' weights (used for previews, the style bank and translation).

``shadow = decay_t * shadow + (1 - decay_t) * weights`` after every optimiser step, with the warm-up
``decay_t = min(decay, (1 + t) / (10 + t))`` so that the average is not dominated by the random initial weights in
short runs. Buffers (none in the current networks, which use affine-free instance norm) are copied, not averaged.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """Holds an eval-mode copy of ``model`` whose parameters track ``model``'s moving average."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.num_updates += 1
        for shadow, p in zip(self.model.parameters(), model.parameters()):
            shadow.lerp_(p.detach(), 1.0 - d)
        for shadow, b in zip(self.model.buffers(), model.buffers()):
            shadow.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
