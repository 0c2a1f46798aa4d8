"""Quality checks of a trained translator: are translated source images target-like, and is their content intact?

Inputs: the translator, the labelled *source* preprocessed folder, the unlabelled *target* preprocessed folder and,
optionally, a labelled target folder (for UDA datasets only the target *test* cases have labels; they may be used
here, in a diagnostic, never in training). Source labels are only applied to source and translated-source images.
Slices are deterministic, evenly spread over all cases (``max_slices`` per folder), body-centred crops of the size
the translator was trained on. Each source case gets one style from the style bank, as in training use.

(a) Target-likeness
    * ``intensity``: per structure (source labels; 0 = body without structure) and channel, mean/std of real source,
      translated source and - if given - labelled target voxels.
    * ``histogram``: Wasserstein-1 distance between body-voxel intensity distributions (per channel): source vs
      target and translated vs target, and the fraction of that distance translation removed ("gap closed").
    * ``domain_classifier``: a small CNN (:mod:`~nnunet_glua.style.domain_classifier`) trained on real source vs
      real target slices of one half of the cases; reported are its accuracy on the other half, and the fraction of
      the other half's translated source slices that it classifies as target (real source as reference).
(b) Content preservation
    * ``reconstruction``: self-reconstruction and cross-cycle (source -> target -> source with the slice's own
      source style) L1 error inside the body, in z-units.
    * ``edges``: Dice between the structure boundaries of the source labels (dilated by one pixel) and as many of
      the image's strongest gradient-magnitude pixels (inside the eroded body), for source, translated and labelled
      target images. Translation that moves or erases boundaries lowers the translated value below the source one.
    * ``separability``: for each pair of structures ``|mean_a - mean_b| / sqrt(std_a^2 + std_b^2)`` (channel 0); the
      minimum over pairs says whether every structure is still distinguishable from its neighbours. Contrast may
      invert between modalities, so no intensity *ordering* is required.

:func:`style_report` returns a JSON-safe dict, :func:`format_report` renders it as a readable table.
"""
from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_dilation, binary_erosion

from nnunet_glua.style.domain_classifier import predict_target_probability, train_domain_classifier
from nnunet_glua.style.networks import padded_size
from nnunet_glua.style.slice_sampler import SliceBatch, SliceSampler
from nnunet_glua.style.translate import Translator

__all__ = ["style_report", "format_report", "wasserstein_1d", "edge_dice", "separability"]


def wasserstein_1d(a: np.ndarray, b: np.ndarray, n_quantiles: int = 1000) -> float:
    """W1 distance between two 1D samples (mean absolute difference of matched quantiles)."""
    if a.size == 0 or b.size == 0:
        return float("nan")
    q = np.linspace(0, 1, n_quantiles)
    return float(np.abs(np.quantile(a, q) - np.quantile(b, q)).mean())


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of (H, W) ``labels`` whose 4-neighbour has another label, where at least one of both is a structure."""
    edge = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        a = np.moveaxis(labels, axis, 0)
        diff = (a[1:] != a[:-1]) & ((a[1:] > 0) | (a[:-1] > 0)) & (a[1:] >= 0) & (a[:-1] >= 0)
        e = np.moveaxis(edge, axis, 0)
        e[1:] |= diff
        e[:-1] |= diff
    return edge


def edge_dice(images: np.ndarray, labels: np.ndarray) -> float:
    """Dice of dilated structure boundaries vs the same number of strongest-gradient pixels, over all slices.

    ``images`` (N, H, W) one channel, ``labels`` (N, H, W) with -1 outside the body. NaN without boundaries.
    """
    inter = total = 0
    for img, lab in zip(images, labels):
        boundary = binary_dilation(_boundaries(lab))
        region = binary_erosion(lab >= 0, iterations=2)
        boundary &= region
        k = int(boundary.sum())
        if k == 0:
            continue
        gy, gx = np.gradient(img.astype(np.float64))
        grad = np.hypot(gy, gx)[region]
        if grad.size == 0:
            continue
        threshold = np.sort(grad)[::-1][min(k, grad.size) - 1]
        strong = np.zeros(lab.shape, bool)
        strong[region] = np.hypot(gy, gx)[region] >= threshold
        inter += int((strong & boundary).sum())
        total += int(strong.sum()) + k
    return float(2 * inter / total) if total else float("nan")


def _label_stats(values: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per label >= 0: mean, std, voxels of ``values`` (N, H, W) under ``labels`` (N, H, W)."""
    out = {}
    for lab in sorted(int(v) for v in np.unique(labels) if v >= 0):
        v = values[labels == lab]
        out[str(lab)] = {"mean": float(v.mean()), "std": float(v.std()), "voxels": int(v.size)}
    return out


