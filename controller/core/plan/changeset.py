"""What apply did, per object (Flux's ChangeSet). Pure data: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["ChangeSet", "Entry", "Verb"]


class Verb(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    WAITING = "waiting"  # started, not ready yet: a later apply continues
    PASSED = "passed"  # evaluated: every threshold reached
    FAILED = "failed"  # evaluated: a threshold missed; no alias or traffic moves to it


@dataclass(frozen=True, slots=True)
class Entry:
    address: str
    verb: Verb
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "verb": self.verb.value, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ChangeSet:
    entries: tuple[Entry, ...] = ()

    @property
    def waiting(self) -> bool:
        """Some serving waits for a version to become ready: apply again later."""
        return any(e.verb is Verb.WAITING for e in self.entries)

    @property
    def failed_evaluations(self) -> tuple[Entry, ...]:
        """The versions this apply evaluated that missed a threshold."""
        return tuple(e for e in self.entries if e.verb is Verb.FAILED)

    def count(self, verb: Verb) -> int:
        return sum(e.verb is verb for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {"entries": [e.to_dict() for e in self.entries]}
