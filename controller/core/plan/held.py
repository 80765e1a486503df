"""Rollouts that hold an agent short of its manifest: the canary's rollout failed (its gates)
or was aborted, so traffic stays on the stable version while the manifest still asks for the
canary. A plan shows them (``plan --detailed-exitcode`` exits 2): the desired state is not
reached, and apply will not reach it until the canary or ``spec.rollout`` changes. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.rollout.codec import Phase
from controller.core.rollout.progress import Progress, Running

__all__ = ["HeldRollout", "held_rollouts"]


@dataclass(frozen=True, slots=True)
class HeldRollout:
    agent: str
    canary: int  # the version the manifest asks for
    stable: int  # the version traffic stays on
    phase: str  # "Failed" or "Aborted"
    step: int  # 1-based: the step it stopped at
    steps: int  # how many steps the rollout has (0: unknown)
    why: str  # the gate figures (or the abort's reason), as recorded

    @property
    def message(self) -> str:
        verb = "failed" if self.phase == Phase.FAILED.value else "was aborted"
        of = f"/{self.steps}" if self.steps else ""
        return (
            f"rollout of version {self.canary} {verb} at step {self.step}{of} ({self.why}); "
            f"traffic stays on version {self.stable} until the canary or spec.rollout changes"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "canary": self.canary,
            "stable": self.stable,
            "phase": self.phase,
            "step": self.step,
            "steps": self.steps,
            "why": self.why,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeldRollout:
        return cls(
            agent=str(data["agent"]),
            canary=int(data["canary"]),
            stable=int(data["stable"]),
            phase=str(data["phase"]),
            step=int(data["step"]),
            steps=int(data.get("steps", 0)),
            why=str(data["why"]),
        )


def held_rollouts(
    progress: Mapping[str, Progress], agents: Iterable[str], steps: Mapping[str, int]
) -> tuple[HeldRollout, ...]:
    """The planned ``agents`` whose rollout failed or was aborted (``steps``: agent -> how many
    steps its spec.rollout has)."""
    held = []
    for agent in sorted(set(agents)):
        p = progress.get(agent)
        if not isinstance(p, Running) or p.state.phase not in (Phase.FAILED, Phase.ABORTED):
            continue
        s = p.state
        why = s.message.removeprefix("rolled back: ").removeprefix("aborted: ") or s.phase.value
        count = steps.get(agent, 0)
        step = min(s.step + 1, count) if count else s.step + 1
        held.append(HeldRollout(agent, s.canary, s.stable, s.phase.value, step, count, why))
    return tuple(held)
