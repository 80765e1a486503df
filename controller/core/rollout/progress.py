"""What an agent's rollout asks of this round's plan: a tagged union of three cases. Pure data.

While a rollout runs, its progress takes the place of the manifest's end state for the promote
alias and the live traffic split. Each case carries what the registry held when it was decided
(:class:`~controller.core.rollout.codec.Stored`) and the canary as it was resolved this round,
so that the planner computes the rollout's change from the value alone and never reads raw
tags:

- :class:`Hold`: the canary is not registered yet (this apply logs it): the promote alias and
  all traffic stay on the stable version, the canary is started beside it at 0 %, and the
  rollout begins next round;
- :class:`Clear`: no rollout applies (the canary is the stable version again): the record is
  deleted, and the manifest governs alias and traffic;
- :class:`Running`: a rollout under way, or finished and recorded: the state to record, the
  weights, the version the promote alias holds, when to look again and what to report.

Every case answers ``reason``, ``active``, ``requeue``, ``event`` and ``mark``, so that those who
only wait or report need not tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.manifest.schema import VersionRef
from controller.core.rollout.codec import RolloutState, Stored

__all__ = ["Clear", "Event", "Hold", "Progress", "Running"]

#: (reason, message, warning): what to report about a rollout's move.
Event = tuple[str, str, bool]


def _mark(
    alias_version: int, weights: Mapping[int, int], state: RolloutState | None, warm: bool
) -> str:
    stored = state.to_storage() if state is not None else None
    return json.dumps([alias_version, sorted(weights.items()), stored, warm])


@dataclass(frozen=True, slots=True)
class Hold:
    """The canary is not registered yet, or not evaluated yet (spec.evaluation), or failed its
    evaluation: traffic and the promote alias stay on ``stable``; a canary that this apply
    registers or evaluates is served too, at 0 % (a failed one is not: the planner knows)."""

    alias: str  # the promote alias
    stable: int  # the version it holds
    canary: VersionRef  # the canary as resolved from the manifest (``current``)
    stored: Stored
    #: "" (the canary is not registered yet), "evaluating" (this apply evaluates it) or
    #: "failed" (its evaluation failed: the rollout does not start until the canary changes).
    gate: str = ""
    number: int | None = None  # the canary's number, once registered

    @property
    def alias_version(self) -> int:
        return self.stable

    @property
    def weights(self) -> Mapping[int, int]:
        return {self.stable: 100}

    @property
    def warm_canary(self) -> bool:
        """The canary is started beside the stable version, without traffic (always, here)."""
        return True

    @property
    def reason(self) -> str:
        if self.gate == "failed":
            return (
                f"v{self.number} failed its evaluation: the rollout does not start; "
                f"v{self.stable} keeps all traffic"
            )
        if self.gate == "evaluating":
            return (
                f"waiting for v{self.number} to pass its evaluation; v{self.stable} keeps all "
                "traffic"
            )
        return f"waiting for the canary to be registered; v{self.stable} keeps all traffic"

    @property
    def active(self) -> bool:
        return True

    @property
    def requeue(self) -> float | None:
        return None if self.gate == "failed" else 5.0

    @property
    def event(self) -> Event | None:
        return None

    @property
    def mark(self) -> str:
        """What this round asks of the plan, for drift detection: a change of it is the
        rollout moving, not someone else's edit."""
        return _mark(self.stable, self.weights, None, True)


@dataclass(frozen=True, slots=True)
class Clear:
    """No rollout applies: forget the recorded one (its tags, the CLI's command too), so that a
    later rollout of the same version starts afresh; alias and traffic follow the manifest."""

    canary: int  # the canary, which is the stable version
    stored: Stored
    reason: str

    @property
    def active(self) -> bool:
        return False

    @property
    def requeue(self) -> float | None:
        return None

    @property
    def event(self) -> Event | None:
        return None

    @property
    def mark(self) -> str:
        return "clear"


@dataclass(frozen=True, slots=True)
class Running:
    """One round of a rollout: where the promote alias points, the live traffic split (a 0 %
    version is kept serving: the old stable one during the scale-down delay), and the state to
    record. ``active``: the rollout is under way (its changes are progress, not drift);
    ``requeue``: seconds until it should be looked at again (None: nothing pending)."""

    alias: str  # the promote alias
    alias_version: int
    weights: Mapping[int, int]  # version -> percent
    state: RolloutState  # to record
    stored: Stored  # what was recorded when this round was decided
    reason: str
    active: bool
    requeue: float | None = None
    event: Event | None = None
    #: Seconds until it moves on by itself: a timed pause's rest, or the scale-down delay's
    #: (None: it waits for gates, or for a command).
    wait: float | None = None

    @property
    def canary(self) -> int:
        return self.state.canary

    @property
    def mark(self) -> str:
        return _mark(self.alias_version, self.weights, self.state, False)


#: What a rollout asks of one round's plan.
Progress = Hold | Clear | Running
