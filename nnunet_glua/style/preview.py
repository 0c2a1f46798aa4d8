"""Preview grids of the translator's progress as PNG (Pillow).

One row per preview sample, four columns: real source | source translated to target | real target | target
translated to source. Images are z-scored, so each is windowed for display: the two source-looking columns share one
window and the two target-looking columns another (1st-99th percentile of the real images' body voxels), so a
translated image is shown exactly as its real counterpart would be and intensity mismatches stay visible. Only the
first channel is shown. Small slices are enlarged by an integer factor (nearest neighbour) to at least 128 pixels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nnunet_glua.io_utils import atomic_path

__all__ = ["display_window", "to_uint8", "save_preview_grid", "PREVIEW_TITLES"]

PREVIEW_TITLES = ("source", "source->target", "target", "target->source")


def display_window(images: np.ndarray, body: np.ndarray | None = None) -> tuple[float, float]:
    """(low, high) = 1st and 99th percentile of ``images`` (inside ``body`` if given and not empty)."""
    values = images[body] if body is not None and body.any() else images.reshape(-1)
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return float(lo), float(hi)


def to_uint8(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return (np.clip((image - lo) / (hi - lo), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def save_preview_grid(path: str | os.PathLike, source: np.ndarray, source_to_target: np.ndarray, target: np.ndarray,
                      target_to_source: np.ndarray, source_body: np.ndarray | None = None,
                      target_body: np.ndarray | None = None, caption: str = "") -> Path:
    """Write the 4-column grid. Each array: (N, C, H, W) (channel 0 is shown) or (N, H, W). Atomic write."""
    cols = [np.asarray(a)[:, 0] if np.asarray(a).ndim == 4 else np.asarray(a)
            for a in (source, source_to_target, target, target_to_source)]
    sb = None if source_body is None else np.asarray(source_body).reshape(cols[0].shape).astype(bool)
    tb = None if target_body is None else np.asarray(target_body).reshape(cols[2].shape).astype(bool)
    w_src, w_tgt = display_window(cols[0], sb), display_window(cols[2], tb)
    windows = (w_src, w_tgt, w_tgt, w_src)
    n, h, w = cols[0].shape
    scale = max(1, int(np.ceil(128 / max(min(h, w), 1))))
    th, tw = h * scale, w * scale
    header, pad = 16, 2
    canvas = Image.new("L", (4 * (tw + pad) + pad, header + n * (th + pad) + pad + (14 if caption else 0)), 0)
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(PREVIEW_TITLES):
        draw.text((pad + j * (tw + pad) + 2, 2), title, fill=255)
    for i in range(n):
        for j, (col, win) in enumerate(zip(cols, windows)):
            tile = Image.fromarray(to_uint8(col[i], win)).resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (pad + j * (tw + pad), header + i * (th + pad)))
    if caption:
        draw.text((pad, canvas.height - 14), caption, fill=255)
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
