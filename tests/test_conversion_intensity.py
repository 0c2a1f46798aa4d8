"""Intensity harmonisation: label-free body mask, percentiles from inside the body, body positive, outside exactly 0."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.intensity import IntensitySettings, body_mask, harmonise_intensities, otsu_threshold

SHAPE = (12, 32, 32)  # numpy (z, y, x), canonical LPS: axis 0 is the axial slice axis
TABLE = (slice(None), slice(26, 31), slice(2, 30))


def _torso(shape=SHAPE) -> np.ndarray:
    _, y, x = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    return ((y - 13) / 11) ** 2 + ((x - 16) / 13) ** 2 < 1


def _ct(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CT in HU: air, a torso, a lung open to the top slice (a hole only slice by slice), a table, bright bone."""
    body = _torso()
    ct = rng.normal(-1000, 5, SHAPE)
    ct[body] = rng.normal(40, 20, body.sum())
    ct[3:, 9:15, 8:13] = rng.normal(-850, 20, (9, 6, 5))  # lung + airway reaching the last slice
    ct[:, 12:14, 20:23] = 1500  # bone, above the upper clipping percentile
    ct[TABLE] = 200  # scanner table below the body, separated by air
    return ct.astype(np.float32), body


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((5.0, -3.0, 40.0))
    return image


def test_ct_body_mask_keeps_the_lungs_and_drops_the_table() -> None:
    ct, body = _ct(np.random.default_rng(0))
    mask, method, threshold, warnings = body_mask(ct, "CT")
    assert method == "threshold" and threshold == -500 and warnings == []
    np.testing.assert_array_equal(mask, body)


def test_ct_outside_body_is_exactly_zero_and_percentiles_come_from_inside_the_body() -> None:
    ct, body = _ct(np.random.default_rng(1))
    settings = IntensitySettings()
    out_image, record = harmonise_intensities(_image(ct), "CT", settings, path="ct.nii.gz")
    out = sitk.GetArrayFromImage(out_image)

    assert out.dtype == np.float32
    assert np.all(out[~body] == 0)  # the table and air are exactly 0, nnU-Net crops them away
    assert out[body].min() >= settings.output_min and out[body].max() <= settings.output_max
    low, high = np.percentile(ct[body], [0.5, 99.5])
    assert record.clip_low == pytest.approx(low) and record.clip_high == pytest.approx(high)
    # computed over the whole volume the lower percentile would sit in the air instead
    assert np.percentile(ct, 0.5) < -900 < record.clip_low
    assert record.body_fraction == pytest.approx(body.mean())
    # the body is mapped linearly: a voxel inside the clipping range lands where the formula says
    inside = body & (ct > low) & (ct < high)
    v = ct[inside][0]
    expected = settings.output_min + (v - low) * (settings.output_max - settings.output_min) / (high - low)
    assert out[inside][0] == pytest.approx(expected, rel=1e-5)
    assert out[ct >= 1500].max() == settings.output_max  # the bone is clipped
    # geometry untouched
    assert out_image.GetSpacing() == (0.8, 0.8, 2.5) and out_image.GetOrigin() == (5.0, -3.0, 40.0)


def test_mr_body_mask_from_otsu_fills_dark_organs_and_drops_noise_specks() -> None:
    rng = np.random.default_rng(2)
    body = _torso()
    mr = np.abs(rng.normal(0, 4, SHAPE))
    mr[body] = rng.normal(200, 15, body.sum())
    mr[2:10, 10:14, 12:18] = 3  # dark organ enclosed by the body, as dark as the background
    mr[5, 30, 30] = 400  # isolated bright noise outside the body
    out_image, record = harmonise_intensities(_image(mr.astype(np.float32)), "MR", IntensitySettings())
    out = sitk.GetArrayFromImage(out_image)

    assert record.body_mask_method == "log_otsu"
    assert 4 * 3 < record.body_threshold < 185
    np.testing.assert_array_equal(out > 0, body)
    assert out[5, 30, 30] == 0
    assert record.clip_low == pytest.approx(np.percentile(mr[body], 0.5))


def test_fat_suppressed_mr_keeps_its_dark_body_that_linear_otsu_would_cut_away() -> None:
    """T2-SPIR-like: suppressed fat (70) and muscle (140) fill most of the body, a few organs are bright."""
    rng = np.random.default_rng(6)
    body = _torso()
    mr = np.hypot(rng.normal(0, 10, SHAPE), rng.normal(0, 10, SHAPE))  # Rician background
    mr[body] = rng.normal(70, 10, body.sum())
    mr[:, 8:20, 8:24] = rng.normal(140, 15, (12, 12, 16))
    mr[:, 10:14, 10:14] = 900  # fluid
    mr[:, 14:18, 18:22] = 650  # spleen
    linear_threshold = otsu_threshold(mr)
    assert (mr[body] > linear_threshold).mean() < 0.5  # the plain Otsu level misses most of the body

    mask, method, threshold, _ = body_mask(mr.astype(np.float32), "MR")

    assert method == "log_otsu" and threshold < linear_threshold
    assert mask[body].all()
    assert (mask & ~body).sum() < 0.01 * body.sum()  # at most a few noise voxels touching the skin


def test_otsu_threshold_separates_two_populations() -> None:
    values = np.concatenate([np.full(1000, 10.0), np.full(500, 100.0), [1e9]])  # one extreme outlier
    assert 10 < otsu_threshold(values) < 100


def test_ct_not_stored_in_hu_falls_back_to_otsu_with_a_warning() -> None:
    ct, body = _ct(np.random.default_rng(3))
    shifted = ct + 1024  # stored as unsigned values: air is about 24, no voxel below -500
    mask, method, _, warnings = body_mask(shifted, "CT")
    assert method == "otsu" and "HU" in warnings[0]
    np.testing.assert_array_equal(mask, body)


def test_empty_volume_is_an_error_naming_the_file() -> None:
    air = np.full(SHAPE, -1000, np.float32)
    with pytest.raises(ConversionError) as err:
        harmonise_intensities(_image(air), "CT", path="/data/ct_train_1001_image.nii.gz")
    assert err.value.path == "/data/ct_train_1001_image.nii.gz" and "no body found" in err.value.problem


def test_body_without_contrast_is_an_error() -> None:
    flat = np.where(_torso(), 40, -1000).astype(np.float32)
    with pytest.raises(ConversionError, match="single intensity"):
        harmonise_intensities(_image(flat), "CT", path="flat.nii.gz")


def test_non_finite_intensities_are_an_error() -> None:
    ct, _ = _ct(np.random.default_rng(4))
    ct[0, 0, 0] = np.nan
    with pytest.raises(ConversionError, match="NaN"):
        harmonise_intensities(_image(ct), "CT", path="nan.nii.gz")


@pytest.mark.parametrize(
    "kwargs",
    [{"lower_percentile": 60, "upper_percentile": 40}, {"output_min": 0.0}, {"mr_otsu_scale": 0.0}],
)
def test_invalid_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        IntensitySettings(**kwargs)


def test_custom_percentiles_and_output_range_are_used() -> None:
    ct, body = _ct(np.random.default_rng(5))
    settings = IntensitySettings(lower_percentile=5, upper_percentile=95, output_min=10, output_max=20)
    out_image, record = harmonise_intensities(_image(ct), "CT", settings)
    out = sitk.GetArrayFromImage(out_image)
    assert record.clip_high == pytest.approx(np.percentile(ct[body], 95))
    assert out[body].min() == 10 and out[body].max() == 20
