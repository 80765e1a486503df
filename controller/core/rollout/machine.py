"""The canary step machine: where a rollout stands and what comes next. Pure data.

Borrowed from Argo Rollouts: a canary walks a list of steps (a traffic weight, then a pause: a
duration, or until promoted); analysis gates (:mod:`controller.core.rollout.gates`) are
measured while it does; a gate that fails ``failure_limit`` times (as Flagger counts its
threshold; Argo Rollouts tolerates ``failureLimit`` and fails on one more) fails the rollout,
which sends all traffic to the stable version and stays failed until the canary or the rollout
changes; progress is a step index plus explicit ``promote`` / ``abort`` commands
(:mod:`controller.core.rollout.commands`), so that the CLI asks and the controller acts. The
state (:class:`~controller.core.rollout.codec.RolloutState`) is recorded in registry tags, so
that a restarted controller resumes at the same step.

One round: :func:`begin` (the stored rollout, or a new one), then, once the engine has measured
the gates that are due (:func:`measurement_due`), :func:`decide`, which walks the steps
(:func:`advance`) and says what the plan should do about it
(:class:`~controller.core.rollout.progress.Running`).

Nothing here reads a clock: ``now`` (Unix seconds, so that it survives a restart) is given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controller.core.manifest.schema import Rollout, seconds
from controller.core.rollout.codec import Phase, RolloutState, Stored
from controller.core.rollout.gates import Gate, Measurement, Verdict, judge
from controller.core.rollout.progress import Event, Running

__all__ = [
    "Decision",
    "Step",
    "advance",
    "begin",
    "decide",
    "from_spec",
    "measurement_due",
    "rollout_digest",
    "start",
]


@dataclass(frozen=True, slots=True)
class Step:
    weight: int  # percent of live traffic to the canary, 1..100
    pause: float | None  # seconds at this weight before the next step; None: until promoted


def from_spec(rollout: Rollout) -> tuple[list[Step], list[Gate]]:
    """A manifest's ``spec.rollout`` as steps and gates."""
    steps = [
        Step(s.weight, seconds(s.pause) if s.pause is not None else None) for s in rollout.steps
    ]
    last = steps[-1]
    if last.weight >= 100 and last.pause is None:
        steps[-1] = Step(last.weight, 0.0)  # the promotion itself: no pause to wait out
    gates = [
        Gate(g.name, g.max, g.min_samples, g.failure_limit, g.min)
        for g in (rollout.analysis.gates if rollout.analysis else [])
    ]
    return steps, gates