def separability(stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Pairwise ``|dmean| / sqrt(std_a^2 + std_b^2)`` of :func:`_label_stats` output; min and per pair."""
    pairs = {}
    for a, b in itertools.combinations(sorted(stats, key=int), 2):
        sa, sb = stats[a], stats[b]
        pairs[f"{a}-{b}"] = abs(sa["mean"] - sb["mean"]) / max(np.hypot(sa["std"], sb["std"]), 1e-6)
    return {"min": min(pairs.values()) if pairs else float("nan"), "pairs": pairs}


@torch.no_grad()
def _round_trip(translator: Translator, x: np.ndarray, styles: torch.Tensor, chunk: int = 64
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(translated u = G_T(c_s, style), self-reconstruction G_S(c_s, s_s), cross cycle G_S(E_c(u), s_s)), float32."""
    gens, dev = translator.generators, translator.device
    outs: tuple[list, list, list] = ([], [], [])
    for start in range(0, len(x), chunk):
        xs = torch.from_numpy(x[start:start + chunk]).to(dev)
        c_s, s_s = gens.encode(xs, "source")
        u = gens.decode(c_s, styles[start:start + chunk].to(dev), "target")
        outs[0].append(u.float().cpu().numpy())
        outs[1].append(gens.decode(c_s, s_s, "source").float().cpu().numpy())
        outs[2].append(gens.decode(gens.content_encoder(u, "target"), s_s, "source").float().cpu().numpy())
    return tuple(np.concatenate(o) for o in outs)  # type: ignore[return-value]


def _split_by_case(batch: SliceBatch) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, held_out) masks: alternate cases, or alternate slices when there is only one case."""
    cases = batch.origin[:, 0]
    unique = np.unique(cases)
    if len(unique) >= 2:
        held = np.isin(cases, unique[1::2])
    else:
        held = np.arange(len(cases)) % 2 == 1
    if held.all() or not held.any():
        held = np.arange(len(cases)) % 2 == 1
    return ~held, held


def style_report(translator: Translator, source_folder: str | os.PathLike, target_folder: str | os.PathLike, *,
                 target_labelled_folder: str | os.PathLike | None = None, max_slices: int = 400,
                 slice_size: tuple[int, int] | None = None, classifier_iterations: int = 300, seed: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """Compute the quality report (see the module docstring); returns a JSON-safe dict.

    ``slice_size`` (H, W): in-plane size of the report's slices; default: the size the translator was trained on
    (its crops), else the source cases' median in-plane shape. Rounded up to the generator's multiple.
    """
    cfg = translator.config
    multiple = cfg.network.spatial_multiple
    kwargs = dict(min_body_fraction=cfg.min_body_fraction, augmentation=None, progress=progress)
    src = SliceSampler(source_folder, (multiple, multiple), name="source", **kwargs)
    trained = slice_size or translator.slice_size or (tuple(cfg.slice_size) if cfg.slice_size else None)
    crop = padded_size(trained or src.median_inplane_shape(), multiple)
    src.crop_size = crop
    tgt = SliceSampler(target_folder, crop, name="target", **kwargs)
    sb = src.fixed_batch(src.evenly_spaced(max_slices), with_labels=True)
    tb = tgt.fixed_batch(tgt.evenly_spaced(max_slices))
    gen = torch.Generator().manual_seed(seed)
    case_styles = translator.sample_styles(len(src.identifiers), gen).cpu()
    styles = case_styles[torch.from_numpy(sb.origin[:, 0])]
    translated, rec, cyc = _round_trip(translator, sb.images, styles)
    labels = sb.labels[:, 0]
    body_s, body_t = sb.body[:, 0], tb.body[:, 0]

    channels = sb.images.shape[1]
    intensity: dict[str, Any] = {"source": {}, "translated": {}}
    histogram = []
    for c in range(channels):
        intensity["source"][str(c)] = _label_stats(sb.images[:, c], labels)
        intensity["translated"][str(c)] = _label_stats(translated[:, c], labels)
        w_src = wasserstein_1d(sb.images[:, c][body_s], tb.images[:, c][body_t])
        w_tr = wasserstein_1d(translated[:, c][body_s], tb.images[:, c][body_t])
        histogram.append({"channel": c, "w1_source_vs_target": w_src, "w1_translated_vs_target": w_tr,
                          "gap_closed": (1.0 - w_tr / w_src) if w_src > 1e-9 else float("nan")})

    train_s, held_s = _split_by_case(sb)
    train_t, held_t = _split_by_case(tb)
    clf = train_domain_classifier(sb.images[train_s], tb.images[train_t], translator.device, seed=seed,
                                  iterations=classifier_iterations)
    p_src = predict_target_probability(clf, sb.images[held_s], translator.device)
    p_tgt = predict_target_probability(clf, tb.images[held_t], translator.device)
    p_tr = predict_target_probability(clf, translated[held_s], translator.device)
    accuracy = float(np.concatenate([p_src < 0.5, p_tgt >= 0.5]).mean())

    body_err = np.broadcast_to(body_s[:, None], sb.images.shape)
    edges = {"source": edge_dice(sb.images[:, 0], labels), "translated": edge_dice(translated[:, 0], labels)}
    sep = {"source": separability(intensity["source"]["0"]), "translated": separability(intensity["translated"]["0"])}

    target_labelled = None
    if target_labelled_folder is not None:
        tl = SliceSampler(target_labelled_folder, crop, name="labelled target", **kwargs)
        tlb = tl.fixed_batch(tl.evenly_spaced(max_slices), with_labels=True)
        intensity["target_labelled"] = {str(c): _label_stats(tlb.images[:, c], tlb.labels[:, 0])
                                        for c in range(channels)}
        edges["target_labelled"] = edge_dice(tlb.images[:, 0], tlb.labels[:, 0])
        sep["target_labelled"] = separability(intensity["target_labelled"]["0"])
        target_labelled = {"folder": str(target_labelled_folder), "slices": int(len(tlb.images))}

    return {
        "checkpoint": translator.source,
        "identity": translator.identity.to_dict(),
        "slices": {"source": int(len(sb.images)), "target": int(len(tb.images)), "crop_size": list(crop),
                   "target_labelled": target_labelled},
        "target_likeness": {
            "intensity": intensity,
            "histogram": histogram,
            "domain_classifier": {"held_out_accuracy_real": accuracy,
                                  "fraction_target_translated": float((p_tr >= 0.5).mean()) if p_tr.size else None,
                                  "fraction_target_real_source": float((p_src >= 0.5).mean()) if p_src.size else None,
                                  "held_out_slices": {"source": int(held_s.sum()), "target": int(held_t.sum())},
                                  "iterations": classifier_iterations},
        },
        "content_preservation": {
            "reconstruction": {"self_reconstruction_l1": float(np.abs(rec - sb.images)[body_err].mean()),
                               "cross_cycle_l1": float(np.abs(cyc - sb.images)[body_err].mean())},
            "edges": {**edges, "ratio_translated_to_source": edges["translated"] / edges["source"]
                      if edges["source"] and np.isfinite(edges["source"]) else float("nan")},
            "separability": sep,
        },
    }


def _f(v: Any, fmt: str = "{:.3f}") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return fmt.format(v)


def format_report(report: dict[str, Any]) -> str:
    """Human-readable tables of a :func:`style_report` result."""
    tl, cp = report["target_likeness"], report["content_preservation"]
    s = report["slices"]
    lines = [f"Style translator quality report - {report['checkpoint']}",
             f"slices: {s['source']} source, {s['target']} target, crop {s['crop_size'][0]}x{s['crop_size'][1]}", "",
             "(a) How target-like are translated source images?",
             "  channel  W1(source,target)  W1(translated,target)  gap closed"]
    for h in tl["histogram"]:
        lines.append(f"  {h['channel']:>7}  {_f(h['w1_source_vs_target']):>17}  {_f(h['w1_translated_vs_target']):>21}"
                     f"  {_f(h['gap_closed'], '{:.0%}'):>10}")
    dc = tl["domain_classifier"]
    lines += [f"  domain classifier: accuracy on held-out real slices {_f(dc['held_out_accuracy_real'])}; "
              f"called 'target': translated {_f(dc['fraction_target_translated'])}, "
              f"real source {_f(dc['fraction_target_real_source'])}", "",
              "  Per-structure intensity, channel 0 (mean +- std; source labels on source and translated images)"]
    inten = tl["intensity"]
    cols = [k for k in ("source", "translated", "target_labelled") if k in inten]
    lines.append("  label  " + "".join(f"{c:>20}" for c in cols))
    labels = sorted({lab for c in cols for lab in inten[c]["0"]}, key=int)
    for lab in labels:
        cells = []
        for c in cols:
            st = inten[c]["0"].get(lab)
            cells.append(f"{st['mean']:+.2f} +- {st['std']:.2f}" if st else "-")
        lines.append(f"  {lab:>5}  " + "".join(f"{cell:>20}" for cell in cells))
    rec, edges, sep = cp["reconstruction"], cp["edges"], cp["separability"]
    lines += ["", "(b) Is the content preserved?",
              f"  L1 in the body (z-units): self-reconstruction {_f(rec['self_reconstruction_l1'])}, "
              f"cross-cycle {_f(rec['cross_cycle_l1'])}",
              "  edge Dice (label boundaries vs strongest gradients): " + ", ".join(
                  f"{k} {_f(edges[k])}" for k in ("source", "translated", "target_labelled") if k in edges)
              + f" (translated/source {_f(edges['ratio_translated_to_source'])})",
              "  structure separability (min pairwise |dmean|/std): " + ", ".join(
                  f"{k} {_f(v['min'])}" for k, v in sep.items())]
    return "\n".join(lines)
