"""MPI-D scoring: hand-computed examples, missing-data limits, refused values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.allocation.domain import (
    ITEM_KEYS,
    SCALE_KEYS,
    SCALES,
    InvalidAnswer,
    InvalidScaleScore,
    UnscorableBaseline,
    check_scale_scores,
    score_mpid,
)
from services.core.protocol.allocation import SCALE_KEYS as PROTOCOL_SCALE_KEYS

from .factories import answers

WORKED_EXAMPLE = {
    "1_1": 4, "1_7": 5, "1_12": 3,  # PS 12/3
    "1_2": 0, "1_3": 1, "1_4": 2, "1_8": 3, "1_9": 4, "1_13": 5, "1_14": -99,
    "1_17": 6, "1_19": 0, "1_21": 5,  # I: 26 over 9 answered items (1_14 not applicable)
    "1_11": 6, "1_16": 5, "1_18": 4,  # LC 15/3
    "1_6": 1, "1_20": 2, "1_22": 2,  # AD (6-1 + 2 + 2)/3
    "1_5": 0, "1_10": 1, "1_15": 2,  # S 3/3
    "2_2": 0, "2_5": 0, "2_8": 1,  # PR 1/3
    "2_1": 2, "2_3": 2, "2_6": 3, "2_10": 3, "2_11": 4,  # SR 14/5
    "2_4": 6, "2_7": 6, "2_9": 6,  # DR 18/3
    **dict.fromkeys(("3_3", "3_6", "3_7", "3_12", "3_13", "3_16", "3_17", "3_18"), 1),
    **dict.fromkeys(("3_1", "3_4", "3_8", "3_10", "3_14"), 4),
    "3_2": 4, "3_5": 4, "3_9": 5, "3_11": -99, "3_15": 5,  # GA (1 + 4 + 18/4) / 3
}
EXPECTED = {"PS": 4.0, "I": 26 / 9, "LC": 5.0, "AD": 3.0, "S": 1.0, "PR": 1 / 3, "SR": 2.8,
            "DR": 6.0, "GA": 9.5 / 3}

# Skipped items at which each scale becomes unscorable, as the WHYMPI guidance states it.
UNSCORABLE_AT = {"PS": 2, "I": 3, "LC": 2, "AD": 2, "S": 2, "PR": 2, "SR": 2, "DR": 2, "GA": 5}


def test_worked_example_gives_the_hand_computed_scale_means() -> None:
    scores = score_mpid(WORKED_EXAMPLE)
    assert list(scores) == list(SCALE_KEYS)
    for scale, expected in EXPECTED.items():
        assert scores[scale] == pytest.approx(expected), scale


def test_item_1_6_is_reverse_keyed() -> None:
    assert score_mpid(answers(2, {"1_6": 0}))["AD"] == pytest.approx((6 + 2 + 2) / 3)
    assert score_mpid(answers(2, {"1_6": 6}))["AD"] == pytest.approx((0 + 2 + 2) / 3)


def test_not_applicable_is_left_out_of_the_mean_not_counted_as_zero() -> None:
    scores = score_mpid(answers(4, {"1_14": -99, "3_11": -99}))
    assert scores["I"] == 4.0
    assert scores["GA"] == 4.0


def test_general_activity_is_the_mean_of_three_sub_means_not_of_eighteen_items() -> None:
    group_a = ("3_3", "3_6", "3_7", "3_12", "3_13", "3_16", "3_17", "3_18")
    scores = score_mpid(answers(4, dict.fromkeys(group_a, 1)))
    assert scores["GA"] == pytest.approx((1 + 4 + 4) / 3)
    assert scores["GA"] != pytest.approx((8 * 1 + 10 * 4) / 18)


def test_redcap_field_names_are_read_through_the_prefix_and_blank_means_skipped() -> None:
    fields = answers("3", {"1_1": "", "1_6": "0"}, prefix="mpid_")
    scores = score_mpid(fields, item_prefix="mpid_")
    assert scores["PS"] == 3.0  # 1_1 blank: mean of the two answered items
    assert scores["AD"] == pytest.approx((6 + 3 + 3) / 3)


@pytest.mark.parametrize("scale", SCALE_KEYS)
def test_each_scale_is_scorable_one_skip_below_its_limit(scale: str) -> None:
    skipped = SCALES[scale].items[: UNSCORABLE_AT[scale] - 1]
    assert score_mpid(answers(2, skip=skipped))[scale] == 2.0


@pytest.mark.parametrize("scale", SCALE_KEYS)
def test_each_scale_is_unscorable_at_its_limit_and_the_error_names_it(scale: str) -> None:
    skipped = SCALES[scale].items[: UNSCORABLE_AT[scale]]
    with pytest.raises(UnscorableBaseline) as err:
        score_mpid(answers(2, skip=skipped))
    assert err.value.scales == (scale,)
    assert err.value.field == scale
    assert f"{UNSCORABLE_AT[scale]} of {len(SCALES[scale].items)} items skipped" in str(err.value)


def test_not_applicable_does_not_count_as_skipped() -> None:
    scores = score_mpid(answers(5, {"1_14": -99}, skip=("1_2", "1_3")))
    assert scores["I"] == 5.0  # 7 answered, 2 skipped (allowed), 1 not applicable


def test_general_activity_sub_scale_without_any_answer_is_unscorable() -> None:
    # 4 skips are within the limit, but with 3_11 not applicable group C is empty
    with pytest.raises(UnscorableBaseline) as err:
        score_mpid(answers(3, {"3_11": -99}, skip=("3_2", "3_5", "3_9", "3_15")))
    assert err.value.scales == ("GA",)
    assert "no usable answer" in str(err.value)


def test_every_unscorable_scale_is_reported_at_once() -> None:
    part_2 = [i for i in ITEM_KEYS if i.startswith("2_")]
    with pytest.raises(UnscorableBaseline) as err:
        score_mpid(answers(3, skip=part_2))
    assert err.value.scales == ("PR", "SR", "DR")


@pytest.mark.parametrize("bad", [7, -1, 2.5, "x", "2.5", True, math.nan, [3]])
def test_out_of_range_or_non_numeric_answer_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidAnswer) as err:
        score_mpid(answers(3, {"1_12": bad}, prefix="mpid_"), item_prefix="mpid_")
    assert err.value.field == "mpid_1_12"
    assert "mpid_1_12" in str(err.value)


@pytest.mark.parametrize("item", ["1_1", "1_6", "2_5", "3_10"])
def test_not_applicable_is_refused_on_items_other_than_1_14_and_3_11(item: str) -> None:
    with pytest.raises(InvalidAnswer) as err:
        score_mpid(answers(3, {item: -99}))
    assert err.value.field == item


@pytest.mark.parametrize("value", [4, "4", " 4 ", 4.0, "4.0", np.int64(4), np.float64(4)])
def test_whole_number_answers_in_any_representation_are_accepted(value: object) -> None:
    assert score_mpid(answers(4, {"1_1": value}))["PS"] == 4.0


ANSWER = st.integers(0, 6)


@given(st.fixed_dictionaries({
    i: (st.one_of(ANSWER, st.just(-99)) if i in ("1_14", "3_11") else ANSWER)
    for i in ITEM_KEYS}))
def test_any_in_range_answers_give_scales_within_0_and_6(items: dict[str, int]) -> None:
    scores = score_mpid(items)
    assert set(scores) == set(SCALE_KEYS)
    assert all(0 <= v <= 6 for v in scores.values())


@given(st.fixed_dictionaries({i: st.one_of(ANSWER, st.none()) for i in ITEM_KEYS}))
def test_answers_with_skips_are_either_scored_within_range_or_unscorable(
        items: dict[str, int | None]) -> None:
    try:
        scores = score_mpid(items)
    except UnscorableBaseline as err:
        assert err.scales
        return
    assert all(0 <= v <= 6 for v in scores.values())


def test_scales_cover_every_item_once_in_the_protocol_feature_order() -> None:
    used = [i for scale in SCALES.values() for i in scale.items]
    assert sorted(used) == sorted(ITEM_KEYS)
    assert len(ITEM_KEYS) == 51
    assert SCALE_KEYS == PROTOCOL_SCALE_KEYS


def test_scale_scores_given_directly_must_be_complete_and_within_range() -> None:
    good = dict.fromkeys(SCALE_KEYS, 2.5)
    assert check_scale_scores(good) == good
    for bad in ({**good, "LC": 6.5}, {k: v for k, v in good.items() if k != "LC"},
                {**good, "LC": "high"}, {**good, "LC": math.inf}):
        with pytest.raises(InvalidScaleScore) as err:
            check_scale_scores(bad)
        assert err.value.field == "LC"
