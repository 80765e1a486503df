"""A rollout's record and its storage codec: the state value and registry tags. Pure data.

A rollout's state lives in the registry, on the agent's registered model, so that a restarted
controller resumes at the same step: :class:`RolloutState` is a frozen value written and read
through explicit :meth:`RolloutState.to_storage` / :meth:`RolloutState.from_storage` (as kopf
keeps handler progress), one JSON tag, :data:`STATE_TAG`. :func:`read` is the one place the
rollout's tags are parsed from a model's tags: the state, the CLI's command
(:mod:`controller.core.rollout.commands`) and every tag under :data:`TAG_PREFIX`, as a
:class:`Stored` value that travels with the round's progress, so that no one else reads raw
tags.

Unreadable tags are no state and no command (None), never an error: a rollout whose state is
lost starts again rather than guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from controller.core.rollout.commands import COMMAND_TAG, Command
from controller.core.rollout.gates import Verdict

__all__ = ["STATE_TAG", "TAG_PREFIX", "Phase", "RolloutState", "Stored", "read"]

#: Registry tags on the registered model that hold an agent's rollout record.
TAG_PREFIX = "agentctl.io/rollout."
#: The tag that holds an agent's rollout state, as JSON.
STATE_TAG = TAG_PREFIX + "state"


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"  # waiting: for promote, or for a conclusive analysis
    PROMOTED = "Promoted"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def done(self) -> bool:
        return self in (Phase.PROMOTED, Phase.FAILED, Phase.ABORTED)


@dataclass(frozen=True, slots=True)
class RolloutState:
    canary: int  # the version being rolled out
    stable: int  # the version it replaces (where a rollback goes)
    digest: str  # the agent's desired state this rollout is for: a new one starts afresh
    phase: Phase = Phase.PROGRESSING
    step: int = 0  # index into the steps
    step_started: float = 0.0  # Unix seconds
    failures: Mapping[str, int] = field(default_factory=dict)  # gate -> failed measurements
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)  # gate -> latest, this step
    message: str = ""
    measured_at: float = 0.0  # Unix seconds of the last measurement of the gates
    consumed: str = ""  # the last CLI command acted on (a command is acted on once)

    def to_storage(self) -> dict[str, str]:
        """The state as one registry tag (:data:`STATE_TAG`, JSON): written in one request, so
        that a crash never leaves half of a new state beside half of the old one."""
        data = {
            "canary": self.canary,
            "stable": self.stable,
            "digest": self.digest,
            "phase": self.phase.value,
            "step": self.step,
            "stepStarted": round(self.step_started, 3),
            "failures": dict(sorted(self.failures.items())),
            "verdicts": {g: v.value for g, v in sorted(self.verdicts.items())},
            "message": self.message[:1000],
            "measuredAt": round(self.measured_at, 3),
            "consumed": self.consumed,
        }
        return {STATE_TAG: json.dumps(data, separators=(",", ":"))}

    @classmethod
    def from_storage(cls, tags: Mapping[str, str]) -> RolloutState | None:
        """The state the tags hold; None if there is none, or it is not readable."""
        try:
            t = json.loads(tags[STATE_TAG])
            return cls(
                canary=int(t["canary"]),
                stable=int(t["stable"]),
                digest=str(t["digest"]),
                phase=Phase(t["phase"]),
                step=int(t["step"]),
                step_started=float(t["stepStarted"]),
                failures={str(g): int(n) for g, n in t.get("failures", {}).items()},
                verdicts={str(g): Verdict(v) for g, v in t.get("verdicts", {}).items()},
                message=str(t.get("message", "")),
                measured_at=float(t.get("measuredAt", 0)),
                consumed=str(t.get("consumed", "")),
            )
        except (KeyError, ValueError, TypeError, AttributeError, RecursionError):
            return None


@dataclass(frozen=True, slots=True)
class Stored:
    """What the registry holds of an agent's rollout, read once per round by :func:`read`."""

    #: Every tag under :data:`TAG_PREFIX`, sorted by key, as stored (the CLI's command too).
    tags: Mapping[str, str] = field(default_factory=dict)
    state: RolloutState | None = None  # None: none recorded, or not readable
    command: Command | None = None  # the CLI's request, if any and readable

    @property
    def record(self) -> dict[str, str]:
        """The tags the controller writes (all but the CLI's command tag, which is left in
        place: the state records it as consumed)."""
        return {k: v for k, v in self.tags.items() if k != COMMAND_TAG}


def read(tags: Mapping[str, str]) -> Stored:
    """A registered model's rollout record, from its tags (other tags are ignored)."""
    mine = {k: v for k, v in sorted(tags.items()) if k.startswith(TAG_PREFIX)}
    return Stored(mine, RolloutState.from_storage(mine), Command.parse(mine.get(COMMAND_TAG)))
