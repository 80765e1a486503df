"""The canary state machine: steps and pauses, gates judged per measurement, rollback past the
failure limit, inconclusive never promotes, promote and abort, and a restart from registry
tags resuming at the same step."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.manifest.schema import Rollout
from controller.core.rollout.codec import STATE_TAG, TAG_PREFIX, Phase, RolloutState, read
from controller.core.rollout.commands import COMMAND_TAG, Command
from controller.core.rollout.gates import Gate, Measurement, Verdict, judge
from controller.core.rollout.machine import (
    Step,
    advance,
    begin,
    decide,
    from_spec,
    rollout_digest,
    start,
)
from controller.core.rollout.progress import Running
from controller.engine.loader import load
from tests.support.manifests import GOOD, errors_of, write_repo

STEPS = [Step(10, 60), Step(25, 60), Step(50, 60), Step(100, 0)]
ERRORS = Gate("error-rate", max_value=0.05, min_samples=20, failure_limit=2)
OK = {"error-rate": Measurement(0.01, 50)}
BAD = {"error-rate": Measurement(0.30, 50)}
FEW = {"error-rate": Measurement(0.0, 3)}


def test_judge() -> None:
    assert judge(ERRORS, Measurement(0.05, 20)) is Verdict.SUCCESSFUL
    assert judge(ERRORS, Measurement(0.06, 20)) is Verdict.FAILED
    assert judge(ERRORS, Measurement(0.0, 19)) is Verdict.INCONCLUSIVE
    assert judge(ERRORS, Measurement(None, 100)) is Verdict.INCONCLUSIVE


def test_a_healthy_canary_walks_every_step_and_is_promoted() -> None:
    state, now = start(canary=2, stable=1, digest="d", now=0.0), 0.0
    seen = []
    for _ in range(20):
        decision = advance(STEPS, [ERRORS], state, now, OK)
        seen.append((decision.weights, decision.promote))
        state, now = decision.state, now + 30
        if state.phase is Phase.PROMOTED:
            break
    weights = [w for w, _ in seen]
    assert weights[0] == {1: 90, 2: 10}
    assert {1: 75, 2: 25} in weights and {1: 50, 2: 50} in weights
    assert weights[-1] == {2: 100} and seen[-1][1] is True
    assert [p for _, p in seen].count(True) == 1
    # 60 s per pause: no step is left before its pause is over
    assert weights.count({1: 90, 2: 10}) >= 2
    again = advance(STEPS, [ERRORS], state, now + 1000, BAD)
    assert again.state.phase is Phase.PROMOTED and again.weights == {2: 100}


def test_a_failing_canary_is_rolled_back_past_its_failure_limit_and_stays_failed() -> None:
    state = start(2, 1, "d", 0.0)
    first = advance(STEPS, [ERRORS], state, 10, BAD)  # the first of two allowed failures
    assert first.state.phase is Phase.PROGRESSING and first.state.failures == {"error-rate": 1}
    second = advance(STEPS, [ERRORS], first.state, 20, BAD)
    assert second.state.phase is Phase.FAILED and second.weights == {1: 100}
    assert second.reason == "rolled back: error-rate 0.3 > 0.05 (2 failed measurement(s), limit 2)"
    later = advance(STEPS, [ERRORS], second.state, 5000, OK, command="promote")
    assert later.state.phase is Phase.FAILED and later.weights == {1: 100}


def test_too_few_samples_never_promote_but_promote_overrides() -> None:
    state = start(2, 1, "d", 0.0)
    held = advance(STEPS, [ERRORS], state, 61, FEW)
    assert held.state.phase is Phase.PAUSED and held.state.step == 0
    assert held.reason == "inconclusive: error-rate not yet conclusive"
    assert held.weights == {1: 90, 2: 10}
    still = advance(STEPS, [ERRORS], held.state, 500, None)  # no new measurement: still held
    assert still.state.step == 0
    pushed = advance(STEPS, [ERRORS], still.state, 501, None, command="promote")
    assert pushed.state.step == 1 and pushed.weights == {1: 75, 2: 25}
    assert pushed.state.verdicts == {} and pushed.state.step_started == 501


def test_an_indefinite_pause_waits_for_promote() -> None:
    steps = [Step(20, None), Step(100, 0)]
    state = start(2, 1, "d", 0.0)
    waiting = advance(steps, [], state, 10_000)
    assert waiting.state.phase is Phase.PAUSED and waiting.reason == "paused until promoted"
    # The last step (100 %, no pause) is the promotion itself.
    done = advance(steps, [], waiting.state, 10_001, command="promote")
    assert done.promote and done.state.phase is Phase.PROMOTED and done.weights == {2: 100}
    assert done.state.step_started == 10_001  # the scale-down delay counts from here
    three = [Step(20, None), Step(100, 60), Step(100, 0)]  # 100 % held a minute first
    held = advance(three, [], waiting.state, 10_001, command="promote")
    assert held.weights == {1: 0, 2: 100} and not held.promote  # v1 kept serving until then


def test_abort_sends_everything_back_to_stable() -> None:
    state = advance(STEPS, [ERRORS], start(2, 1, "d", 0.0), 61, OK).state
    aborted = advance(STEPS, [ERRORS], state, 62, OK, command="abort")
    assert aborted.state.phase is Phase.ABORTED and aborted.weights == {1: 100}
    assert not aborted.promote


def test_the_state_survives_a_restart_through_registry_tags() -> None:
    state = advance(STEPS, [ERRORS], start(2, 1, "sha256:abc", 0.0), 61, OK).state
    state = advance(STEPS, [ERRORS], state, 70, BAD).state
    tags = state.to_storage()
    assert all(k.startswith(TAG_PREFIX) and isinstance(v, str) for k, v in tags.items())
    back = RolloutState.from_storage({**tags, "unrelated": "x"})
    assert back == state
    # the restarted controller carries on from the same step, with the failure remembered
    failed = advance(STEPS, [ERRORS], back, 80, BAD)
    assert failed.state.phase is Phase.FAILED


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {STATE_TAG: "{not json"},
        {STATE_TAG: '{"canary": "x"}'},
        {STATE_TAG: start(2, 1, "d", 0).to_storage()[STATE_TAG].replace("Progressing", "?")},
    ],
)
def test_unreadable_state_is_none(broken: dict[str, str]) -> None:
    assert RolloutState.from_storage(broken) is None


SPEC = Rollout.model_validate(
    {
        "canary": {"alias": "champion"},
        "promoteAlias": "champion",
        "steps": [{"weight": 20, "pause": "60s"}, {"weight": 50, "pause": "60s"}, {"weight": 100}],
        "scaleDownDelay": "30s",
        "analysis": {
            "interval": "10s",
            "gates": [
                {"name": "errors", "metric": "errorRate", "source": "router", "max": 0.1,
                 "minSamples": 10, "failureLimit": 2},
            ],
        },
    }
)  # fmt: skip
DG = rollout_digest(2, SPEC)
NEW = start(2, 1, DG, 0.0)
AT_1 = RolloutState(2, 1, DG, step=1, step_started=100.0, measured_at=100.0,
                    message="step 2/3: 50%")  # fmt: skip
ONE_BAD = RolloutState(2, 1, DG, failures={"errors": 1}, verdicts={"errors": Verdict.FAILED},
                       measured_at=10.0, message="step 1/3: 20% for 60 s")  # fmt: skip
DONE = RolloutState(2, 1, DG, Phase.PROMOTED, step=2, step_started=500.0,
                    message="promoted: v2 takes all traffic")  # fmt: skip
GREEN = {"errors": Measurement(0.0, 50)}
RED = {"errors": Measurement(0.5, 50)}
THIN = {"errors": Measurement(0.0, 3)}


def stored(state: RolloutState | None, command: Command | None = None) -> dict[str, str]:
    tags = state.to_storage() if state is not None else {}
    return {**tags, COMMAND_TAG: command.to_tag()} if command is not None else tags


@pytest.mark.parametrize(
    ("state", "tags", "now", "measured", "expected"),
    [
        # A new rollout: 20 % to the canary, an event, the next look when the gate is due.
        (NEW, {}, 1.0, None,
         (Phase.PROGRESSING, 0, {1: 80, 2: 20}, 1, True, 9.0, "RolloutStarted", "")),
        # Resumed within the pause: nothing to report.
        (NEW, stored(NEW), 5.0, None,
         (Phase.PROGRESSING, 0, {1: 80, 2: 20}, 1, True, 5.0, None, "")),
        # The pause is over and the gate passed: the next step.
        (NEW, stored(NEW), 61.0, GREEN,
         (Phase.PROGRESSING, 1, {1: 50, 2: 50}, 1, True, 10.0, "RolloutStep", "")),
        # Too few samples when the pause is over: held, looked at again soon.
        (NEW, stored(NEW), 61.0, THIN,
         (Phase.PAUSED, 0, {1: 80, 2: 20}, 1, True, 10.0, "RolloutPaused", "")),
        # The last pause is over: promoted; the old version serves at 0 % for the delay.
        (AT_1, stored(AT_1), 161.0, GREEN,
         (Phase.PROMOTED, 2, {2: 100, 1: 0}, 2, True, 30.0, "RolloutPromoted", "")),
        # The delay is over: done, nothing pending.
        (DONE, stored(DONE), 531.0, None,
         (Phase.PROMOTED, 2, {2: 100}, 2, False, None, None, "")),
        # The second failed measurement: rolled back.
        (ONE_BAD, stored(ONE_BAD), 20.0, RED,
         (Phase.FAILED, 0, {1: 100}, 1, False, None, "RolloutFailed", "")),
        # Commands: acted on once, and recorded as consumed.
        (NEW, stored(NEW, Command("abort", 2)), 5.0, None,
         (Phase.ABORTED, 0, {1: 100}, 1, False, None, "RolloutAborted", "abort@2")),
        (NEW, stored(NEW, Command("promote", 2, step=0)), 5.0, None,
         (Phase.PROGRESSING, 1, {1: 50, 2: 50}, 1, True, 5.0, "RolloutStep", "promote@2:0")),
        (NEW, stored(NEW, Command("promote", 2, step=1)), 5.0, None,  # a step not reached
         (Phase.PROGRESSING, 0, {1: 80, 2: 20}, 1, True, 5.0, None, "promote@2:1")),
        (DONE, stored(DONE, Command("rollback", 2, version=1)), 900.0, None,
         (Phase.ABORTED, 2, {1: 100}, 1, False, None, "RolloutAborted", "rollback@2=1")),
        # Not for this rollout: another canary's, one already acted on, one older than it.
        (NEW, stored(NEW, Command("abort", 3)), 5.0, None,
         (Phase.PROGRESSING, 0, {1: 80, 2: 20}, 1, True, 5.0, None, "")),
        (replace(NEW, consumed="abort@2"), stored(replace(NEW, consumed="abort@2"),
         Command("abort", 2)), 5.0, None,
         (Phase.PROGRESSING, 0, {1: 80, 2: 20}, 1, True, 5.0, None, "abort@2")),
        (NEW, stored(None, Command("abort", 2)), 1.0, None,
         (Phase.PROGRESSING, 0, {1: 80, 2: 20}, 1, True, 9.0, "RolloutStarted", "")),
    ],
)  # fmt: skip
def test_decide_gives_the_round_to_record_and_to_plan(
    state: RolloutState,
    tags: dict[str, str],
    now: float,
    measured: dict[str, Measurement] | None,
    expected: tuple[object, ...],
) -> None:
    record = read(tags)
    assert begin(SPEC, 2, 1, record.state, now) == (record.state or start(2, 1, DG, now))
    p = decide(SPEC, state, record, now, measured)
    assert isinstance(p, Running)
    assert p.stored == record and p.canary == 2 and p.alias == "champion"
    got = (
        p.state.phase, p.state.step, dict(p.weights), p.alias_version, p.active, p.requeue,
        p.event[0] if p.event else None, p.state.consumed,
    )  # fmt: skip
    assert got == expected
    assert p.reason  # said in the plan and by apply --wait


def test_a_rollout_needs_steps() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        advance([], [], start(2, 1, "d", 0), 0)


ROLLOUT = (
    GOOD.replace("versions: [current]", "versions: [1, current]").replace(
        "    champion: current\n", "    champion: current\n    challenger: current\n"
    )
    + """\
  rollout:
    canary:
      alias: challenger
    promoteAlias: champion
    steps:
      - weight: 10
        pause: 5m
      - weight: 50
        pause: 90s
      - weight: 100
    analysis:
      interval: 30s
      gates:
        - name: errors
          metric: errorRate
          max: 0.05
          minSamples: 30
          failureLimit: 2
        - name: slow
          metric: latencyP95
          source: prometheus
          query: histogram_quantile(0.95, rate(x_bucket{version="{{version}}"}[1m]))
          max: 800
