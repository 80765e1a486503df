"""Rollouts through reconcile, with in-memory registry, serving and metric sources and a wall
clock the test moves: the canary walks its steps and is promoted, the old version is scaled
down after the delay; a failing gate rolls back and stays rolled back; state lives in registry
tags (a fresh reconcile resumes at the same step); commands (promote, abort, rollback) act
once, by the tags the CLI writes; with the registry target alone the promote alias stays put."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.errors import InvalidInput
from controller.core.manifest.desired import Desired, DesiredAgent
from controller.core.manifest.schema import CURRENT
from controller.core.plan.changes import Kind
from controller.core.rollout.codec import STATE_TAG, Phase, RolloutState, read
from controller.core.rollout.commands import COMMAND_TAG, Command
from controller.core.rollout.gates import Measurement
from controller.core.rollout.progress import Clear, Hold, Progress, Running
from controller.core.state.observed import RegistrySnapshot
from controller.engine.loader import load
from controller.engine.progressive import evaluate
from controller.engine.retry import RetryPolicy
from controller.ports import GateQuery
from tests.support.builders import D1, D2, agent, desired, model, snapshot
from tests.support.engine import Result, reconcile
from tests.support.fake_evaluator import VersionEvaluator
from tests.support.fake_registry import FakeRegistry
from tests.support.fake_serving import FakeServing
from tests.support.manifests import GOOD, ROLLOUT, write_repo
from tests.support.sources import Source

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.reg = FakeRegistry()
        self.serving = FakeServing()
        self.source = Source(Measurement(0.0, 50))
        self.now = 1_000_000.0

    def apply(self, dt: float = 0.0) -> Result:
        self.now += dt
        desired, _ = load(self.root)
        return reconcile(
            desired, self.reg, apply=True, policy=NO_WAIT, serving=self.serving,
            providers={"router": self.source}, wall=lambda: self.now,
        )  # fmt: skip

    @property
    def weights(self) -> dict[int, int]:
        return self.serving.weights.get("bot", {})

    @property
    def champion(self) -> int | None:
        return self.reg.models["bot"].aliases.get("champion")

    @property
    def state(self) -> RolloutState | None:
        return RolloutState.from_storage(self.reg.models["bot"].tags)

    def tag(self, key: str, value: str) -> None:
        self.reg.models["bot"].tags[key] = value


@pytest.fixture
def world(tmp_path: Path) -> World:
    """v1 is live (champion, all traffic); then the source changes and a rollout is declared."""
    root = write_repo(tmp_path, GOOD)
    w = World(root)
    w.apply()
    assert (w.champion, w.weights) == (1, {1: 100})
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    first = w.apply()
    # v2 is registered and started beside v1, without traffic; the alias stays on v1.
    assert w.reg.models["bot"].versions.keys() == {1, 2}
    assert (w.champion, w.weights) == (1, {1: 100, 2: 0})
    assert first.progress["bot"].warm_canary and w.state is None
    return w


def test_a_healthy_canary_walks_every_step_is_promoted_and_the_old_version_scaled_down(
    world: World,
) -> None:
    w = world
    started = w.apply(1)
    assert (w.champion, w.weights) == (1, {1: 80, 2: 20})
    assert w.state is not None and (w.state.step, w.state.phase) == (0, Phase.PROGRESSING)
    assert started.plan.changes[0].kind is Kind.ROLLOUT  # recorded before traffic moves
    assert started.progress["bot"].event is not None
    assert started.progress["bot"].event[0] == "RolloutStarted"
    # Within the pause nothing moves; the gate is measured each interval on v2's traffic.
    assert not w.apply(5).plan.has_changes
    w.apply(10)
    assert w.weights == {1: 80, 2: 20} and w.source.asked[-1].version == 2
    assert w.source.asked[-1].since == w.state.step_started
    w.apply(50)  # 65 s at 20 %: the pause is over and the gate passed
    assert (w.state.step, w.weights, w.champion) == (1, {1: 50, 2: 50}, 1)
    w.apply(61)
    assert w.state.phase is Phase.PROMOTED and w.champion == 2
    assert w.weights == {2: 100, 1: 0}  # v1 keeps serving, without traffic, for 30 s
    assert 1 in w.serving.servers["bot"]
    w.apply(31)
    assert w.weights == {2: 100} and set(w.serving.servers["bot"]) == {2}
    again = w.apply(1000)
    assert not again.plan.has_changes and not again.progress["bot"].active


def test_a_failing_gate_rolls_back_and_stays_rolled_back(world: World) -> None:
    w = world
    w.apply(1)
    w.source.m = Measurement(0.5, 40)
    w.apply(10)
    assert w.state is not None and w.state.failures == {"errors": 1}
    assert w.weights == {1: 80, 2: 20}
    failed = w.apply(10)
    assert w.state.phase is Phase.FAILED and "errors 0.5 > 0.1" in w.state.message
    assert (w.champion, w.weights) == (1, {1: 100})
    assert set(w.serving.servers["bot"]) == {1}  # the canary is scaled down
    event = failed.progress["bot"].event
    assert event is not None and event[0] == "RolloutFailed" and event[2] is True
    w.source.m = Measurement(0.0, 100)
    later = w.apply(600)
    assert not later.plan.has_changes and w.state.phase is Phase.FAILED


def test_too_few_samples_hold_the_step(world: World) -> None:
    w = world
    w.apply(1)
    w.source.m = Measurement(0.0, 3)
    w.apply(70)
    assert w.state is not None and w.state.phase is Phase.PAUSED and w.state.step == 0
    assert w.weights == {1: 80, 2: 20}


def test_state_lives_in_the_registry_a_new_process_resumes_at_the_same_step(
    world: World,
) -> None:
    w = world
    w.apply(1)
    w.apply(65)
    assert w.state is not None and w.state.step == 1
    # A new agentctl: nothing carried over but the registry and what runs.
    fresh = World(w.root)
    fresh.reg, fresh.serving, fresh.now = w.reg, w.serving, w.now + 5
    resumed = fresh.apply()
    assert not [c for c in resumed.plan.changes if c.kind is not Kind.ROLLOUT]
    assert fresh.state is not None and fresh.state.step == 1 and w.weights == {1: 50, 2: 50}


def test_promote_skips_the_pause_once(world: World) -> None:
    w = world
    w.apply(1)
    w.tag(COMMAND_TAG, Command("promote", 2, step=0).to_tag())
    w.apply(1)
    assert w.state is not None and w.state.step == 1 and w.weights == {1: 50, 2: 50}
    # Consumed: recorded in the state; the tag stays (deleting it could delete a newer one).
    assert w.state.consumed == "promote@2:0" and COMMAND_TAG in w.reg.models["bot"].tags
    w.apply(1)
    assert w.state.step == 1  # acted on once
    w.tag(COMMAND_TAG, Command("promote", 2, step=1).to_tag())
    w.apply(1)
    assert w.state.phase is Phase.PROMOTED and w.champion == 2


def test_abort_goes_back_to_stable_and_a_second_apply_changes_nothing(world: World) -> None:
    w = world
    w.apply(1)
    w.tag(COMMAND_TAG, Command("abort", 2).to_tag())
    w.apply(1)
    assert w.state is not None and w.state.phase is Phase.ABORTED
    assert (w.champion, w.weights) == (1, {1: 100})
    assert not w.apply(1).plan.has_changes


def test_rollback_after_promotion_returns_to_the_previous_version(world: World) -> None:
    w = world
    w.apply(1)
    w.apply(65)
    w.apply(61)
    w.apply(31)
    assert w.champion == 2 and w.weights == {2: 100}
    w.tag(COMMAND_TAG, Command("rollback", 2, version=1).to_tag())
    w.apply(1)
    assert w.state is not None and w.state.phase is Phase.ABORTED
    assert (w.champion, w.weights) == (1, {1: 100})
    assert not w.apply(1).plan.has_changes


def test_reverting_the_manifest_converges_to_the_old_version(world: World) -> None:
    w = world
    w.apply(1)
    w.apply(65)
    (w.root / "config.yaml").write_text("greeting: hi\n")  # the source of v1 again
    w.apply(1)
    assert (w.champion, w.weights) == (1, {1: 100})
    assert not w.apply(1).plan.has_changes


def test_a_dry_run_measures_nothing(world: World) -> None:
    w = world
    desired, _ = load(w.root)
    result = reconcile(
        desired, w.reg, apply=False, policy=NO_WAIT, serving=w.serving,
        providers={"router": w.source}, wall=lambda: w.now,
    )  # fmt: skip
    assert not w.source.asked and result.progress["bot"].state is not None


def _a_new_version_with_a_rollout(tmp_path: Path) -> tuple[Desired, FakeRegistry]:
    """Version 1 applied on the registry target; then a changed source and a spec.rollout."""
    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    desired, _ = load(root)
    reconcile(desired, reg, apply=True, policy=NO_WAIT)
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    desired, _ = load(root)
    return desired, reg


def test_the_registry_target_leaves_the_promote_alias_where_it_is(tmp_path: Path) -> None:
    desired, reg = _a_new_version_with_a_rollout(tmp_path)
    result = reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert reg.models["bot"].aliases["champion"] == 1 and 2 in reg.models["bot"].versions
    # Not a warning that leaves the plan "reached": a rollout only a serving target starts.
    [waiting] = result.plan.rolling
    assert (waiting.agent, waiting.phase, waiting.stable) == ("bot", "Waiting", 1)
    again = reconcile(desired, reg, apply=False, policy=NO_WAIT).plan
    assert not again.changes and not again.reached
    [waiting] = again.rolling
    assert (waiting.canary, waiting.stable) == (2, 1)
    assert "stays on version 1" in waiting.message and "--target local" in waiting.message


def test_a_revert_clears_the_record_so_rolling_forward_again_starts_afresh(world: World) -> None:
    w = world
    w.apply(1)
    w.source.m = Measurement(0.5, 40)
    w.apply(10)
    w.apply(10)
    assert w.state is not None and w.state.phase is Phase.FAILED
    (w.root / "config.yaml").write_text("greeting: hi\n")  # back to v1's source
    reverted = w.apply(1)
    assert w.state is None and not any(
        k.startswith("agentctl.io/rollout.") for k in w.reg.models["bot"].tags
    )
    assert [c.kind for c in reverted.plan.changes if c.kind is Kind.ROLLOUT] == [Kind.ROLLOUT]
    assert (w.champion, w.weights) == (1, {1: 100})
    (w.root / "config.yaml").write_text("greeting: hello\n")  # forward again, v2 fixed upstream
    w.source.m = Measurement(0.0, 40)
    w.apply(1)
    assert w.state is not None and w.state.phase is Phase.PROGRESSING and w.state.step == 0
    assert w.weights == {1: 80, 2: 20}


def test_a_stale_command_does_not_touch_a_new_rollout(world: World) -> None:
    w = world
    w.tag(COMMAND_TAG, Command("abort", 2).to_tag())  # given before this rollout began
    w.apply(1)
    assert w.state is not None and w.state.phase is Phase.PROGRESSING
    assert w.weights == {1: 80, 2: 20}


def test_a_source_that_breaks_is_inconclusive_not_a_crash(world: World) -> None:
    class Broken:
        def measure(self, q: GateQuery) -> Measurement:
            raise ValueError("not JSON")

    w = world
    w.apply(1)
    desired, _ = load(w.root)
    w.now += 70
    result = reconcile(
        desired, w.reg, apply=True, policy=NO_WAIT, serving=w.serving,
        providers={"router": Broken()}, wall=lambda: w.now,
    )  # fmt: skip
    assert result.progress["bot"].state is not None
    assert result.progress["bot"].state.phase is Phase.PAUSED  # inconclusive: held, not promoted
    assert w.weights == {1: 80, 2: 20}


# -- each round's Progress from evaluate, table-driven over observed registries (no I/O) -------

RSPEC = {
    "canary": {"alias": "champion"},
    "promoteAlias": "champion",
    "steps": [{"weight": 20, "pause": "60s"}, {"weight": 50, "pause": "60s"}, {"weight": 100}],
}


def rolling(digest: str = D2, canary: object = None) -> DesiredAgent:
    spec = dict(RSPEC, canary=canary) if canary is not None else RSPEC
    return agent(
        digest=digest,
        aliases={"champion": CURRENT},
        serving={"traffic": [{"alias": "champion", "percent": 100}]},
        rollout=spec,
    )


RECORD = {
    STATE_TAG: RolloutState(9, 8, "sha256:old", Phase.FAILED).to_storage()[STATE_TAG],
    COMMAND_TAG: "abort@9",
}


def observed(versions: dict[int, str | None], champion: int | None = 1,
             tags: dict[str, str] | None = None) -> RegistrySnapshot:  # fmt: skip
    aliases = {"champion": champion} if champion is not None else {}
    return snapshot(model(aliases=aliases, versions=versions, tags=tags, managed_tags=""))


@pytest.mark.parametrize(
    ("agent_", "registry", "expected"),
    [
        # The canary (current) is not registered yet: hold on the stable version.
        (rolling(), observed({1: D1}), Hold("champion", 1, CURRENT, read({}))),
        (rolling(), observed({1: D1}, tags=RECORD), Hold("champion", 1, CURRENT, read(RECORD))),
        # A first deployment (no stable version), or no registered model: no rollout.
        (rolling(), observed({1: D1}, champion=None), None),
        (rolling(), snapshot(), None),
        (agent(digest=D2, aliases={"champion": CURRENT}), observed({1: D1}), None),
        # The canary is the stable version: a recorded rollout is cleared, else nothing.
        (rolling(D1), observed({1: D1}, tags=RECORD),
         Clear(1, read(RECORD), "v1 is the stable version: no rollout; its record is cleared")),
        (rolling(D1), observed({1: D1}), None),
        # No stable version (the promote alias is unset): a recorded rollout is cleared too.
        (rolling(D2), observed({1: D1, 2: D2}, champion=None, tags=RECORD),
         Clear(2, read(RECORD), "v2 is the stable version: no rollout; its record is cleared")),
        # A pinned canary that does not exist: the plan reports it; no rollout.
        (rolling(canary={"version": 7}), observed({1: D1, 2: D2}), None),
        # A registered canary: the rollout runs, from the record it was decided from.
        (rolling(), observed({1: D1, 2: D2}), "running"),
        (rolling(), observed({1: D1, 2: D2}, tags=RECORD), "running"),
        (rolling(canary={"version": 2}), observed({1: D1, 2: D2}), "running"),
    ],
)  # fmt: skip
def test_each_round_is_held_cleared_or_running(
    agent_: DesiredAgent, registry: RegistrySnapshot, expected: Progress | str | None
) -> None:
    got = evaluate(desired(agent_), registry, now=1000.0).get("bot")
    if expected != "running":
        assert got == expected
        return
    assert isinstance(got, Running)
    assert got.stored == read(registry.models["bot"].tags) and got.canary == 2
    assert (got.state.stable, got.state.step, got.state.step_started) == (1, 0, 1000.0)
    assert (dict(got.weights), got.alias_version, got.active) == ({1: 80, 2: 20}, 1, True)
    assert got.event is not None and got.event[0] == "RolloutStarted"


def test_what_every_round_answers() -> None:
    """Those who only wait or report (the loop, apply --wait) read the same few attributes of
    every case; the mark (drift) differs between rounds that ask different things."""
    empty = read({})
    hold = Hold("champion", 1, CURRENT, empty)
    clear = Clear(2, empty, "cleared")
    state = RolloutState(2, 1, "d")
    running = Running("champion", 1, {1: 80, 2: 20}, state, empty, "step 1/3", True, 9.0)
    table = [
        (hold, True, 5.0, None, "waiting for the canary to be registered; v1 keeps all traffic"),
        (clear, False, None, None, "cleared"),
        (running, True, 9.0, None, "step 1/3"),
    ]
    for p, active, requeue, event, reason in table:
        assert (p.active, p.requeue, p.event, p.reason) == (active, requeue, event, reason)
    assert hold.warm_canary and (dict(hold.weights), hold.alias_version) == ({1: 100}, 1)
    assert clear.mark == "clear"
    marks = {hold.mark, clear.mark, running.mark}
    marks.add(Running("champion", 1, {1: 50, 2: 50}, state, empty, "", True).mark)
    marks.add(Running("champion", 1, {1: 80, 2: 20}, replace(state, step=1), empty, "", True).mark)
    assert len(marks) == 5
    # the reason and when to look again are not where the rollout stands
    assert running.mark == replace(running, reason="other", requeue=1.0).mark


def registry_plan(w: World, dt: float = 0.0) -> Result:
    """``plan --target registry``: no serving target, the same registry."""
    desired, _ = load(w.root)
    return reconcile(desired, w.reg, apply=False, policy=NO_WAIT, wall=lambda: w.now + dt)


def test_the_registry_target_plan_shows_a_failed_rollout_from_its_record(world: World) -> None:
    w = world
    w.apply(1)
    w.source.m = Measurement(0.5, 40)
    w.apply(10)
    w.apply(10)
    assert w.state is not None and w.state.phase is Phase.FAILED
    result = registry_plan(w)
    assert not result.plan.reached and result.progress == {}
    (held,) = result.plan.held
    assert (held.agent, held.phase, held.canary, held.stable) == ("bot", "Failed", 2, 1)
    assert "errors 0.5 > 0.1" in held.message


def test_the_registry_target_plan_shows_a_rollout_in_progress(world: World) -> None:
    w = world
    w.apply(1)  # step 1/3 at 20 %, a 60 s pause
    result = registry_plan(w, 20)
    assert not result.plan.reached and result.plan.held == ()
    (going,) = result.plan.rolling
    assert (going.phase, going.step, going.steps, going.percent) == ("Progressing", 1, 3, 20)
    assert going.wait is not None and 39 <= going.wait <= 41
    # The rollout's line says why the promote alias stays: no warning beside it.
    assert [d for d in result.plan.diagnostics if d.field == "spec.rollout"] == []


def test_the_registry_target_plan_shows_a_pause_until_promoted(world: World) -> None:
    w = world
    (w.root / "bot.yaml").write_text(GOOD + ROLLOUT.replace("        pause: 60s\n", "", 1))
    w.apply(1)
    assert w.state is not None and w.state.phase is Phase.PAUSED
    (paused,) = registry_plan(w, 3600).plan.held
    assert paused.phase == "Paused" and paused.percent == 20
    assert "run `agentctl promote bot` to continue" in paused.message


def test_the_registry_target_holds_no_rollout_that_was_never_recorded(tmp_path: Path) -> None:
    desired, reg = _a_new_version_with_a_rollout(tmp_path)
    reconcile(desired, reg, apply=True, policy=NO_WAIT)  # v2 registered; no serving, no rollout
    result = reconcile(desired, reg, apply=False, policy=NO_WAIT)
    # Nothing failed or paused (no attention needed); the rollout waits for a serving target.
    assert result.plan.held == ()
    assert [r.phase for r in result.plan.rolling] == ["Waiting"]


SCORERS_GATE = """\
  evaluation:
    dataset: eval.jsonl
    scorers:
      - builtin: PIIDetection
        args: {pii_types: [email]}
      - code: checks/scorers.py:polite
  rollout:
    canary:
      alias: champion
    promoteAlias: champion
    steps:
      - weight: 10
        pause: 60s
      - weight: 100
    analysis:
      interval: 10s
      gates:
        - name: no-pii
          metric: passRate
          source: scorers
          scorer: pii_detection
          min: 0.95
          minSamples: 10
        - name: polite
          metric: passRate
          source: scorers
          scorer: polite
          min: 0.5
          sample: 30
          minSamples: 10
