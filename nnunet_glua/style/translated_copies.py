"""Target-like copies of the preprocessed source cases, written once next to the preprocessed data.

GLUA's global alignment translates source images *before* nnU-Net's intensity augmentation: the translator was
trained on un-augmented intensities, and noise, blur, contrast and gamma applied afterwards then act on target-like
images as they act on real target images. Rather than translating inside every training step, each labelled source
case is translated once, whole, with ``styles_per_case`` styles drawn from the style bank, and nnU-Net's own loader
samples these copies (:mod:`nnunet_glua.data.translated_source`): translation then costs nothing per step and the
whole augmentation pipeline runs on translated patches.

Layout (``nnUNet_preprocessed/<dataset>/glua_translated_<plans>_<configuration>_<key>/``)::

    manifest.json                 key, translator identity, styles per case, seed, cases, cases finished
    <case>__style<k>.b2nd/.pkl    copy k of a case: translated image; properties and _seg.b2nd as the source's

``key`` hashes the translator's identity (data, plans, training run, iteration), the cases, ``styles_per_case`` and
the seed, so another translator, a re-plan or another seed never reuses stale copies. Voxels outside the image
(segmentation < 0) keep their source values (0 with ``use_mask_for_norm``). Resumable: a case counts only once it
is listed as finished in the manifest, which is rewritten atomically after each case.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from nnunet_glua.json_io import read_json, write_json

__all__ = ["STYLE_SEPARATOR", "copy_identifier", "source_case_of", "copies_key", "copies_folder",
           "write_translated_copies"]

FOLDER_PREFIX = "glua_translated"
STYLE_SEPARATOR = "__style"
MANIFEST = "manifest.json"
_FORMAT_VERSION = 1


def copy_identifier(case: str, style: int) -> str:
    """The identifier of copy ``style`` of ``case`` (``<case>__style<k>``)."""
    return f"{case}{STYLE_SEPARATOR}{int(style)}"


def source_case_of(identifier: str) -> str | None:
    """The source case a copy identifier belongs to; ``None`` for an identifier that is not a copy."""
    case, sep, style = identifier.rpartition(STYLE_SEPARATOR)
    return case if sep and style.isdigit() else None


def copies_key(translator_identity: Mapping[str, Any], cases: Sequence[str], styles_per_case: int, seed: int) -> str:
    """16 hex digits identifying one set of copies (see the module docstring)."""
    blob = json.dumps({"translator": dict(translator_identity), "cases": sorted(cases),
                       "styles_per_case": int(styles_per_case), "seed": int(seed), "version": _FORMAT_VERSION},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def copies_folder(preprocessed_dataset_folder: "str | os.PathLike", plans_identifier: str, configuration: str,
                  key: str) -> Path:
    """Where the copies of ``key`` live, next to the configuration's preprocessed data (never inside it: nnU-Net
    would take them for training cases)."""
    return Path(preprocessed_dataset_folder) / f"{FOLDER_PREFIX}_{plans_identifier}_{configuration}_{key}"


def _finished(folder: Path, key: str) -> list[str]:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return []
    content = read_json(manifest)
    return list(content.get("finished", [])) if content.get("key") == key else []


def write_translated_copies(source_folder: "str | os.PathLike", out_folder: "str | os.PathLike", key: str, translator,
                            cases: Sequence[str], styles_per_case: int, seed: int, patch_size: Sequence[int],
                            log: Callable[[str], None] | None = None, progress: bool = True) -> Path:
    """Write ``styles_per_case`` translated copies of every case of ``cases`` from the preprocessed
    ``source_folder`` into ``out_folder`` (resuming a partial run of the same ``key``, see :func:`copies_key`);
    returns ``out_folder``.

    ``translator``: a :class:`~nnunet_glua.style.translate.Translator` (its device does the work: the GPU when the
    trainer has one); ``seed``: styles of case ``c`` are drawn from a generator seeded with ``seed`` and ``c``, so a
    copy does not depend on which other cases exist or in which order they are written; ``patch_size``: the
    configuration's patch size (blosc2 chunking for nnU-Net's patch reads).
    """
    from nnunetv2.training.dataloading.nnunet_dataset import (comp_blosc2_params, infer_dataset_class,
                                                               nnUNetDatasetBlosc2)

    if styles_per_case < 1:
        raise ValueError(f"styles_per_case must be >= 1, got {styles_per_case}")
    say = log or (lambda message: None)
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    finished = set(_finished(out, key))
    todo = [c for c in cases if c not in finished]
    manifest: dict[str, Any] = {"format_version": _FORMAT_VERSION, "key": key,
                                "translator": translator.identity_dict(), "styles_per_case": int(styles_per_case),
                                "seed": int(seed), "source_folder": str(source_folder), "cases": sorted(cases),
                                "finished": sorted(finished & set(cases))}
    if not todo:
        return out
    say(f"translated source copies: {len(todo)} of {len(cases)} cases x {styles_per_case} styles -> {out}")
    source = infer_dataset_class(str(source_folder))(str(source_folder), list(todo))
    for case in tqdm(todo, desc="translated source copies", unit="case", disable=not progress):
        data, seg, _, properties = source.load_case(case)
        data = np.asarray(data, dtype=np.float32)
        seg = np.asarray(seg)
        generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(case.encode())) % 2**63)
        styles = translator.sample_styles(styles_per_case, generator)
        blocks, chunks = comp_blosc2_params(data.shape, tuple(patch_size), data.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(patch_size), seg.itemsize)
        for k in range(styles_per_case):
            translated = translator.translate_volume(data, valid_mask=seg[0] >= 0, style=styles[k])
            nnUNetDatasetBlosc2.save_case(translated, seg, properties, str(out / copy_identifier(case, k)),
                                          chunks=chunks, blocks=blocks, chunks_seg=chunks_seg, blocks_seg=blocks_seg)
        manifest["finished"] = sorted(set(manifest["finished"]) | {case})
        write_json(manifest, out / MANIFEST)
    return out
