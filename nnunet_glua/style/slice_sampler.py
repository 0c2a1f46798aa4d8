"""2D training slices from an nnU-Net preprocessed case folder.

The folder is what ``nnUNetv2_plan_and_preprocess`` writes (or the target preprocessing, with the same plans): one
``(C, X, Y, Z)`` float array per case, already z-scored by nnU-Net - exactly what the segmentation network sees - and
a ``(1, X, Y, Z)`` segmentation whose ``-1`` marks the outside of nnU-Net's nonzero (body) region. Slices are taken
along ``X`` (dim 1 of the case array): nnU-Net puts the lowest-resolution axis first, so in-plane resolution is the
best available and the translator sees the same slices that a ``(B, C, X, Y, Z)`` patch has along its dim 2.

Sampling rules (documented defaults in :mod:`nnunet_glua.style.config`):

* a slice is used if its body (``seg >= 0``) covers at least ``min_body_fraction`` of the slice and its intensities
  are not constant; labels are *never* used, only the body mask (which nnU-Net derives from the image itself);
* a crop of ``crop_size`` is centred on a random point of the slice's body bounding box (crops stay on anatomy)
  and zero-padded where the slice is smaller - zero is also what nnU-Net's data loader pads patches with;
* augmentation: random in-plane flips and a per-channel intensity scale/shift applied inside the body only, so the
  background keeps its constant value and the crop border does not become a fake edge.

All randomness comes from one seeded ``numpy.random.Generator`` whose state is part of :meth:`state_dict`, so a
resumed run samples exactly what an uninterrupted one would have. Decoded cases are kept in an LRU cache
(``cache_bytes``) because a Blosc2 slice read decompresses whole chunks; preprocessed phantom or MM-WHS data fits.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from nnunet_glua.style.config import AugmentationConfig

__all__ = ["SliceSampler", "SliceBatch", "open_preprocessed_folder"]


def open_preprocessed_folder(folder: str | os.PathLike, identifiers: Iterable[str] | None = None):
    """Open an nnU-Net preprocessed case folder with nnU-Net's own dataset class; clear errors for bad folders."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: preprocessed case folder does not exist. Run nnUNetv2_plan_and_preprocess "
                                f"(source) or glua_preprocess_target (target) first.")
    try:
        cls = infer_dataset_class(str(folder))
    except (AssertionError, KeyError) as e:
        raise ValueError(f"{folder}: not an nnU-Net preprocessed case folder (expected one .b2nd or .npz file per "
                         f"case plus .pkl properties, and nothing else): {e}") from e
    ids = None if identifiers is None else sorted(identifiers)
    ds = cls(str(folder), ids)
    if not ds.identifiers:
        raise ValueError(f"{folder}: contains no preprocessed cases")
    return ds


def _to_numpy(a, dtype) -> np.ndarray:
    # Blosc2 NDArrays decode on indexing, numpy memmaps/arrays pass through
    return np.ascontiguousarray(a[...], dtype=dtype)


@dataclass
class SliceBatch:
    """A batch of 2D slices. ``images``: (N, C, H, W) float32 z-scored; ``body``: (N, 1, H, W) bool (False on padding
    and outside nnU-Net's nonzero region); ``labels``: (N, 1, H, W) int16 or None (-1 outside body / padding);
    ``origin``: (N, 2) int (case index, slice index) of each slice."""

    images: np.ndarray
    body: np.ndarray
    labels: np.ndarray | None
    origin: np.ndarray