"""
)


def test_a_rollout_loads_and_converts(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, ROLLOUT))
    (agent,) = desired.agents
    assert agent.manifest.spec.rollout is not None
    steps, gates = from_spec(agent.manifest.spec.rollout)
    assert steps == [Step(10, 300.0), Step(50, 90.0), Step(100, 0.0)]  # the promotion itself
    assert gates == [Gate("errors", 0.05, 30, 2), Gate("slow", 800.0, 20, 1)]


@pytest.mark.parametrize(
    ("edit", "line", "field", "fragment"),
    [
        (("alias: challenger\n    promote", "alias: canary\n    promote"), 20,
         "spec.rollout.canary.alias", "alias 'canary' is not declared"),
        (("promoteAlias: champion", "promoteAlias: stable"), 21,
         "spec.rollout.promoteAlias", "alias 'stable' is not declared"),
        (("weight: 50", "weight: 5"), 25, "spec.rollout.steps[1].weight",
         "step weights must increase: 5 after 10"),
        (("      - weight: 100\n", "      - weight: 90\n"), 27, "spec.rollout.steps[2].weight",
         "the last step must take all traffic"),
        (("pause: 90s", "pause: soon"), 26, "spec.rollout.steps[1].pause", "should match pattern"),
        (("          source: prometheus\n", ""), 38,
         "spec.rollout.analysis.gates[1].query", "only a prometheus gate takes a query"),
        (("metric: errorRate", "metric: vibes"), 32, "spec.rollout.analysis.gates[0].metric",
         "'errorRate'"),
        (("    champion: current\n", "    champion: 1\n"), 21, "spec.rollout.promoteAlias",
         "alias 'champion' is version 1 in spec.aliases but the canary is version current"),
        (("      - alias: champion\n        percent: 100\n",
          "      - alias: champion\n        percent: 90\n      - version: 1\n        percent: 10\n"),
         15, "spec.serving.traffic", "all of it to the canary (version current)"),
    ],
)  # fmt: skip
def test_bad_rollouts_name_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], line: int, field: str, fragment: str
) -> None:
    assert edit[0] in ROLLOUT
    [err] = errors_of(write_repo(tmp_path, ROLLOUT.replace(*edit)))
    assert (err.field, err.location and err.location.line) == (field, line), err
    assert fragment in err.message


def test_a_rollout_needs_serving(tmp_path: Path) -> None:
    text = ROLLOUT.replace(
        "  serving:\n    traffic:\n      - alias: champion\n        percent: 100\n", ""
    )
    [err] = errors_of(write_repo(tmp_path, text))
    assert err.field == "spec.rollout" and "it needs spec.serving" in err.message