"""


def test_a_scorers_gate_is_asked_with_its_scorer_and_the_stable_version_and_rolls_back(
    world: World,
) -> None:
    """The scorers source is asked with the scorer the gate names (a code scorer's file made
    relative to the root), the sample, the gate and the step, and the stable version's logged
    model; a pass rate under min rolls the canary back, the stable's figure in the reason."""
    w = world
    (w.root / "eval.jsonl").write_text('{"inputs": {"question": "hi"}}\n')
    (w.root / "checks").mkdir()
    (w.root / "checks" / "scorers.py").write_text("def polite(outputs):\n    return True\n")
    (w.root / "bot.yaml").write_text(GOOD + SCORERS_GATE)
    for n, v in w.reg.models["bot"].versions.items():
        w.reg.models["bot"].versions[n] = replace(v, source=f"models:/m-{n}")
    desired, _ = load(w.root)
    scorers = Source(Measurement(1.0, 30, 1.0))

    def step(dt: float) -> Result:
        w.now += dt
        return reconcile(
            desired, w.reg, apply=True, policy=NO_WAIT, serving=w.serving,
            providers={"scorers": scorers}, wall=lambda: w.now, evaluator=evaluator,
        )  # fmt: skip

    evaluator = VersionEvaluator()  # every figure 1.0: both versions pass before traffic
    held = step(1)
    assert isinstance(held.progress["bot"], Hold) and held.progress["bot"].gate == "evaluating"
    assert w.weights == {1: 100, 2: 0} and evaluator.evaluated == [2, 1]  # v1: the champion
    step(1)
    assert w.weights == {1: 90, 2: 10}
    step(10)
    pii, polite = scorers.asked[-2:]
    assert (pii.version, pii.model_id, pii.metric) == (2, "m-2", "passRate")
    assert pii.scoring is not None and polite.scoring is not None
    assert pii.scoring.scorer.builtin == "PIIDetection"
    assert dict(pii.scoring.scorer.args) == {"pii_types": ["email"]}
    assert (pii.scoring.sample, pii.scoring.gate, pii.scoring.step) == (50, "no-pii", 0)
    assert (pii.scoring.stable, pii.scoring.stable_model_id) == (1, "m-1")
    assert pii.scoring.root == str(w.root)
    assert (polite.scoring.scorer.code, polite.scoring.scorer.function) == (
        "checks/scorers.py",
        "polite",
    )
    assert polite.scoring.sample == 30
    scorers.m = Measurement(0.6, 30, 1.0)
    step(10)
    assert w.state is not None and w.state.phase is Phase.FAILED
    assert "no-pii 0.6 < 0.95 (stable: 1)" in w.state.message
    assert (w.champion, w.weights) == (1, {1: 100})


