"""Picture of the local feature mask: where a trained GLUA model still sees the largest domain gap.

For an unlabelled target patch, the trained network's tapped decoder features go through the trained feature
discriminator; the per-location gap (:func:`~nnunet_glua.alignment.local_mask.gap_map`) and the top
``mask_ratio`` selection (:func:`~nnunet_glua.alignment.local_mask.top_fraction_mask`, exactly as in training)
are brought to the patch's voxel grid (nearest neighbour) and drawn on the patch's middle slice along the first
axis (nnU-Net's slowest axis; axial for the converters' LPS data); for a 2D configuration the patch is cut from the
case's slice with the most image voxels. Columns: image | gap map (brighter = larger
gap) | selected locations (red) on the image.

Everything is read from a finished GLUATrainer fold folder (``checkpoint_final.pth`` with its ``glua`` entry) and
the target data preprocessed with the same plans; nothing is trained or written except the PNG.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from nnunet_glua.alignment.local_mask import gap_map, top_fraction_mask, valid_feature_locations
from nnunet_glua.evaluation.figures import PANEL_MIN_SIDE, overlay_rgb
from nnunet_glua.io_utils import atomic_path
from nnunet_glua.style.preview import display_window, to_uint8

__all__ = ["GapMaps", "load_glua_model", "gap_maps_for_patch", "gap_mask_figure"]

_HEADER = 16


@dataclass(frozen=True)
class GapMaps:
    """Gap map and selected mask of one patch, on the voxel grid of the patch.

    Attributes:
        image: ``(*patch)`` float, first channel of the patch (nnU-Net's normalised units).
        valid: ``(*patch)`` bool, voxels inside the image.
        gap: ``(*patch)`` float >= 0, the gap of the feature location covering each voxel (0 where invalid).
        selected: ``(*patch)`` bool, voxels of the selected feature locations.
        selected_fraction: fraction of the valid feature locations that are selected.
    """

    image: np.ndarray
    valid: np.ndarray
    gap: np.ndarray
    selected: np.ndarray
    selected_fraction: float


def load_glua_model(fold_folder: str | os.PathLike, checkpoint_name: str = "checkpoint_final.pth"):
    """(network as :class:`FeatureTapUNet` in eval mode, feature discriminators, GLUA settings, configuration
    manager) from a GLUATrainer fold folder (``.../Trainer__Plans__Config/fold_N``)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_glua.json_io import read_json
    from nnunet_glua.training.feature_unet import FeatureTapUNet
    from nnunet_glua.training.glua_components import StageDiscriminators
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    fold_folder = Path(fold_folder)
    model_folder = fold_folder.parent
    checkpoint_path = fold_folder / checkpoint_name
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"{checkpoint_path}: no checkpoint; train this fold first (nnUNetv2_train ... -tr "
                                f"GLUATrainer)")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    glua = checkpoint.get("glua") or {}
    if "discriminator" not in glua:
        raise ValueError(f"{checkpoint_path}: holds no feature discriminator (not a GLUATrainer checkpoint, or a "
                         f"variant without feature alignment); there is no gap map to show")
    settings = glua["settings"]
    plans = PlansManager(read_json(model_folder / "plans.json"))
    dataset_json = read_json(model_folder / "dataset.json")
    configuration = checkpoint["init_args"]["configuration"]
    cm = plans.get_configuration(configuration)
    unet = nnUNetTrainer.build_network_architecture(
        plans, cm, determine_num_input_channels(plans, cm, dataset_json),
        plans.get_label_manager(dataset_json).num_segmentation_heads, True)
    network = FeatureTapUNet(unet, settings["feature_stages"])
    network.load_state_dict(checkpoint["network_weights"])
    discriminators = StageDiscriminators(network.stage_channels(), len(cm.patch_size), settings["disc_width"],
                                         settings["disc_layers"])
    discriminators.load_state_dict(glua["discriminator"])
    return network.eval(), discriminators.eval(), settings, cm


@torch.no_grad()
def gap_maps_for_patch(network, discriminators, patch: np.ndarray, valid: np.ndarray, mask_ratio: float,
                       min_valid_fraction: float = 0.5, stage: int = 0) -> GapMaps:
    """Gap map and top-``mask_ratio`` selection of one patch ``(C, *patch_size)`` with validity ``(*patch_size)``,
    for the ``stage``-th tapped decoder stage (index into the network's ``feature_stages``)."""
    x = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))[None]
    v = torch.from_numpy(np.ascontiguousarray(valid, dtype=bool))[None, None]
    _, features = network(x, return_features=True)
    f = features[stage]
    valid_f = valid_feature_locations(v, tuple(f.shape[2:]), min_valid_fraction)
    gap = gap_map(discriminators.stages[stage](f)) * valid_f
    selected = top_fraction_mask(gap, valid_f, mask_ratio)
    size = tuple(patch.shape[1:])
    gap_vox = F.interpolate(gap.float(), size=size, mode="nearest")[0, 0].numpy()
    sel_vox = F.interpolate(selected.float(), size=size, mode="nearest")[0, 0].numpy() > 0.5
    fraction = float(selected.sum()) / max(1, int(valid_f.sum()))
    return GapMaps(patch[0], valid, gap_vox, sel_vox, fraction)


