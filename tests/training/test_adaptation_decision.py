"""The keep-or-revert decision: paired sign-flip confidence, objects needed, and what the user is told."""

from __future__ import annotations

import math

import pytest

from napari_fcfi.training.adaptation import (
    KEEP_CONFIDENCE,
    AdaptationCheck,
    _advice,
    objects_needed,
    paired_confidence,
)


def test_paired_confidence_is_an_exact_sign_flip_test():
    assert paired_confidence([]) == 0.0 and paired_confidence([0, 0, 0]) == 0.0
    assert paired_confidence([-1, -2]) == 0.0
    # three positive gains: only the all-positive flip of 2**3 reaches the observed sum -> p = 1/8
    assert paired_confidence([1, 2, 1]) == pytest.approx(1 - 1 / 8)
    # ties carry no sign: the same as the non-zero ones alone
    assert paired_confidence([1, 2, 1, 0, 0]) == pytest.approx(1 - 1 / 8)
    # four equal gains, one equal loss: sums >= 3 are the 5 flips with at most one minus sign of 32
    assert paired_confidence([1, 1, 1, 1, -1]) == pytest.approx(1 - 6 / 32)
    many = [1.0] * 30 + [-1.0] * 5
    assert paired_confidence(many) > 0.99  # sampled flips beyond 16 differences
    assert paired_confidence(many, seed=1) == pytest.approx(paired_confidence(many, seed=2), abs=0.01)


def test_objects_needed_grows_with_the_spread():
    assert objects_needed([-1, 0, 1]) is None  # no gain measured
    assert objects_needed([1, 1, 1]) == 4  # a sign-flip test needs 4 all-positive objects for 90 %
    noisy = objects_needed([3, -2, 2, -1])
    assert noisy is not None and noisy > 4


def test_advice_says_what_was_measured_and_what_to_do():
    few = _advice(False, [1.0, 2.0, 1.0], paired_confidence([1, 2, 1]), 0.25)
    assert "3 held-back objects" in few and "88 %" in few and "90 % needed" in few
    assert "annotate about 4 more objects" in few  # one more held-back object = 4 more committed at 25 %
    capped = _advice(
        False, [1.0, -1.0, 2.0] * 10, paired_confidence([1.0, -1.0, 2.0] * 10), 0.25, capped=True
    )
    assert "adapting for longer" in capped and "annotate" not in capped  # more objects would not be checked
    worse = _advice(False, [-1.0, 0.0, -2.0], 0.0, 0.25)
    assert "No gain measured" in worse
    kept = _advice(True, [2.0] * 6, paired_confidence([2.0] * 6), 0.25)
    assert "98 %" in kept and "annotate" not in kept


def test_check_defaults_stay_compatible():
    check = AdaptationCheck(
        keep=False,
        objects=0,
        max_clicks=20,
        base={},
        adapted={},
        base_clicks=math.nan,
        adapted_clicks=math.nan,
        change_percent=math.nan,
        seconds=0.0,
        cancelled=True,
    )
    assert check.required_confidence == KEEP_CONFIDENCE and check.advice == "" and check.clicks_saved == []
