"""Progressive delivery as a value: where a canary rollout stands and what comes next. Pure data.

Borrowed from Argo Rollouts: a canary walks a list of steps (a traffic weight, then a pause: a
duration, or until promoted); analysis gates are measured while it does, each measurement
judged Successful, Failed or Inconclusive (too few samples; never promotes); a gate that fails
more than its ``failure_limit`` times fails the rollout, which sends all traffic back to the
stable version and stays failed until the manifest changes; progress is a step index plus
explicit ``promote`` / ``abort`` commands, so that the CLI asks and the controller acts. The
state round-trips through registry tags (:meth:`RolloutState.to_tags` /
:meth:`RolloutState.from_tags`): a restarted controller resumes at the same step.

Nothing here reads a clock: ``now`` (Unix seconds, so that it survives a restart) is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from controller.schema import Rollout, seconds

__all__ = [
    "TAG_PREFIX",
    "Decision",
    "Gate",
    "Measurement",
    "Phase",
    "RolloutState",
    "Step",
    "Verdict",
    "advance",
    "from_spec",
    "judge",
    "start",
]

#: Registry tags on the registered model that hold an agent's rollout state.
TAG_PREFIX = "agentctl.io/rollout."


class Phase(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"  # waiting: for promote, or for a conclusive analysis
    PROMOTED = "Promoted"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def done(self) -> bool:
        return self in (Phase.PROMOTED, Phase.FAILED, Phase.ABORTED)


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True, slots=True)
class Step:
    weight: int  # percent of live traffic to the canary, 1..100
    pause: float | None  # seconds at this weight before the next step; None: until promoted


@dataclass(frozen=True, slots=True)
class Gate:
    """An analysis gate: the canary's ``metric`` must stay at or under ``max_value``."""

    name: str  # e.g. "error-rate", "latency-p95"
    max_value: float
    min_samples: int = 20
    failure_limit: int = 0  # failed measurements tolerated; one more fails the rollout


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement of a gate's metric over its interval: ``value`` from ``samples``."""

    value: float | None
    samples: int


def from_spec(rollout: Rollout) -> tuple[list[Step], list[Gate]]:
    """A manifest's ``spec.rollout`` as steps and gates."""
    steps = [
        Step(s.weight, seconds(s.pause) if s.pause is not None else None) for s in rollout.steps
    ]
    gates = [
        Gate(g.name, g.max, g.min_samples, g.failure_limit)
        for g in (rollout.analysis.gates if rollout.analysis else [])
    ]
    return steps, gates