def start(canary: int, stable: int, digest: str, now: float) -> RolloutState:
    """A new rollout at its first step; its gates are first measured one interval on (the
    canary has had no traffic yet)."""
    return RolloutState(
        canary=canary, stable=stable, digest=digest, step_started=now, measured_at=now
    )


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
    w = min(steps[min(state.step, len(steps) - 1)].weight, 100)
    # At 100 % before promotion the stable version keeps serving (0 %): a rollback is instant.
    return {state.stable: 100 - w, state.canary: w}


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
            if failures[gate.name] >= max(gate.failure_limit, 1):
                failed = replace(
                    state,
                    phase=Phase.FAILED,
                    failures=failures,
                    verdicts=verdicts,
                    message=(
                        f"rolled back: {gate.name} {gate.missed(m.value or 0.0)}"
                        + ("" if m.baseline is None else f" (stable: {m.baseline:g})")
                        + f" ({failures[gate.name]} failed measurement(s), limit "
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
            # The recorded message stays the same for the whole pause (a tag write per change,
            # not per look); the reason says how long is left.
            going = replace(
                current,
                phase=Phase.PROGRESSING,
                message=f"step {current.step + 1}/{len(steps)}: {step.weight}% "
                f"for {step.pause:g} s",
            )
            left = f"{going.message} ({step.pause - waited:.0f} s left)"
            return Decision(going, _weights(going, steps), False, left)
        if pending:
            # Never promote on too little evidence: hold until conclusive, or promoted.
            held = replace(
                current,
                phase=Phase.PAUSED,
                message=f"inconclusive: {', '.join(pending)} not yet conclusive",
            )
            return Decision(held, _weights(held, steps), False, held.message)

    nxt = current.step + 1
    if nxt == len(steps) - 1 and steps[nxt].weight >= 100 and not steps[nxt].pause:
        nxt = len(steps)  # a last step of 100 % without a pause is the promotion itself
    if nxt >= len(steps):
        done = replace(
            current,
            phase=Phase.PROMOTED,
            step=len(steps) - 1,
            step_started=now,  # when it was promoted: the scale-down delay counts from here
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


def rollout_digest(canary: int, rollout: Rollout) -> str:
    """What a rollout is for: the version it brings in and how (steps, gates, delay). A new
    canary, or an edited ``spec.rollout``, starts a new rollout; anything else resumes it."""
    text = json.dumps(
        {"canary": canary, "rollout": rollout.model_dump(mode="json")}, sort_keys=True
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def begin(
    rollout: Rollout, canary: int, current: int | None, stored: RolloutState | None, now: float
) -> RolloutState | None:
    """The rollout of ``canary``: the stored one if it is for the same canary and spec, else a
    new one from the version the promote alias holds (``current``). None when there is nothing
    to roll out: no stable version yet (a first deployment goes straight in) or the canary is
    it."""
    digest = rollout_digest(canary, rollout)
    if stored is not None and stored.digest == digest:
        return stored
    if current is None or current == canary:
        return None
    return start(canary, current, digest, now)


def measurement_due(rollout: Rollout, state: RolloutState, now: float) -> bool:
    """Whether the gates are to be measured this round."""
    if rollout.analysis is None or state.phase.done:
        return False
    return now - state.measured_at >= seconds(rollout.analysis.interval)


def decide(
    rollout: Rollout,
    state: RolloutState,
    stored: Stored,
    now: float,
    measurements: Mapping[str, Measurement] | None = None,
) -> Running:
    """One round of the rollout ``state`` (from :func:`begin`), decided from what the registry
    held (``stored``: the recorded state and the CLI's command): apply the command (if it is
    for this rollout), judge the measurements, walk the steps; then what the plan should do
    about it."""
    steps, gates = from_spec(rollout)
    before = stored.state
    command = stored.command
    cmd: str | None = None
    # A command is for a rollout that was under way when it was given (not one that starts
    # now), for its canary, and is acted on once: the state records it as consumed. The tag is
    # left in place (deleting it could delete a newer one written meanwhile).
    if (
        command is not None
        and before is not None
        and before.digest == state.digest
        and command.is_for(state.canary)
        and command.to_tag() != state.consumed
    ):
        state = replace(state, consumed=command.to_tag())
        if command.kind == "abort" and not state.phase.done:
            cmd = "abort"
        elif command.skips(state.step) and not state.phase.done:
            cmd = "promote"
        elif command.kind == "rollback" and command.version is not None:
            state = replace(
                state,
                stable=command.version,
                phase=Phase.ABORTED,
                message=f"rolled back: all traffic to v{command.version} (agentctl rollback)",
            )
    if measurements:
        state = replace(state, measured_at=now)
    decision = advance(steps, gates, state, now, measurements, cmd)
    new = decision.state
    weights = dict(decision.weights)
    active = not new.phase.done
    requeue: float | None = None
    wait: float | None = None
    if new.phase is Phase.PROMOTED:
        left = new.step_started + seconds(rollout.scale_down_delay) - now
        if left > 0 and new.stable != new.canary:
            weights[new.stable] = 0  # the old version keeps serving until the delay is over
            active, requeue, wait = True, max(left, 1.0), left
    elif active:
        interval = seconds(rollout.analysis.interval) if rollout.analysis else None
        candidates = [] if interval is None else [interval - (now - new.measured_at)]
        pause = steps[new.step].pause
        if new.phase is Phase.PROGRESSING and pause is not None:
            wait = max(pause - (now - new.step_started), 0.0)
            candidates.append(pause - (now - new.step_started))
        # A pause until promoted waits for a command: look for it every few seconds.
        candidates.append(10.0 if new.phase is Phase.PAUSED else 60.0)
        requeue = max(min(candidates), 1.0)
    alias_version = new.canary if new.phase is Phase.PROMOTED else new.stable
    return Running(
        rollout.promote_alias,
        alias_version,
        weights,
        new,
        stored,
        decision.reason,
        active,
        requeue,
        event=_event(before, new),
        wait=wait,
    )


def _event(before: RolloutState | None, after: RolloutState) -> Event | None:
    if before is None or before.digest != after.digest:
        return (
            "RolloutStarted",
            f"v{after.canary} replaces v{after.stable}: {after.message}",
            False,
        )
    if before.phase is after.phase and before.step == after.step:
        return None
    reason = {
        Phase.PROMOTED: "RolloutPromoted",
        Phase.FAILED: "RolloutFailed",
        Phase.ABORTED: "RolloutAborted",
        Phase.PAUSED: "RolloutPaused",
    }.get(after.phase, "RolloutStep")
    return (reason, after.message, after.phase in (Phase.FAILED, Phase.ABORTED))
