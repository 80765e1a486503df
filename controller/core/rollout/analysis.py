"""Analysis measurements for rollout gates, from what the providers return. Pure data.

Two shapes of evidence, one result (:class:`~controller.core.rollout.gates.Measurement`: a value
and how many samples it rests on):
- per-request records, as MLflow traces give them (each trace's state OK / ERROR and its
  execution duration in ms): :func:`error_rate` and :func:`latency_quantile`;
- per-trace scorer results, as a rollout's scorers gate reads and writes them (each a value the
  scorer returned, or the error it raised): :func:`pass_rate`, the same figure an evaluation
  computes (:func:`controller.core.evaluation.verdict.figures_of`: an error is a failed sample);
- cumulative counters and histogram buckets, as Prometheus (or the local router's ``/metrics``)
  gives them, read twice: :func:`counter_error_rate` and :func:`histogram_quantile` work on the
  increase between the two reads, the way PromQL's ``increase`` and ``histogram_quantile`` do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from controller.core.evaluation.verdict import figures_of
from controller.core.rollout.gates import Measurement

__all__ = [
    "counter_error_rate",
    "error_rate",
    "histogram_quantile",
    "latency_quantile",
    "pass_rate",
]


def error_rate(states: Sequence[str]) -> Measurement:
    """The share of requests that failed (``ERROR``), over every request seen."""
    if not states:
        return Measurement(None, 0)
    failed = sum(1 for s in states if s.upper() == "ERROR")
    return Measurement(failed / len(states), len(states))


def latency_quantile(durations_ms: Sequence[float], q: float) -> Measurement:
    """The ``q`` quantile (0 < q <= 1) of request durations, nearest rank."""
    if not 0 < q <= 1:
        raise ValueError(f"a quantile is in (0, 1], not {q}")
    if not durations_ms:
        return Measurement(None, 0)
    ordered = sorted(durations_ms)
    rank = max(1, math.ceil(q * len(ordered)))
    return Measurement(float(ordered[rank - 1]), len(ordered))


def pass_rate(values: Sequence[Any], errors: Sequence[str | None] | None = None) -> Measurement:
    """The share of samples a scorer passed: ``True``/``"yes"`` count 1, ``False``/``"no"`` 0,
    a number itself; a sample the scorer raised on (its error is set) or whose value is none of
    these counts 0, never as a pass."""
    if not values:
        return Measurement(None, 0)
    return Measurement(figures_of("", values, errors).figure, len(values))


def counter_error_rate(
    requests_before: float, requests_after: float, errors_before: float, errors_after: float
) -> Measurement:
    """Errors over requests between two reads of cumulative counters. A counter that went
    down was reset (the server restarted): its value after the reset is the increase."""
    requests = _increase(requests_before, requests_after)
    errors = _increase(errors_before, errors_after)
    if requests <= 0:
        return Measurement(None, 0)
    return Measurement(min(errors / requests, 1.0), int(requests))


def histogram_quantile(
    before: Mapping[float, float], after: Mapping[float, float], q: float
) -> Measurement:
    """The ``q`` quantile of what a cumulative histogram (upper bound -> count, ``inf`` for the
    last bucket) observed between two reads, interpolated linearly within its bucket as
    PromQL does; past the last finite bound, that bound."""
    if not 0 < q <= 1:
        raise ValueError(f"a quantile is in (0, 1], not {q}")
    bounds = sorted(after)
    counts = [_increase(before.get(b, 0.0), after[b]) for b in bounds]
    total = counts[-1] if counts else 0.0
    if not bounds or math.isfinite(bounds[-1]) or total <= 0:
        return Measurement(None, 0)
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if not math.isfinite(bound):
                return Measurement(lower, int(total))
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return Measurement(lower + (bound - lower) * share, int(total))
        lower, below = bound, count
    return Measurement(lower, int(total))


def _increase(before: float, after: float) -> float:
    return after - before if after >= before else after