def judge(gate: Gate, m: Measurement) -> Verdict:
    if m.value is None or m.samples < gate.min_samples:
        return Verdict.INCONCLUSIVE
    return Verdict.SUCCESSFUL if m.value <= gate.max_value else Verdict.FAILED


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

    def to_tags(self) -> dict[str, str]:
        """The state as registry tags (strings), under :data:`TAG_PREFIX`."""
        return {
            TAG_PREFIX + "canary": str(self.canary),
            TAG_PREFIX + "stable": str(self.stable),
            TAG_PREFIX + "digest": self.digest,
            TAG_PREFIX + "phase": self.phase.value,
            TAG_PREFIX + "step": str(self.step),
            TAG_PREFIX + "step-started": f"{self.step_started:.3f}",
            TAG_PREFIX + "failures": ",".join(f"{g}={n}" for g, n in sorted(self.failures.items())),
            TAG_PREFIX + "verdicts": ",".join(
                f"{g}={v.value}" for g, v in sorted(self.verdicts.items())
            ),
            TAG_PREFIX + "message": self.message[:4000],
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> RolloutState | None:
        """The state the tags hold; None if there is none, or it is not readable (a rollout
        whose state is lost starts again rather than guessing)."""
        t = {k[len(TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
        try:
            return cls(
                canary=int(t["canary"]),
                stable=int(t["stable"]),
                digest=t["digest"],
                phase=Phase(t["phase"]),
                step=int(t["step"]),
                step_started=float(t["step-started"]),
                failures={g: int(n) for g, n in _pairs(t.get("failures", ""))},
                verdicts={g: Verdict(v) for g, v in _pairs(t.get("verdicts", ""))},
                message=t.get("message", ""),
            )
        except (KeyError, ValueError):
            return None


def _pairs(text: str) -> list[tuple[str, str]]:
    return [tuple(p.split("=", 1)) for p in text.split(",") if "=" in p]  # type: ignore[misc]


def start(canary: int, stable: int, digest: str, now: float) -> RolloutState:
    return RolloutState(canary=canary, stable=stable, digest=digest, step_started=now)


@dataclass(frozen=True, slots=True)
class Decision:
    state: RolloutState
    weights: dict[int, int]  # version -> percent, what the route should carry now
    promote: bool  # move the rollout's alias to the canary (the last step is done)
    reason: str


def _weights(state: RolloutState, steps: Sequence[Step]) -> dict[int, int]:
    if state.phase is Phase.PROMOTED:
        return {state.canary: 100}
    if state.phase in (Phase.FAILED, Phase.ABORTED):
        return {state.stable: 100}
    w = steps[min(state.step, len(steps) - 1)].weight
    return {state.canary: 100} if w >= 100 else {state.stable: 100 - w, state.canary: w}


def advance(
    steps: Sequence[Step],
    gates: Sequence[Gate],
    state: RolloutState,
    now: float,
    measurements: Mapping[str, Measurement] | None = None,
    command: str | None = None,
) -> Decision:
    """The next state of a rollout, given the time, this round's measurements (gate name ->
    measurement; a gate may be missing: not measured this round) and a command (``promote``:
    skip the current pause or inconclusive hold; ``abort``: back to stable now)."""
    if not steps:
        raise ValueError("a rollout needs at least one step")
    if state.phase.done:
        return Decision(state, _weights(state, steps), False, state.message)
    if command == "abort":
        aborted = replace(state, phase=Phase.ABORTED, message="aborted: all traffic to stable")
        return Decision(aborted, _weights(aborted, steps), False, aborted.message)

    failures = dict(state.failures)
    verdicts = dict(state.verdicts)
    for gate in gates:
        m = (measurements or {}).get(gate.name)
        if m is None:
            continue
        verdict = judge(gate, m)
        verdicts[gate.name] = verdict
        if verdict is Verdict.FAILED:
            failures[gate.name] = failures.get(gate.name, 0) + 1
            if failures[gate.name] > gate.failure_limit:
                failed = replace(
                    state,
                    phase=Phase.FAILED,
                    failures=failures,
                    verdicts=verdicts,
                    message=(
                        f"rolled back: {gate.name} {m.value:g} > {gate.max_value:g} "
                        f"({failures[gate.name]} failed measurement(s), limit "
                        f"{gate.failure_limit})"
                    ),
                )
                return Decision(failed, _weights(failed, steps), False, failed.message)
    current = replace(state, failures=failures, verdicts=verdicts)

    step = steps[current.step]
    waited = now - current.step_started
    pending = [g.name for g in gates if verdicts.get(g.name) is not Verdict.SUCCESSFUL]
    if command != "promote":
        if step.pause is None:
            held = replace(current, phase=Phase.PAUSED, message="paused until promoted")
            return Decision(held, _weights(held, steps), False, held.message)
        if waited < step.pause:
            going = replace(
                current,
                phase=Phase.PROGRESSING,
                message=f"step {current.step + 1}/{len(steps)}: {step.weight}% "
                f"for {step.pause - waited:.0f} s more",
            )
            return Decision(going, _weights(going, steps), False, going.message)
        if pending:
            # Never promote on too little evidence: hold until conclusive, or promoted.
            held = replace(
                current,
                phase=Phase.PAUSED,
                message=f"inconclusive: {', '.join(pending)} not yet conclusive",
            )
            return Decision(held, _weights(held, steps), False, held.message)

    nxt = current.step + 1
    if nxt >= len(steps):
        done = replace(
            current,
            phase=Phase.PROMOTED,
            step=len(steps) - 1,
            message=f"promoted: v{current.canary} takes all traffic",
        )
        return Decision(done, _weights(done, steps), True, done.message)
    moved = replace(
        current,
        phase=Phase.PROGRESSING,
        step=nxt,
        step_started=now,
        verdicts={},
        message=f"step {nxt + 1}/{len(steps)}: {steps[nxt].weight}%",
    )
    return Decision(moved, _weights(moved, steps), False, moved.message)