class SliceSampler:
    """Random (training) or deterministic (evaluation) 2D slices of one preprocessed folder.

    Parameters
    ----------
    folder : nnU-Net preprocessed case folder.
    crop_size : (H, W) of every returned slice.
    identifiers : cases to use (default: all in the folder).
    forbidden_identifiers : ids that must not be among the cases (e.g. target test cases); raises if they are.
    expect_unlabelled : raise if any case has a label > 0 (guard for target data, which must be unlabelled).
    """

    def __init__(self, folder: str | os.PathLike, crop_size: tuple[int, int], *,
                 identifiers: Iterable[str] | None = None,
                 min_body_fraction: float = 0.05,
                 augmentation: AugmentationConfig | None = None,
                 seed: int = 0,
                 cache_bytes: int = 4 << 30,
                 name: str = "slices",
                 forbidden_identifiers: Iterable[str] = (),
                 expect_unlabelled: bool = False,
                 progress: bool = True):
        self.folder = Path(folder)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.name = name
        self.min_body_fraction = float(min_body_fraction)
        self.augmentation = augmentation
        self.cache_bytes = int(cache_bytes)
        self.expect_unlabelled = expect_unlabelled
        self._dataset = open_preprocessed_folder(self.folder, identifiers)
        self.identifiers: list[str] = list(self._dataset.identifiers)
        clash = sorted(set(self.identifiers) & set(forbidden_identifiers))
        if clash:
            raise ValueError(f"{self.folder}: {name} cases {clash} are test cases and must never be used to train the "
                             f"translator. Remove them from this folder (or pass identifiers without them).")
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cached_bytes = 0
        self.channels = -1
        self._build_index(progress)
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ index
    def _load(self, case: int) -> tuple[np.ndarray, np.ndarray]:
        """(data (C, X, Y, Z) float32, seg (X, Y, Z) int16) of case number ``case``, through the LRU cache."""
        if case in self._cache:
            self._cache.move_to_end(case)
            return self._cache[case]
        ident = self.identifiers[case]
        try:
            data, seg, _, _ = self._dataset.load_case(ident)
            data = _to_numpy(data, np.float32)
            seg = _to_numpy(seg, np.int16)[0] if seg is not None else np.where(np.any(data != 0, 0), 0, -1).astype(
                np.int16)
        except Exception as e:  # noqa: BLE001 - any decoder error: name the case
            raise ValueError(f"{self.folder / ident}: cannot read preprocessed case ({e})") from e
        if data.ndim != 4 or seg.shape != data.shape[1:]:
            raise ValueError(f"{self.folder / ident}: expected data (C, X, Y, Z) and seg (1, X, Y, Z), got "
                             f"{data.shape} and {seg.shape}")
        if self.expect_unlabelled and (seg > 0).any():
            raise ValueError(f"{self.folder / ident}: target case contains labels > 0. Target data used for the "
                             f"translator must be unlabelled; re-run the target preprocessing without labels.")
        if not np.isfinite(data).all():
            raise ValueError(f"{self.folder / ident}: data contains NaN or infinite values")
        size = data.nbytes + seg.nbytes
        while self._cache and self._cached_bytes + size > self.cache_bytes:
            _, (d, s) = self._cache.popitem(last=False)
            self._cached_bytes -= d.nbytes + s.nbytes
        if size <= self.cache_bytes:
            self._cache[case] = (data, seg)
            self._cached_bytes += size
        return data, seg

    def _build_index(self, progress: bool) -> None:
        cases, slices, boxes, fractions = [], [], [], []
        self.case_shapes: list[tuple[int, int, int]] = []
        for case, ident in enumerate(tqdm(self.identifiers, desc=f"Indexing {self.name} slices", disable=not progress,
                                          leave=False)):
            data, seg = self._load(case)
            if self.channels == -1:
                self.channels = data.shape[0]
            elif data.shape[0] != self.channels:
                raise ValueError(f"{self.folder / ident}: has {data.shape[0]} channels, other cases have "
                                 f"{self.channels}")
            self.case_shapes.append(tuple(int(v) for v in data.shape[1:]))
            body = seg >= 0
            fraction = body.reshape(body.shape[0], -1).mean(1)
            spread = data.reshape(data.shape[0], data.shape[1], -1).std(2).max(0)
            for k in np.nonzero((fraction >= max(self.min_body_fraction, 1e-9)) & (spread > 1e-6))[0]:
                ys, xs = np.nonzero(body[k].any(1)), np.nonzero(body[k].any(0))
                cases.append(case)
                slices.append(int(k))
                fractions.append(float(fraction[k]))
                boxes.append((ys[0].min(), ys[0].max(), xs[0].min(), xs[0].max()))
        if not cases:
            raise ValueError(f"{self.folder}: no usable {self.name} slices (every slice is near-empty: body below "
                             f"{self.min_body_fraction:.0%} of the slice, or constant intensity)")
        self.slice_case = np.asarray(cases, dtype=np.int64)
        self.slice_index = np.asarray(slices, dtype=np.int64)
        self.slice_box = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.slice_body_fraction = np.asarray(fractions, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.slice_case)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    # ------------------------------------------------------------------ cropping
    def _origin(self, length: int, size: int, lo: int, hi: int, rng: np.random.Generator | None) -> int:
        if length <= size:  # whole axis fits: place it (randomly) inside the zero-padded crop
            return int(rng.integers(length - size, 1)) if rng is not None else (length - size) // 2
        centre = int(rng.integers(lo, hi + 1)) if rng is not None else (lo + hi) // 2
        return int(np.clip(centre - size // 2, 0, length - size))

    def _crop(self, j: int, rng: np.random.Generator | None, with_labels: bool
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        data, seg = self._load(int(self.slice_case[j]))
        k = int(self.slice_index[j])
        y0b, y1b, x0b, x1b = self.slice_box[j]
        H, W = self.crop_size
        ly, lx = data.shape[2], data.shape[3]
        oy = self._origin(ly, H, y0b, y1b, rng)
        ox = self._origin(lx, W, x0b, x1b, rng)
        # intersection of the crop window with the slice
        sy0, sy1 = max(oy, 0), min(oy + H, ly)
        sx0, sx1 = max(ox, 0), min(ox + W, lx)
        img = np.zeros((data.shape[0], H, W), np.float32)
        lab = np.full((H, W), -1, np.int16)
        img[:, sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox] = data[:, k, sy0:sy1, sx0:sx1]
        lab[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox] = seg[k, sy0:sy1, sx0:sx1]
        return img, lab >= 0, (lab if with_labels else None)

    def _augment(self, img: np.ndarray, body: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        aug = self.augmentation
        if aug is None:
            return img, body
        for axis in (1, 2):
            if rng.random() < aug.flip_probability:
                img, body = np.flip(img, axis), np.flip(body, axis - 1)
        img = np.ascontiguousarray(img)
        body = np.ascontiguousarray(body)
        scale = 1.0 + rng.uniform(-aug.intensity_scale, aug.intensity_scale, size=img.shape[0])
        shift = rng.uniform(-aug.intensity_shift, aug.intensity_shift, size=img.shape[0])
        img = np.where(body[None], img * scale[:, None, None] + shift[:, None, None], img).astype(np.float32)
        return img, body

    # ------------------------------------------------------------------ public sampling
    def sample(self, n: int) -> SliceBatch:
        """``n`` random augmented slices (uniform over usable slices of all cases), advancing the sampler's RNG."""
        picks = self.rng.integers(0, len(self), size=n)
        imgs, bodies = [], []
        for j in picks:
            img, body, _ = self._crop(int(j), self.rng, False)
            img, body = self._augment(img, body, self.rng)
            imgs.append(img)
            bodies.append(body)
        origin = np.stack([self.slice_case[picks], self.slice_index[picks]], 1)
        return SliceBatch(np.stack(imgs), np.stack(bodies)[:, None], None, origin)

    def evenly_spaced(self, max_slices: int) -> np.ndarray:
        """Indices (into this sampler's usable slices) of at most ``max_slices`` slices spread over all cases."""
        n = min(max_slices, len(self))
        return np.unique(np.linspace(0, len(self) - 1, n).round().astype(np.int64))

    def representative(self, n: int) -> np.ndarray:
        """Indices of ``n`` informative slices for previews: the largest-body slice of each of ``n`` cases spread
        evenly over the folder (cases repeat when there are fewer than ``n``)."""
        cases = np.unique(self.slice_case)
        picks = cases[np.linspace(0, len(cases) - 1, n).round().astype(np.int64)]
        area = self.slice_body_fraction
        out = []
        for i, case in enumerate(picks):
            members = np.nonzero(self.slice_case == case)[0]
            order = members[np.argsort(-area[members], kind="stable")]
            out.append(order[min(i // len(cases), len(order) - 1)])  # a repeated case shows its next-largest slice
        return np.asarray(out, dtype=np.int64)

    def fixed_batch(self, indices: np.ndarray, with_labels: bool = False) -> SliceBatch:
        """Deterministic centre crops (body-centred, no augmentation) of the given usable-slice indices."""
        imgs, bodies, labs = [], [], []
        for j in indices:
            img, body, lab = self._crop(int(j), None, with_labels)
            imgs.append(img)
            bodies.append(body)
            labs.append(lab)
        labels = np.stack(labs)[:, None] if with_labels else None
        origin = np.stack([self.slice_case[indices], self.slice_index[indices]], 1)
        return SliceBatch(np.stack(imgs), np.stack(bodies)[:, None], labels, origin)

    def iter_fixed(self, max_slices: int, batch_size: int, with_labels: bool = False) -> Iterator[SliceBatch]:
        """Deterministic batches over :meth:`evenly_spaced` slices (style bank, quality report)."""
        idx = self.evenly_spaced(max_slices)
        for start in range(0, len(idx), batch_size):
            yield self.fixed_batch(idx[start:start + batch_size], with_labels)

    def case_array(self, case: int) -> tuple[np.ndarray, np.ndarray]:
        """Whole case ``(data (C, X, Y, Z) float32, seg (X, Y, Z) int16)`` by case number."""
        return self._load(case)

    def median_inplane_shape(self) -> tuple[int, int]:
        """Median in-plane (Y, Z) shape of the cases (used to derive a slice size when none is given)."""
        med = np.median(np.asarray([shape[1:] for shape in self.case_shapes]), 0)
        return int(med[0]), int(med[1])
