"""Label maps of MMWHS, CHAOS and BTCV: mapping, the reported stray value 421, and errors for unknown values."""
from __future__ import annotations

import numpy as np
import pytest

from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.conversion.labels import (
    BTCV_ABDOMEN,
    CHAOS_ABDOMEN,
    MMWHS_ALL,
    MMWHS_STANDARD,
    LabelMap,
    ValueRule,
    apply_label_map,
)


def _volume(values: list[int], dtype=np.int16) -> np.ndarray:
    """(2, 3, len(values)) array whose last axis walks through ``values`` (every value appears 6 times)."""
    return np.broadcast_to(np.asarray(values, dtype=dtype), (2, 3, len(values))).copy()


def test_mmwhs_standard_keeps_the_four_uda_structures_and_drops_the_right_heart() -> None:
    raw = _volume([0, 205, 420, 500, 550, 600, 820, 850])
    mapped, record = apply_label_map(raw, MMWHS_STANDARD, "label.nii.gz")
    assert mapped.dtype == np.uint8
    np.testing.assert_array_equal(mapped[0, 0], [0, 1, 2, 3, 0, 0, 4, 0])
    assert MMWHS_STANDARD.labels == {"background": 0, "MYO": 1, "LAC": 2, "LVC": 3, "AA": 4}
    assert record.voxels_per_label == {"background": 24, "MYO": 6, "LAC": 6, "LVC": 6, "AA": 6}
    assert record.stray_values == {} and record.warnings == []


def test_mmwhs_all_keeps_seven_structures() -> None:
    mapped, _ = apply_label_map(_volume([0, 205, 420, 500, 550, 600, 820, 850]), MMWHS_ALL)
    np.testing.assert_array_equal(mapped[0, 0], [0, 1, 2, 3, 4, 5, 6, 7])
    assert list(MMWHS_ALL.labels) == ["background", "MYO", "LA", "LV", "RA", "RV", "AA", "PA"]


def test_stray_421_is_mapped_to_the_left_atrium_and_reported() -> None:
    raw = _volume([0, 420, 421, 421, 205])  # float storage, as in some released files
    mapped, record = apply_label_map(raw.astype(np.float32), MMWHS_STANDARD, "mr_train_1010_label.nii.gz")
    np.testing.assert_array_equal(mapped[0, 0], [0, 2, 2, 2, 1])
    assert record.stray_values == {421: {"voxels": 12, "treated_as": 420, "target": 2}}
    assert record.mapping[421] == 2
    assert any("421" in w and "12 voxels" in w for w in record.warnings)
    assert record.to_dict()["stray_values"] == {"421": {"voxels": 12, "treated_as": 420, "target": 2}}


def test_unknown_value_is_an_error_naming_file_values_and_location() -> None:
    raw = _volume([0, 205, 420])
    raw[1, 2, 0] = 300
    with pytest.raises(ConversionError) as err:
        apply_label_map(raw, MMWHS_STANDARD, "/data/ct_train_1004_label.nii.gz")
    assert err.value.path == "/data/ct_train_1004_label.nii.gz"
    assert "[300]" in err.value.problem and "(x, y, z) = (0, 2, 1)" in err.value.problem
    assert "205 (myocardium" in err.value.problem  # says which values would have been valid


def test_non_integer_label_values_are_an_error() -> None:
    raw = _volume([0, 205]).astype(np.float32)
    raw[0, 0, 1] = 204.5
    with pytest.raises(ConversionError, match="non-integer"):
        apply_label_map(raw, MMWHS_STANDARD, "resampled_label.nii.gz")


def test_chaos_values_are_matched_by_range() -> None:
    mapped, record = apply_label_map(_volume([0, 63, 58, 126, 130, 189, 180, 252, 245], np.uint8), CHAOS_ABDOMEN)
    np.testing.assert_array_equal(mapped[0, 0], [0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert record.voxels_per_label["liver"] == 12
    assert CHAOS_ABDOMEN.labels == {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}


@pytest.mark.parametrize("value", [1, 100, 150, 220])
def test_chaos_values_between_the_ranges_are_errors(value: int) -> None:
    with pytest.raises(ConversionError, match=f"\\[{value}\\]"):
        apply_label_map(_volume([0, 63, value], np.uint8), CHAOS_ABDOMEN, "Ground")


def test_btcv_keeps_liver_kidneys_spleen_and_drops_the_other_organs() -> None:
    mapped, record = apply_label_map(_volume(list(range(14))), BTCV_ABDOMEN)
    #                                     0  1  2  3  4  5  6  7  8  9 10 11 12 13
    np.testing.assert_array_equal(mapped[0, 0], [0, 4, 2, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert BTCV_ABDOMEN.labels == CHAOS_ABDOMEN.labels
    assert record.voxels_per_label["background"] == 6 * 10


@pytest.mark.parametrize("value", [14, -1, 255])
def test_btcv_values_outside_0_to_13_are_errors(value: int) -> None:
    with pytest.raises(ConversionError, match="unknown label values"):
        apply_label_map(_volume([0, 6, value]), BTCV_ABDOMEN, "label0001.nii.gz")


def test_absent_structures_are_reported_as_a_warning() -> None:
    _, record = apply_label_map(_volume([0, 205]), MMWHS_STANDARD)
    assert any("absent" in w and "LAC" in w and "AA" in w for w in record.warnings)


def test_inconsistent_label_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="consecutive"):
        LabelMap("gap", {"background": 0, "a": 2}, (ValueRule(0, 0, 0, "bg"),))
    with pytest.raises(ValueError, match="stray"):
        LabelMap("stray", {"background": 0, "a": 1}, (ValueRule(0, 0, 0, "bg"), ValueRule(5, 5, 1, "a")), {5: 1})
