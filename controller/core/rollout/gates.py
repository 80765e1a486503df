"""Analysis gates and their verdicts. Pure data.

Borrowed from Argo Rollouts: a gate's metric is measured over an interval
(:class:`Measurement`: a value and how many samples it rests on) and each measurement is judged
Successful, Failed or Inconclusive (too few samples, or no value: it never promotes). How many
failed measurements fail the rollout (``failure_limit``) is the step machine's business
(:mod:`controller.core.rollout.machine`).

A gate bounds its metric from above (``max_value``: an error rate, a latency) or from below
(``min_value``: a pass rate the canary must keep), or both.
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
    """An analysis gate: the canary's ``metric`` must stay at or under ``max_value`` and at or
    over ``min_value`` (each None: not bounded that way)."""

    name: str  # e.g. "error-rate", "latency-p95", "no-pii"
    max_value: float | None
    min_samples: int = 20
    failure_limit: int = 1  # this many failed measurements fail the rollout
    min_value: float | None = None

    def missed(self, value: float) -> str | None:
        """How ``value`` misses the gate's bound (``0.4 < 0.95``); None: within bounds."""
        if self.max_value is not None and value > self.max_value:
            return f"{value:g} > {self.max_value:g}"
        if self.min_value is not None and value < self.min_value:
            return f"{value:g} < {self.min_value:g}"
        return None


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement of a gate's metric over its interval: ``value`` from ``samples``;
    ``baseline``: the same metric of the stable version over the same interval, for comparison
    (None: not measured)."""

    value: float | None
    samples: int
    baseline: float | None = None


def judge(gate: Gate, m: Measurement) -> Verdict:
    if m.value is None or m.samples < gate.min_samples:
        return Verdict.INCONCLUSIVE
    return Verdict.FAILED if gate.missed(m.value) is not None else Verdict.SUCCESSFUL
