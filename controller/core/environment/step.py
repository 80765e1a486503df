"""One agent's promotion step into an environment, as a plan shows it and a saved plan keeps
it. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Gate", "Step"]


@dataclass(frozen=True, slots=True)
class Gate:
    name: str  # evaluation | soak | approval
    held: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Step:
    """One agent's promotion into ``env`` from ``previous``, as this round finds it."""

    agent: str
    env: str
    previous: str
    source_model: str  # the agent's registered model in ``previous``
    candidate: int | None  # the version there to promote (None: nothing to promote)
    gates: tuple[Gate, ...] = ()
    #: The version of this environment that holds the candidate already (copied earlier).
    copied: int | None = None
    #: The version this environment keeps while the candidate waits (None: it has none).
    kept: int | None = None
    #: Seconds until the soak holds (None: no soak pending).
    wait: float | None = None
    why: str = ""  # when there is no candidate

    @property
    def ready(self) -> bool:
        """The candidate comes in (or stays) this round: every gate holds, whether or not it was
        copied before (a version that comes back after a rollback passes them again)."""
        return self.candidate is not None and all(g.held for g in self.gates)

    @property
    def settled(self) -> bool:
        """The candidate came in and is what the environment serves: nothing waits (a gate that
        no longer holds, a rejection after the fact, changes nothing: roll back to leave it)."""
        return self.candidate is not None and self.copied is not None and self.copied == self.kept

    @property
    def waits(self) -> bool:
        return self.candidate is not None and not self.ready and not self.settled

    @property
    def open_gates(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if not g.held)

    def summary(self) -> str:
        """One line for people: what comes in, or what it waits for."""
        if self.candidate is None:
            return f"nothing to promote from {self.previous}: {self.why}"
        what = f"{self.source_model}/{self.candidate}"
        if self.ready and self.copied is not None:
            return f"{what} is in {self.env} as version {self.copied}"
        if self.settled:
            after = "; ".join(f"{g.name}: {g.detail}" for g in self.open_gates)
            return (f"{what} is in {self.env} as version {self.copied} (since then: {after}; "
                    f"`agentctl rollback` to leave it)")  # fmt: skip
        if self.ready:
            return f"{what} is promoted into {self.env} (every gate holds)"
        return f"{what} waits: " + "; ".join(f"{g.name}: {g.detail}" for g in self.open_gates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "environment": self.env,
            "from_environment": self.previous,
            "from_model": self.source_model,
            "candidate": self.candidate,
            "gates": [{"name": g.name, "held": g.held, "detail": g.detail} for g in self.gates],
            "copied": self.copied,
            "kept": self.kept,
            "wait": self.wait,
            "why": self.why,
            "ready": self.ready,
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        def number(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        wait = data.get("wait")
        return cls(
            str(data["agent"]), str(data["environment"]), str(data["from_environment"]),
            str(data["from_model"]), number("candidate"),
            tuple(Gate(str(g["name"]), bool(g["held"]), str(g["detail"]))
                  for g in data.get("gates") or ()),
            number("copied"), number("kept"), None if wait is None else float(wait),
            str(data.get("why") or ""),
        )  # fmt: skip
