"""Rollouts through reconcile, with in-memory registry, serving and metric sources and a wall
clock the test moves: the canary walks its steps and is promoted, the old version is scaled
down after the delay; a failing gate rolls back and stays rolled back; state lives in registry
tags (a fresh reconcile resumes at the same step); commands (promote, abort, rollback) act
once, by the tags the CLI writes; with the registry target alone the promote alias stays put."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.plan.changes import Kind
from controller.core.rollout.codec import Phase, RolloutState
from controller.core.rollout.commands import COMMAND_TAG, Command
from controller.core.rollout.gates import Measurement
from controller.engine.loader import load
from controller.engine.reconcile import Result, reconcile
from controller.engine.retry import RetryPolicy
from controller.ports import GateQuery
from tests.unit.fake_registry import FakeRegistry
from tests.unit.fake_serving import FakeServing
from tests.unit.test_loader import GOOD, write_repo

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)

ROLLOUT = """\
  rollout:
    canary:
      alias: champion
    promoteAlias: champion
    steps:
      - weight: 20
        pause: 60s
      - weight: 50
        pause: 60s
      - weight: 100
    scaleDownDelay: 30s
    analysis:
      interval: 10s
      gates:
        - name: errors
          metric: errorRate
          source: router
          max: 0.1
          minSamples: 10
          failureLimit: 2
"""


class Source:
    """A metric source whose next answers the test sets."""

    def __init__(self, m: Measurement) -> None:
        self.m = m
        self.asked: list[GateQuery] = []

    def measure(self, q: GateQuery) -> Measurement:
        self.asked.append(q)
        return self.m


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


def test_the_registry_target_leaves_the_promote_alias_where_it_is(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    desired, _ = load(root)
    reconcile(desired, reg, apply=True, policy=NO_WAIT)
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    desired, _ = load(root)
    result = reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert reg.models["bot"].aliases["champion"] == 1 and 2 in reg.models["bot"].versions
    [warning] = [d for d in result.plan.diagnostics if d.field == "spec.rollout"]
    assert "stays on version 1" in warning.message


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
