"""Retry policy for backend calls: tenacity, exponential backoff with jitter, Retry-After honoured.

Only :class:`~controller.core.errors.TemporaryBackendError` is retried; a permanent error surfaces at
once. When the budget is spent, the last error is raised as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from controller.core.errors import InvalidInput, TemporaryBackendError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    initial: float = 0.5
    maximum: float = 8.0
    deadline: float = 60.0  # seconds across all attempts of one call
    sleep: Callable[[float], None] = time.sleep
    #: Seconds a create sent without an answer may still commit (a request held by a proxy):
    #: how long the apply that sent it keeps looking for what it made.
    settle: float = 30.0
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        """``AGENTCTL_RETRY_ATTEMPTS``, ``AGENTCTL_RETRY_DEADLINE`` and
        ``AGENTCTL_LATE_COMMIT_WAIT`` (seconds) override defaults."""
        env = os.environ if env is None else env
        default = cls()
        problems = []
        attempts, deadline = default.attempts, default.deadline
        raw = env.get("AGENTCTL_RETRY_ATTEMPTS")
        if raw is not None:
            try:
                attempts = int(raw)
                if attempts < 1:
                    raise ValueError
            except ValueError:
                problems.append(f"AGENTCTL_RETRY_ATTEMPTS must be an integer >= 1, not {raw!r}")
        raw = env.get("AGENTCTL_RETRY_DEADLINE")
        if raw is not None:
            try:
                deadline = float(raw)
                if not deadline > 0:
                    raise ValueError
            except ValueError:
                problems.append(f"AGENTCTL_RETRY_DEADLINE must be seconds > 0, not {raw!r}")
        settle = default.settle
        raw = env.get("AGENTCTL_LATE_COMMIT_WAIT")
        if raw is not None:
            try:
                settle = float(raw)
                if not settle >= 0:
                    raise ValueError
            except ValueError:
                problems.append(f"AGENTCTL_LATE_COMMIT_WAIT must be seconds >= 0, not {raw!r}")
        if problems:
            raise InvalidInput.of(*problems, field="environment")
        return cls(attempts=attempts, deadline=deadline, settle=settle)

    def _wait(self) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential(multiplier=self.initial, max=self.maximum) + wait_random(
            0, self.initial
        )

        def wait(state: RetryCallState) -> float:
            delay = backoff(state)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TemporaryBackendError) and exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            return delay

        return wait

    def call(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(TemporaryBackendError),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline),
            wait=self._wait(),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)