def _central_patch(data: np.ndarray, valid: np.ndarray, patch_size: tuple[int, ...]):
    """Crop (zero-padding where the case is smaller) the ``patch_size`` box around the centre of the valid region."""
    coords = np.argwhere(valid)
    centre = ((coords.min(0) + coords.max(0)) // 2) if coords.size else np.array(valid.shape) // 2
    out_data = np.zeros((data.shape[0], *patch_size), dtype=np.float32)
    out_valid = np.zeros(patch_size, dtype=bool)
    src, dst = [], []
    for c, p, n in zip(centre, patch_size, valid.shape):
        start = int(c) - p // 2
        lo, hi = max(start, 0), min(start + p, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out_data[(slice(None), *dst)] = data[(slice(None), *src)]
    out_valid[tuple(dst)] = valid[tuple(src)]
    return out_data, out_valid


def _enlarge(rgb: np.ndarray) -> Image.Image:
    factor = max(1, int(np.ceil(PANEL_MIN_SIDE / max(1, min(rgb.shape[:2])))))
    return Image.fromarray(rgb).resize((rgb.shape[1] * factor, rgb.shape[0] * factor), Image.NEAREST)


def gap_mask_figure(fold_folder: str | os.PathLike, target_folder: str | os.PathLike, out_png: str | os.PathLike,
                    *, case: str | None = None, checkpoint_name: str = "checkpoint_final.pth",
                    min_valid_fraction: float = 0.5) -> dict[str, Any]:
    """Draw the gap map and the local mask of a trained GLUATrainer fold on a target patch; returns a summary.

    Args:
        fold_folder: ``$nnUNet_results/DatasetXXX/GLUATrainer__Plans__Config/fold_N``.
        target_folder: the target cases preprocessed with the same plans and configuration (e.g.
            :func:`~nnunet_glua.data.target_preprocessing.target_folder`).
        out_png: where the PNG goes (written atomically).
        case: target case identifier; default: the first one (sorted).
    Returns:
        ``{"png", "case", "patch_size", "mask_ratio", "selected_fraction"}``.
    """
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    network, discriminators, settings, cm = load_glua_model(fold_folder, checkpoint_name)
    target_folder = str(target_folder)
    dataset = infer_dataset_class(target_folder)(target_folder)
    identifiers = sorted(dataset.identifiers)
    if not identifiers:
        raise FileNotFoundError(f"{target_folder}: no preprocessed cases")
    case = case or identifiers[0]
    if case not in identifiers:
        raise ValueError(f"{target_folder}: no case {case!r}; cases: {identifiers[:10]}")
    data, seg, _, _ = dataset.load_case(case)
    valid = np.asarray(seg[0]) >= 0 if seg is not None else np.ones(data.shape[1:], dtype=bool)
    patch_size = tuple(int(p) for p in cm.patch_size)
    data = np.asarray(data, dtype=np.float32)
    slice_index = None
    if len(patch_size) == 2:
        # 2D configuration: the cases are still volumes; take the slice with the most image voxels
        slice_index = int(np.argmax(valid.reshape(valid.shape[0], -1).sum(1)))
        data, valid = data[:, slice_index], valid[slice_index]
    patch, patch_valid = _central_patch(data, valid, patch_size)
    ratio = 1.0 if settings["soft_mask"] else float(settings["mask_ratio"])
    maps = gap_maps_for_patch(network, discriminators, patch, patch_valid, ratio, min_valid_fraction)

    k = patch_size[0] // 2 if len(patch_size) == 3 else None
    where = f"slice {k} of a {patch_size} patch" if k is not None else f"a {patch_size} patch of slice {slice_index}"
    pick = (lambda a: a[k]) if k is not None else (lambda a: a)
    image, body = pick(maps.image), pick(maps.valid)
    gray = to_uint8(image, display_window(image, body))
    gap = pick(maps.gap)
    gap_gray = to_uint8(gap, (0.0, float(gap.max()) if gap.max() > 0 else 1.0))
    nothing = np.zeros(gray.shape, dtype=bool)
    # the selection in label 1's colour of the prediction figure (red), blended as there
    panels = [_enlarge(overlay_rgb(gray, nothing)), _enlarge(overlay_rgb(gap_gray, nothing)),
              _enlarge(overlay_rgb(gray, pick(maps.selected)))]
    titles = ["target patch", "domain gap (discriminator)", f"local mask: top {ratio:.0%} (red)"]
    w, h = panels[0].size
    canvas = Image.new("RGB", (3 * w, h + 2 * _HEADER), "black")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        canvas.paste(panel, (i * w, _HEADER))
        draw.text((i * w + 3, 2), title, fill="white")
    draw.text((3, h + _HEADER + 2), f"{case}, {where}; "
                                    f"{maps.selected_fraction:.0%} of valid feature locations selected",
              fill="white")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        canvas.save(tmp, format="PNG")
    return {"png": str(out_png), "case": case, "patch_size": list(patch_size), "mask_ratio": ratio,
            "selected_fraction": maps.selected_fraction}
