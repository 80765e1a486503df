"""Gate measurements from traces (per request) and from counters and histograms read twice."""

from __future__ import annotations

import math

import pytest

from controller.core.rollout.analysis import (
    counter_error_rate,
    error_rate,
    histogram_quantile,
    latency_quantile,
)
from controller.core.rollout.gates import Measurement

INF = math.inf


def test_error_rate_from_trace_states() -> None:
    assert error_rate(["OK"] * 18 + ["ERROR"] * 2) == Measurement(0.1, 20)
    assert error_rate(["ok", "error"]) == Measurement(0.5, 2)
    assert error_rate([]) == Measurement(None, 0)


def test_latency_quantile_is_nearest_rank() -> None:
    durations = [float(x) for x in range(1, 101)]  # 1..100 ms
    assert latency_quantile(durations, 0.95) == Measurement(95.0, 100)
    assert latency_quantile(durations, 0.5) == Measurement(50.0, 100)
    assert latency_quantile([7.0], 0.99) == Measurement(7.0, 1)
    assert latency_quantile([], 0.5) == Measurement(None, 0)
    with pytest.raises(ValueError, match="quantile"):
        latency_quantile(durations, 0)


def test_counter_error_rate_uses_the_increase_and_survives_a_reset() -> None:
    assert counter_error_rate(100, 200, 5, 15) == Measurement(0.1, 100)
    # the server restarted between the reads: the counters start again from zero
    assert counter_error_rate(500, 40, 30, 4) == Measurement(0.1, 40)
    assert counter_error_rate(10, 10, 0, 0) == Measurement(None, 0)


def test_histogram_quantile_interpolates_within_the_bucket_like_promql() -> None:
    before = {0.1: 10.0, 0.5: 10.0, 1.0: 10.0, INF: 10.0}
    after = {0.1: 60.0, 0.5: 90.0, 1.0: 110.0, INF: 110.0}  # +50, +30, +20 = 100 new
    p50 = histogram_quantile(before, after, 0.5)
    assert p50.samples == 100 and p50.value == pytest.approx(0.1)
    p80 = histogram_quantile(before, after, 0.8)
    assert p80.value == pytest.approx(0.5)
    p90 = histogram_quantile(before, after, 0.9)
    assert p90.value == pytest.approx(0.75)
    # past the last finite bound, that bound
    slow = {0.1: 0.0, 0.5: 0.0, 1.0: 0.0, INF: 10.0}
    assert histogram_quantile({}, slow, 0.99) == Measurement(1.0, 10)
    assert histogram_quantile(after, after, 0.5) == Measurement(None, 0)
