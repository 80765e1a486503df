"""Small fakes the unit tests share: a clock the test moves, and an event sink that records."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that moves only when slept on (or when the test sets ``now``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Events:
    """An EventSink that keeps every event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, bool]] = []

    def event(self, agent: str, reason: str, message: str, warning: bool = False) -> None:
        self.seen.append((agent, reason, message, warning))

    def reasons(self) -> list[tuple[str, str]]:
        return [(a, r) for a, r, _, _ in self.seen]