HEADER_ROLLOUT = ROLLOUT.replace(
    "    steps:\n      - weight: 20\n",
    "    headerRoute:\n      header: X-Agent-Version\n      value: canary\n"
    "    steps:\n      - weight: 0\n        pause: 60s\n      - weight: 20\n",
)


def test_a_header_route_opens_to_the_canary_before_any_weighted_traffic(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    w = World(root)
    w.apply()
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + HEADER_ROLLOUT)
    w.apply()
    w.apply(1)  # the rollout starts at its first step: 0 %, testers only
    assert w.state is not None and w.state.step == 0
    assert w.weights == {1: 100, 2: 0}
    assert w.serving.routing["bot"] == ((("x-agent-version", "canary", 2),), None)
    w.apply(61)
    assert w.weights == {1: 80, 2: 20} and "bot" in w.serving.routing
    w.apply(61)
    w.apply(61)
    w.apply(61)
    assert w.state.phase is Phase.PROMOTED and w.champion == 2
    assert "bot" not in w.serving.routing  # the rollout is over: its header route is closed


def test_a_first_step_at_zero_needs_a_header_route(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    zero = ROLLOUT.replace("      - weight: 20\n", "      - weight: 0\n")
    (root / "bot.yaml").write_text(GOOD + zero)
    with pytest.raises(InvalidInput) as info:
        load(root)
    (err,) = info.value.diagnostics.errors
    assert "headerRoute" in err.message and "bot.yaml" in str(err), str(err)
