"""Structure-wise intensity shift of the labelled source batch (nnunet_glua.training.structure_shift)."""
from __future__ import annotations

import pytest
import torch

from nnunet_glua.training import source_only, variants
from nnunet_glua.training.random_streams import RandomStreams
from nnunet_glua.training.structure_shift import require_one_label_per_voxel, shift_structure_intensities


def _batch(b: int = 4, c: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.randn(b, c, 8, 10)
    seg = torch.zeros(b, 1, 8, 10, dtype=torch.int16)
    seg[:, :, 1:4, 1:4] = 1
    seg[:, :, 5:7, 2:9] = 2
    seg[:, :, 0, :] = -1  # nnU-Net's outside-of-image marker
    return data, seg


def test_each_structure_gets_one_offset_and_background_stays():
    data, seg = _batch()
    out = shift_structure_intensities(data, seg, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == data.shape and out.dtype == data.dtype and out.device == data.device
    delta = out - data
    assert torch.equal(delta[seg <= 0], torch.zeros_like(delta[seg <= 0]))
    for i in range(data.shape[0]):
        for label in (1, 2):
            values = delta[i, 0][seg[i, 0] == label]
            assert torch.allclose(values, values[0].expand_as(values))  # one offset per structure
            assert 0 < abs(float(values[0])) <= 1.0
    # structures move independently of each other
    assert not torch.allclose(delta[:, 0, 2, 2], delta[:, 0, 5, 5])


def test_probability_zero_changes_nothing_and_half_shifts_about_half():
    data, seg = _batch(b=2000)
    unchanged = shift_structure_intensities(data, seg, 1.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(unchanged, data) and unchanged is not data
    half = shift_structure_intensities(data, seg, 1.0, 0.5, torch.Generator().manual_seed(0))
    shifted = (half != data).flatten(1).any(1).float().mean()
    assert 0.45 < float(shifted) < 0.55


def test_channels_are_shifted_independently_and_draws_are_reproducible():
    data, seg = _batch(b=3, c=2)
    a = shift_structure_intensities(data, seg, 0.5, 1.0, torch.Generator().manual_seed(7))
    b = shift_structure_intensities(data, seg, 0.5, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    delta = a - data
    assert not torch.allclose(delta[:, 0, 2, 2], delta[:, 1, 2, 2])
    assert float(delta.abs().max()) <= 0.5 + 1e-6


def test_ignore_label_is_not_shifted():
    data, seg = _batch()
    out = shift_structure_intensities(data, seg, 1.0, 1.0, torch.Generator().manual_seed(0), ignore_label=2)
    assert torch.equal(out[seg == 2], data[seg == 2]) and bool((out[seg == 1] != data[seg == 1]).all())


def test_half_precision_input_keeps_its_dtype():
    data, seg = _batch()
    out = shift_structure_intensities(data.half(), seg, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float16


@pytest.mark.parametrize("seg_shape", [(4, 2, 8, 10), (4, 1, 8, 9), (3, 1, 8, 10)])
def test_mismatched_shapes_are_refused(seg_shape):
    data, _ = _batch()
    with pytest.raises(ValueError, match="same spatial size"):
        shift_structure_intensities(data, torch.zeros(seg_shape, dtype=torch.int16), 1.0, 0.5, torch.Generator())


def test_invalid_settings_are_refused():
    data, seg = _batch()
    with pytest.raises(ValueError, match="max_shift"):
        shift_structure_intensities(data, seg, -1.0, 0.5, torch.Generator())
    with pytest.raises(ValueError, match="probability"):
        shift_structure_intensities(data, seg, 1.0, 1.5, torch.Generator())


def _trainer_pipeline(trainer_class, dims: int = 3):
    import numpy as np

    patch = (12, 14, 16)[:dims]
    return trainer_class.get_training_transforms(np.array(patch), ((0, 0),) * 3, [[1] * dims, [0.5] * dims], (0, 1),
                                                 False, use_mask_for_norm=[False], ignore_label=None)


def test_shift_runs_in_the_augmentation_before_every_intensity_transform():
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    from nnunet_glua.training.augmentation import AppendValidityChannel
    from nnunet_glua.training.structure_shift import StructureShiftTransform

    steps = _trainer_pipeline(variants.SourceOnlyTrainer_StructureShift).transforms
    kinds = [type(t) for t in steps]
    shift_at = kinds.index(StructureShiftTransform)
    assert kinds[shift_at - 1] is SpatialTransform
    first_intensity = next(i for i, t in enumerate(steps) if isinstance(t, RandomTransform))
    assert shift_at < first_intensity
    assert StructureShiftTransform not in map(type, _trainer_pipeline(variants.SourceOnlyTrainer).transforms)
    # GLUA's pipeline also keeps nnU-Net's padding marker as a last segmentation channel
    glua = [type(t) for t in _trainer_pipeline(variants.GLUATrainer).transforms]
    assert StructureShiftTransform in glua and AppendValidityChannel in glua
    published = [type(t) for t in _trainer_pipeline(variants.GLUATrainer_NoStructureShift).transforms]
    assert StructureShiftTransform not in published and AppendValidityChannel in published


def test_shift_transform_moves_each_structure_and_keeps_the_rest():
    from nnunet_glua.training.structure_shift import StructureShiftTransform

    data, seg = _batch(b=1)
    torch.manual_seed(0)
    out = StructureShiftTransform(1.0, 1.0)(image=data[0].clone(), segmentation=seg[0].clone())
    delta = out["image"] - data[0]
    assert torch.equal(delta[seg[0] <= 0], torch.zeros_like(delta[seg[0] <= 0]))
    for label in (1, 2):
        values = delta[seg[0] == label]
        assert bool((values != 0).all()) and torch.allclose(values, values[0].expand_as(values))


def test_in_step_shift_when_the_shift_is_not_part_of_the_augmentation(monkeypatch):
    seen = {}

    def fake_step(self, batch):
        seen["data"] = batch["data"]
        return {}

    monkeypatch.setattr(source_only.SeededTrainer, "train_step", fake_step)
    trainer = object.__new__(variants.SourceOnlyTrainer_StructureShift)
    trainer.random_streams = RandomStreams(3, 0)
    trainer.label_manager = type("Labels", (), {"ignore_label": None, "all_labels": [0, 1, 2]})()
    trainer.structure_shift_probability = 1.0
    trainer.shift_before_augmentation = False
    data, seg = _batch()
    # deep supervision: the full-resolution target comes first
    trainer.train_step({"data": data, "target": [seg, seg[:, :, ::2, ::2]]})
    delta = seen["data"] - data
    assert torch.equal(delta[seg <= 0], torch.zeros_like(delta[seg <= 0]))
    assert bool((delta[seg == 1] != 0).all())
    # with the shift in the augmentation, the step leaves the batch alone
    trainer.shift_before_augmentation = True
    trainer.train_step({"data": data, "target": [seg, seg[:, :, ::2, ::2]]})
    assert torch.equal(seen["data"], data)


def test_region_based_label_sets_are_refused_with_advice():
    regions = type("Labels", (), {"has_regions": True})()
    with pytest.raises(RuntimeError, match="GLUATrainer_NoStructureShift"):
        require_one_label_per_voxel(regions, "GLUATrainer")
    require_one_label_per_voxel(type("Labels", (), {"has_regions": False})(), "GLUATrainer")


def test_labels_above_the_dataset_labels_are_not_shifted():
    # pseudo-labels carry an ignore label above the dataset's labels: never a structure, never an index error
    data = torch.zeros(1, 1, 4, 4)
    seg = torch.tensor([0, 1, 2, 3]).repeat(4, 1).view(1, 1, 4, 4)
    out = shift_structure_intensities(data, seg, 1.0, 1.0, torch.Generator().manual_seed(0), max_label=2)
    assert (out[seg == 1] != 0).all() and (out[seg == 2] != 0).all()
    assert (out[seg == 3] == 0).all() and (out[seg == 0] == 0).all()
    out = shift_structure_intensities(data, seg, 1.0, 1.0, torch.Generator().manual_seed(0), num_labels=3)
    assert (out[seg == 3] == 0).all()


def test_steered_shift_moves_each_structure_to_its_target_within_the_noise():
    from nnunet_glua.training.structure_shift import SteeredStructureShiftTransform

    torch.manual_seed(0)
    image = torch.randn(2, 6, 6, 6)
    seg = torch.zeros(1, 6, 6, 6)
    seg[0, :3] = 1
    seg[0, 3:, :3] = 2
    seg[0, 3:, 3:, :2] = 3  # the ignore label of pseudo-labels: no target
    targets = torch.tensor([float("nan"), 2.0, -1.0, float("nan")])
    exact = SteeredStructureShiftTransform(targets, noise=0.0, probability=1.0)
    out = exact(image=image.clone(), segmentation=seg)["image"]
    assert out[0][seg[0] == 1].mean() == pytest.approx(2.0, abs=1e-5)
    assert out[0][seg[0] == 2].mean() == pytest.approx(-1.0, abs=1e-5)
    # both channels get the same offset; unlabelled and ignored voxels stay
    assert torch.allclose(out[1] - image[1], out[0] - image[0])
    assert torch.equal(out[:, seg[0] == 3], image[:, seg[0] == 3]) and torch.equal(out[:, seg[0] == 0],
                                                                                     image[:, seg[0] == 0])
    noisy = SteeredStructureShiftTransform(targets, noise=0.5, probability=1.0)
    means = [noisy(image=image.clone(), segmentation=seg)["image"][0][seg[0] == 1].mean() for _ in range(50)]
    assert all(1.5 - 1e-5 <= m <= 2.5 + 1e-5 for m in means) and torch.stack(means).std() > 0.1
    never = SteeredStructureShiftTransform(targets, noise=0.5, probability=0.0)
    assert torch.equal(never(image=image.clone(), segmentation=seg)["image"], image)


def test_da5_baseline_takes_nnunets_heavy_augmentation():
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5

    args = ((1, 32, 32), (-0.5, 0.5), None, (1, 2), False)
    da5 = variants.SourceOnlyTrainer_DA5_Short.get_training_transforms(*args)
    expected = nnUNetTrainerDA5.get_training_transforms(*args)
    assert [type(t).__name__ for t in da5.transforms] == [type(t).__name__ for t in expected.transforms]
    plain = variants.SourceOnlyTrainer_Short.get_training_transforms(*args)
    assert [type(t).__name__ for t in plain.transforms] != [type(t).__name__ for t in expected.transforms]


def test_class_level_augmentation_gives_each_region_its_own_curve_and_keeps_the_statistics():
    from nnunet_glua.training.class_augmentation import ClassLevelIntensityAugmentation, augment_class_intensities

    torch.manual_seed(0)
    image = torch.rand(1, 8, 8, 8) + torch.arange(8.0).view(1, 8, 1, 1)
    labels = torch.zeros(8, 8, 8, dtype=torch.long)
    labels[:4] = 1
    labels[6:] = -1  # nnU-Net's outside marker is a region too
    out = augment_class_intensities(image, labels)
    assert out.shape == image.shape and torch.isfinite(out).all()
    assert out.mean() == pytest.approx(image.mean().item(), abs=1e-4)
    assert out.std() == pytest.approx(image.std().item(), rel=1e-3)
    # within a region the curve is monotonic: the voxel order is kept or reversed, never shuffled
    for value in (-1, 0, 1):
        region = labels == value
        order_in, order_out = image[0][region].argsort(), out[0][region].argsort()
        assert torch.equal(order_in, order_out) or torch.equal(order_in, order_out.flip(0))
    outs = [augment_class_intensities(image, labels)[0][labels == 1].mean() for _ in range(10)]
    assert torch.stack(outs).std() > 0.05  # every call draws new curves
    never = ClassLevelIntensityAugmentation(0.0)
    assert torch.equal(never(image=image.clone(), segmentation=labels[None].float())["image"], image)
    steps = variants.SourceOnlyTrainer_ClassAug_Short.get_training_transforms((1, 32, 32), (-0.5, 0.5), None, (1, 2),
                                                                              False).transforms
    assert any(isinstance(t, ClassLevelIntensityAugmentation) for t in steps)
