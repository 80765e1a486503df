"""Analysis gates and their verdicts. Pure data.

Borrowed from Argo Rollouts: a gate's metric is measured over an interval
(:class:`Measurement`: a value and how many samples it rests on) and each measurement is judged
Successful, Failed or Inconclusive (too few samples, or no value: it never promotes). How many
failed measurements fail the rollout (``failure_limit``) is the step machine's business
(:mod:`controller.core.rollout.machine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Gate", "Measurement", "Verdict", "judge"]


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True, slots=True)
class Gate:
    """An analysis gate: the canary's ``metric`` must stay at or under ``max_value``."""

    name: str  # e.g. "error-rate", "latency-p95"
    max_value: float
    min_samples: int = 20
    failure_limit: int = 1  # this many failed measurements fail the rollout


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement of a gate's metric over its interval: ``value`` from ``samples``."""

    value: float | None
    samples: int


def judge(gate: Gate, m: Measurement) -> Verdict:
    if m.value is None or m.samples < gate.min_samples:
        return Verdict.INCONCLUSIVE
    return Verdict.SUCCESSFUL if m.value <= gate.max_value else Verdict.FAILED
