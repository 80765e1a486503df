"""A rollout gate's metric source whose next answers the test sets."""

from __future__ import annotations

from controller.core.rollout.gates import Measurement
from controller.ports import GateQuery


class Source:
    """A metric source whose next answers the test sets."""

    def __init__(self, m: Measurement) -> None:
        self.m = m
        self.asked: list[GateQuery] = []

    def measure(self, q: GateQuery) -> Measurement:
        self.asked.append(q)
        return self.m
