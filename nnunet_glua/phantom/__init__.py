"""Synthetic cardiac and abdominal phantoms in the on-disk layouts of the public datasets (MMWHS, CHAOS, BTCV).

It makes data and converts nothing: the converters in :mod:`nnunet_glua.conversion` read its output exactly as
they read the real data sets. Entry points: :func:`make_phantom` (write a data set) and :func:`render_case`
(simulate one scan in memory); ``glua_make_phantom`` (:mod:`.cli`) is the command line. The layouts and what
makes the phantom realistic are described in :mod:`.generator`.
"""
from nnunet_glua.phantom.generator import (
    BTCV_IDS,
    CHAOS_IDS,
    DEFAULT_SIZE,
    KINDS,
    MANIFEST_NAME,
    MMWHS_IDS,
    Kind,
    PhantomCase,
    RenderedScan,
    make_phantom,
    planned_cases,
    render_case,
)

__all__ = ["BTCV_IDS", "CHAOS_IDS", "DEFAULT_SIZE", "KINDS", "MANIFEST_NAME", "MMWHS_IDS", "Kind", "PhantomCase",
           "RenderedScan", "make_phantom", "planned_cases", "render_case"]
