"""Canonical orientation: permutations and flips only, true spacing kept, exact round trip to the original geometry."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.orientation import (
    CANONICAL_ORIENTATION,
    geometry_mismatches,
    orientation_code,
    require_same_geometry,
    restore_orientation,
    to_canonical,
)

SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-12.0, 30.5, 101.0)


def _canonical_volume() -> sitk.Image:
    """An LPS volume whose every voxel value is unique (numpy (z, y, x) = (5, 6, 7)), so any re-indexing shows."""
    image = sitk.GetImageFromArray(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


@pytest.mark.parametrize("stored_as", ["RAI", "LPI", "PIR", "SRA", "ALS", "IRP"])
def test_volume_stored_flipped_or_permuted_comes_out_identical_to_the_canonical_one(stored_as: str) -> None:
    canonical = _canonical_volume()
    stored = sitk.DICOMOrient(canonical, stored_as)
    assert orientation_code(stored) == stored_as

    result, record = to_canonical(stored)

    assert orientation_code(result) == CANONICAL_ORIENTATION
    # identical voxel values in identical places: nothing was interpolated, only re-indexed
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), sitk.GetArrayFromImage(canonical))
    assert result.GetPixelID() == canonical.GetPixelID()
    np.testing.assert_allclose(result.GetSpacing(), SPACING)
    np.testing.assert_allclose(result.GetOrigin(), ORIGIN, atol=1e-9)
    np.testing.assert_allclose(result.GetDirection(), np.eye(3).ravel(), atol=1e-12)
    assert record.changed
    assert record.original.orientation == stored_as
    assert record.canonical.orientation == CANONICAL_ORIENTATION
    # the stored spacing was a permutation of the true spacing, and is recorded as stored
    assert sorted(record.original.spacing) == sorted(SPACING)
    assert record.to_dict()["original_geometry"]["size"] == list(stored.GetSize())


def test_already_canonical_volume_is_reported_unchanged() -> None:
    canonical = _canonical_volume()
    result, record = to_canonical(canonical)
    assert not record.changed
    assert record.permutation == (0, 1, 2) and record.flipped == (False, False, False)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), sitk.GetArrayFromImage(canonical))


@pytest.mark.parametrize("stored_as", ["RAI", "PIR", "SRA"])
def test_restore_orientation_gives_back_the_stored_array_and_geometry_exactly(stored_as: str) -> None:
    stored = sitk.DICOMOrient(_canonical_volume(), stored_as)
    canonical, record = to_canonical(stored)

    restored = restore_orientation(canonical, record.original.orientation)

    np.testing.assert_array_equal(sitk.GetArrayFromImage(restored), sitk.GetArrayFromImage(stored))
    assert restored.GetSize() == stored.GetSize()
    np.testing.assert_allclose(restored.GetSpacing(), record.original.spacing)
    np.testing.assert_allclose(restored.GetOrigin(), record.original.origin, atol=1e-9)
    np.testing.assert_allclose(restored.GetDirection(), record.original.direction, atol=1e-12)


def test_oblique_volume_is_only_permuted_and_keeps_its_physical_placement() -> None:
    image = _canonical_volume()
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    stored = sitk.DICOMOrient(image, "RAI")

    result, _ = to_canonical(stored)

    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), sitk.GetArrayFromImage(image))
    # voxel (1, 2, 3) of the result is at the same physical point as the same voxel of the un-flipped volume
    np.testing.assert_allclose(
        result.TransformIndexToPhysicalPoint((1, 2, 3)), image.TransformIndexToPhysicalPoint((1, 2, 3)), atol=1e-6
    )


def test_geometry_mismatches_name_each_difference_and_tolerate_header_rounding() -> None:
    reference = _canonical_volume()
    same = sitk.Image(reference)
    same.SetSpacing(tuple(s + 1e-6 for s in SPACING))
    assert geometry_mismatches(reference, same) == []

    other = sitk.Image(reference)
    other.SetSpacing((0.7, 0.9, 3.0))
    other.SetOrigin((0.0, 0.0, 0.0))
    problems = geometry_mismatches(reference, other)
    assert any(p.startswith("spacing") for p in problems) and any(p.startswith("origin") for p in problems)

    flipped = sitk.Image(reference)
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert [p.split()[0] for p in geometry_mismatches(reference, flipped)] == ["direction"]

    smaller = sitk.GetImageFromArray(np.zeros((5, 6, 6), np.int16))
    smaller.SetSpacing(SPACING)
    smaller.SetOrigin(ORIGIN)
    assert [p.split()[0] for p in geometry_mismatches(reference, smaller)] == ["size"]


def test_require_same_geometry_names_the_label_file(tmp_path) -> None:
    reference = _canonical_volume()
    label = sitk.Image(reference)
    label.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(ConversionError) as err:
        require_same_geometry(reference, label, tmp_path / "label.nii.gz")
    assert err.value.path == str(tmp_path / "label.nii.gz")
    assert "origin" in err.value.problem
