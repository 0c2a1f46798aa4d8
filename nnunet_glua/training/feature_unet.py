"""A view of nnU-Net's U-Net whose forward can also return decoder features.

nnU-Net needs ``trainer.network`` to stay the bare U-Net (deep-supervision toggling, checkpoints, validation and
export all use it). Feature alignment needs the decoder features of the very same forward pass, and hooks with
Python side effects break ``torch.compile``'s graph. So this module *shares* the U-Net's ``encoder`` and
``decoder`` (identical parameters and state-dict keys) and replays the decoder loop, returning the chosen
stage's output next to the logits. This wrapper is what gets compiled and DDP-wrapped.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def decoder_stage_at_stride(encoder_strides: Sequence[Sequence[int] | int], stride: int) -> int:
    """Index into ``decoder.stages`` of the stage whose output has the largest total downsampling (max over axes)
    that does not exceed ``stride``; the coarsest decoder stage if all are finer.

    ``encoder_strides``: the plans' per-stage strides (``arch_kwargs["strides"]``). Decoder stage ``s`` works at
    the resolution of encoder stage ``n_stages - 2 - s``.
    """
    totals = []
    total = None
    for st in encoder_strides:
        st = [st] if isinstance(st, int) else list(st)
        total = st if total is None else [a * b for a, b in zip(total, st)]
        totals.append(max(total))
    n_decoder = len(encoder_strides) - 1
    candidates = [s for s in range(n_decoder) if totals[n_decoder - 1 - s] <= stride]
    return min(candidates) if candidates else n_decoder - 1


class FeatureTapUNet(nn.Module):
    """Wraps a ``dynamic_network_architectures`` U-Net (``PlainConvUNet``, ``ResidualEncoderUNet``, ...).

    Args:
        unet: the network built by nnU-Net; its ``encoder`` and ``decoder`` are shared, not copied.
        feature_stages: indices into ``unet.decoder.stages`` whose outputs are returned, Python-style
            (``-1`` = full resolution, ``0`` = the stage right after the bottleneck).

    ``forward(x)`` returns exactly what ``unet(x)`` returns. ``forward(x, return_features=True)`` returns
    ``(logits, [features of each chosen stage])``, features shaped ``(B, C_stage, *spatial_stage)``.
    """

    def __init__(self, unet: nn.Module, feature_stages: Sequence[int] = (-3,)):
        super().__init__()
        if not (hasattr(unet, "encoder") and hasattr(unet, "decoder") and hasattr(unet.decoder, "stages")):
            raise TypeError(f"{type(unet).__name__} is not a dynamic_network_architectures U-Net "
                            "(needs .encoder and .decoder.stages); feature alignment cannot tap it")
        n = len(unet.decoder.stages)
        resolved = []
        for s in feature_stages:
            if not -n <= s < n:
                raise ValueError(f"decoder feature stage {s} out of range: this U-Net has {n} decoder stages "
                                 f"(valid indices {-n}..{n - 1})")
            resolved.append(s % n)
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.feature_stages = tuple(resolved)

    def stage_channels(self) -> list[int]:
        """Channel count of each chosen stage's output (for building the discriminator)."""
        out = []
        for s in self.feature_stages:
            convs = [m for m in self.decoder.stages[s].modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
            out.append(convs[-1].out_channels)
        return out

    def forward(self, x: torch.Tensor, return_features: bool = False, num_segmented: int | None = None):
        """``num_segmented`` (with ``return_features``): only the first ``num_segmented`` samples need logits (the
        labelled source part of a source + target batch); the others stop at the last tapped stage, so decoder
        stages finer than it and every segmentation head run on the first part only. Logits then have
        ``num_segmented`` samples, features all of them. Static shapes: ``torch.compile`` sees one graph."""
        skips = self.encoder(x)
        decoder = self.decoder
        lres = skips[-1]
        seg_outputs = []
        features: dict[int, torch.Tensor] = {}
        last = len(decoder.stages) - 1
        n = x.shape[0] if num_segmented is None or not return_features else int(num_segmented)
        last_tapped = max(self.feature_stages)
        for s in range(len(decoder.stages)):
            y = decoder.transpconvs[s](lres)
            y = torch.cat((y, skips[-(s + 2)][:y.shape[0]]), 1)
            y = decoder.stages[s](y)
            if s in self.feature_stages:
                features[s] = y
            if s == last_tapped and return_features:
                y = y[:n]
            if decoder.deep_supervision:
                seg_outputs.append(decoder.seg_layers[s](y[:n]))
            elif s == last:
                seg_outputs.append(decoder.seg_layers[-1](y[:n]))
            lres = y
        seg_outputs = seg_outputs[::-1]
        logits = seg_outputs if decoder.deep_supervision else seg_outputs[0]
        if return_features:
            return logits, [features[s] for s in self.feature_stages]
        return logits
