"""Per-agent backoff for the controller: one agent's failures delay that agent only. Pure data.

Delays follow tenacity's exponential wait (``initial`` doubling up to ``maximum``), counted in
failures of that agent since its last success; the clock is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from tenacity import wait_exponential

__all__ = ["AgentBackoff"]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What tenacity's wait strategies read of a retry: the attempt number."""

    attempt_number: int


@dataclass
class AgentBackoff:
    initial: float = 5.0
    maximum: float = 300.0
    failures: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)

    def delay(self, failures: int) -> float:
        wait = wait_exponential(multiplier=self.initial, max=self.maximum)
        return float(wait(cast(Any, _Attempt(failures))))

    def ready(self, agent: str, now: float) -> bool:
        return now >= self.not_before.get(agent, float("-inf"))

    def failed(self, agent: str, now: float) -> float:
        """Count a failure; return how long the agent now waits."""
        n = self.failures.get(agent, 0) + 1
        self.failures[agent] = n
        delay = self.delay(n)
        self.not_before[agent] = now + delay
        return delay

    def next_due(self, now: float, default: float) -> float:
        """When the next backoff still running out after ``now`` ends (else ``default``)."""
        return min((t for t in self.not_before.values() if t > now), default=default)

    def succeeded(self, agent: str) -> None:
        self.failures.pop(agent, None)
        self.not_before.pop(agent, None)
