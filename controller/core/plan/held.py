"""Rollouts that keep an agent short of its manifest, as a plan reports them. Pure.

A rollout's record is a registry tag, so these come from the registry alone, whatever the
target (``plan --target registry`` too). Two kinds:

- **held** (:attr:`HeldRollout.attention`): a state the controller will not leave by itself.
  The canary's rollout failed (its gates) or was aborted, so traffic stays on the stable version
  while the manifest still asks for the canary; or it is paused at a step without a duration,
  waiting for ``agentctl promote``. A plan lists them under "needs attention";
- **in progress**: a timed pause, gates being measured, the old version's scale-down delay:
  pending work the controller (or ``apply --wait``) finishes by itself.

Either way the desired state is not reached: ``plan --detailed-exitcode`` exits 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.manifest.schema import Rollout
from controller.core.rollout.codec import Phase
from controller.core.rollout.machine import from_spec
from controller.core.rollout.progress import Progress, Running

__all__ = ["WAITING", "GatedVersion", "HeldRollout", "held_rollouts"]

#: The phases a plan reports: the recorded ones, except that "Paused" is only a pause until
#: promoted (a hold for inconclusive gates is "Progressing": more measurements decide it).
_ATTENTION = ("Failed", "Aborted", "Paused")
#: A rollout that --target registry cannot start: a serving target walks it (pending work).
WAITING = "Waiting"


@dataclass(frozen=True, slots=True)
class HeldRollout:
    agent: str
    canary: int  # the version the manifest asks for
    stable: int  # the version traffic stays on (the one the canary replaces)
    phase: str  # "Failed", "Aborted", "Paused" (until promoted) or "Progressing" / "Promoted"
    step: int  # 1-based: the step it is at, or stopped at
    steps: int  # how many steps the rollout has (0: unknown)
    why: str  # the gate figures (or the abort's reason, the step's state), as recorded
    percent: int = 0  # the canary's share of live traffic now
    wait: float | None = None  # seconds until it moves on by itself (a timed pause, a delay)

    @property
    def attention(self) -> bool:
        """The controller will not leave this state by itself."""
        return self.phase in _ATTENTION

    @property
    def message(self) -> str:
        of = f"/{self.steps}" if self.steps else ""
        if self.phase in ("Failed", "Aborted"):
            verb = "failed" if self.phase == Phase.FAILED.value else "was aborted"
            return (
                f"rollout of version {self.canary} {verb} at step {self.step}{of} ({self.why}); "
                f"traffic stays on version {self.stable} until the canary or spec.rollout changes"
            )
        if self.phase == "Paused":
            return (
                f"rollout of version {self.canary} paused at step {self.step}{of} "
                f"({self.percent} %): run `agentctl promote {self.agent}` to continue, or "
                f"`agentctl rollout abort {self.agent}`"
            )
        version = f"version {self.canary}" if self.canary else "the new version"
        return f"rollout of {version}: {self.brief}"

    @property
    def brief(self) -> str:
        """Where a rollout in progress stands, in a few words."""
        if self.phase == WAITING:
            return (
                f"not started: a serving target (--target local or kubernetes) starts it; the "
                f"promote alias stays on version {self.stable} until it is promoted"
            )
        later = f"in {self.wait:.0f} s" if self.wait is not None else "when its gates pass"
        if self.phase == Phase.PROMOTED.value:
            return f"promoted; version {self.stable} stops serving {later}"
        of = f"/{self.steps}" if self.steps else ""
        why = "" if self.wait is not None or not self.why else f" ({self.why})"
        return f"step {self.step}{of}, {self.percent} %, next step {later}{why}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "canary": self.canary,
            "stable": self.stable,
            "phase": self.phase,
            "step": self.step,
            "steps": self.steps,
            "why": self.why,
            "percent": self.percent,
            "wait_seconds": None if self.wait is None else round(self.wait, 1),
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeldRollout:
        wait = data.get("wait_seconds")
        return cls(
            agent=str(data["agent"]),
            canary=int(data["canary"]),
            stable=int(data["stable"]),
            phase=str(data["phase"]),
            step=int(data["step"]),
            steps=int(data.get("steps", 0)),
            why=str(data["why"]),
            percent=int(data.get("percent", 0)),
            wait=None if wait is None else float(wait),
        )


@dataclass(frozen=True, slots=True)
class GatedVersion:
    """A version that failed its evaluation (recorded on it for the evaluation inputs the
    manifests give now): apply moves no alias and no traffic to it. Needs attention: it stays so
    until its source or spec.evaluation changes."""

    agent: str
    version: int
    reason: str  # the thresholds missed: scorer, figure, threshold
    run_id: str = ""

    @property
    def message(self) -> str:
        run = f" (evaluation run {self.run_id})" if self.run_id else ""
        return (
            f"version {self.version} failed its evaluation: {self.reason}{run}; it gets no alias "
            "and no traffic until its source or spec.evaluation changes"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "version": self.version,
            "reason": self.reason,
            "run_id": self.run_id,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GatedVersion:
        return cls(
            str(data["agent"]), int(data["version"]), str(data["reason"]), str(data["run_id"])
        )


def held_rollouts(
    progress: Mapping[str, Progress], agents: Iterable[str], rollouts: Mapping[str, Rollout]
) -> tuple[HeldRollout, ...]:
    """The planned ``agents`` whose rollout has not reached the manifest's state: failed,
    aborted, paused until promoted, or still under way (``rollouts``: agent -> its
    spec.rollout). A promoted rollout whose old version is gone, and none at all, are not
    listed."""
    out = []
    for agent in sorted(set(agents)):
        p = progress.get(agent)
        rollout = rollouts.get(agent)
        if not isinstance(p, Running) or rollout is None:
            continue
        s = p.state
        steps, _ = from_spec(rollout)
        count = len(steps)
        step = min(s.step + 1, count)
        percent = p.weights.get(s.canary, 0)
        if s.phase in (Phase.FAILED, Phase.ABORTED):
            why = s.message.removeprefix("rolled back: ").removeprefix("aborted: ")
            out.append(
                HeldRollout(agent, s.canary, s.stable, s.phase.value, step, count,
                            why or s.phase.value)
            )  # fmt: skip
            continue
        if not p.active:
            continue  # promoted, the old version gone: the manifest's state is reached
        if s.phase is Phase.PAUSED and steps[min(s.step, count - 1)].pause is None:
            phase = "Paused"  # until promoted: a command moves it on, nothing else
        elif s.phase is Phase.PROMOTED:
            phase = Phase.PROMOTED.value
        else:
            phase = Phase.PROGRESSING.value
        out.append(HeldRollout(agent, s.canary, s.stable, phase, step, count, s.message,
                               percent, p.wait))  # fmt: skip
    return tuple(out)
