"""Thresholds over figures with rows that could not be scored: such a row never passes."""

from __future__ import annotations

from controller.core.evaluation.spec import ThresholdSpec
from controller.core.evaluation.verdict import figures_of, judge


def test_an_unscored_row_fails_a_max_threshold_that_the_zero_would_pass() -> None:
    # 4 of 5 rows raised (counted 0), the one scored row is the worst value: 1.0.
    risk = figures_of("risk", [None, None, None, None, 1.0], ["boom", "boom", "boom", "boom", None])
    assert risk.figure == 0.2
    verdict = judge({"risk": risk}, [ThresholdSpec("risk", max=0.5)])
    assert not verdict.passed
    assert "risk 0.2 misses max 0.5 (4 of 5 rows could not be scored: boom)" in verdict.reason
    clean = figures_of("risk", [0.1, 0.2, 0.0])
    assert judge({"risk": clean}, [ThresholdSpec("risk", max=0.5)]).passed


def test_a_min_miss_says_how_many_rows_could_not_be_scored_and_why() -> None:
    answers = figures_of("answers", [True, True, True, True, None], [None] * 4 + ["KeyError: 'x'"])
    reason = judge({"answers": answers}, [ThresholdSpec("answers", min=0.9)]).reason
    assert reason == "answers 0.8 misses min 0.9 (1 of 5 rows could not be scored: KeyError: 'x')"
