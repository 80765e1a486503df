"""The controller's loop with the in-memory registry and serving target and a fake clock:
per-agent isolation and backoff, drift reported and reverted (or only reported), the last good
desired state kept when the manifests break, a stop between actions, and the loop's triggers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from controller.engine.backoff import AgentBackoff
from controller.engine.loader import load
from controller.engine.loop import Controller, CycleReport, LoopConfig, Wakeups
from controller.engine.metrics import Metrics
from controller.engine.retry import RetryPolicy
from controller.ports import SystemClock
from tests.support.fake_registry import PERMANENT, FakeRegistry
from tests.support.fake_serving import FakeServing
from tests.support.fakes import Events, FakeClock
from tests.support.manifests import GOOD, write_repo

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)


def two_agents(tmp_path: Path) -> Path:
    root = write_repo(tmp_path, GOOD, "a.yaml")
    (root / "a.yaml").write_text(GOOD.replace("name: bot", "name: a"))
    (root / "b.yaml").write_text(GOOD.replace("name: bot", "name: b"))
    return root


def controller(
    root: Path, reg: FakeRegistry, config: LoopConfig | None = None, **kw: object
) -> tuple[Controller, FakeClock, Events, Metrics]:
    clock, events = FakeClock(1000.0), Events()
    metrics = Metrics(CollectorRegistry())
    ctl = Controller(
        lambda: load(root)[0],
        reg,
        config=config,
        metrics=metrics,
        events=events,
        policy=NO_WAIT,
        clock=clock,
        backoff=AgentBackoff(initial=5.0, maximum=60.0),
        **kw,  # type: ignore[arg-type]
    )
    return ctl, clock, events, metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_one_agent_failing_backs_off_that_agent_and_the_others_go_on(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, clock, events, metrics = controller(two_agents(tmp_path), reg)
    reg.fail("create_model", PERMANENT)  # the first agent's first write

    first = ctl.reconcile()
    assert list(first.failed) == ["a"] and "injected: 403" in first.failed["a"]
    assert list(first.applied) == ["b"] and set(reg.models) == {"b"}
    assert ("a", "ReconcileFailed") in events.reasons()
    assert value(metrics, "agentctl_errors_total", agent="a") == 1

    held = ctl.reconcile()
    assert held.held == {"a": "backing off after 1 failure(s)"}
    assert not held.applied

    clock.now += 5.0  # the first backoff (5 s) has run out
    again = ctl.reconcile()
    assert list(again.applied) == ["a"] and set(reg.models) == {"a", "b"}
    assert again.ok and ctl.backoff.failures == {}
    assert value(metrics, "agentctl_last_successful_reconcile_timestamp_seconds") > 0


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = AgentBackoff(initial=5.0, maximum=60.0)
    assert [backoff.failed("a", 0.0) for _ in range(6)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert not backoff.ready("a", 59.0) and backoff.ready("a", 60.0)
    assert backoff.next_due(10.0, default=99.0) == 60.0
    backoff.succeeded("a")
    assert backoff.ready("a", 0.0) and backoff.next_due(10.0, default=99.0) == 99.0


def test_drift_is_reported_and_reverted(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, _, events, metrics = controller(write_repo(tmp_path, GOOD), reg)
    assert ctl.reconcile().ok and reg.models["bot"].aliases == {"champion": 1}
    assert ctl.reconcile().drift == {}

    reg.delete_alias("bot", "champion")  # by hand
    healed = ctl.reconcile()
    assert healed.drift == {"bot": ["bot.alias.champion"]}
    assert reg.models["bot"].aliases == {"champion": 1}
    [(agent, _, message, warning)] = [e for e in events.seen if e[1] == "DriftDetected"]
    assert (agent, warning) == ("bot", True)
    assert "bot.alias.champion changed outside the manifests; reverting it" in message
    assert value(metrics, "agentctl_drift_detected_total", agent="bot", kind="alias") == 1


def test_without_self_heal_drift_is_reported_only(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, _, events, _ = controller(write_repo(tmp_path, GOOD), reg, LoopConfig(self_heal=False))
    ctl.reconcile()
    reg.delete_alias("bot", "champion")
    report = ctl.reconcile()
    assert report.held == {"bot": "drift reported (self-heal is off)"}
    assert reg.models["bot"].aliases == {}
    assert "self-heal is off: not reverted" in events.seen[-1][2]


def test_drift_left_alone_is_reported_once_not_on_every_resync(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, _, events, metrics = controller(
        write_repo(tmp_path, GOOD), reg, LoopConfig(self_heal=False)
    )
    ctl.reconcile()
    reg.delete_alias("bot", "champion")
    for _ in range(3):
        assert ctl.reconcile().drift == {"bot": ["bot.alias.champion"]}
    assert [e[1] for e in events.seen].count("DriftDetected") == 1
    assert value(metrics, "agentctl_drift_detected_total", agent="bot", kind="alias") == 1


def test_a_manifest_change_ends_the_agent_s_backoff(tmp_path: Path) -> None:
    reg = FakeRegistry()
    root = write_repo(tmp_path, GOOD)
    ctl, _, _, _ = controller(root, reg)
    reg.fail("create_model", PERMANENT)
    assert list(ctl.reconcile().failed) == ["bot"]
    assert ctl.reconcile().held == {"bot": "backing off after 1 failure(s)"}
    (root / "bot.yaml").write_text(GOOD.replace("spec:\n", "spec:\n  description: fixed\n"))
    assert list(ctl.reconcile().applied) == ["bot"]  # no waiting out the backoff


def test_an_unexpected_error_stays_with_its_agent(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, _, _, _ = controller(two_agents(tmp_path), reg)
    reg.fail("create_model", KeyError("a bug"))
    report = ctl.reconcile()
    assert list(report.failed) == ["a"] and list(report.applied) == ["b"]


def test_a_manifest_change_is_not_drift(tmp_path: Path) -> None:
    reg = FakeRegistry()
    root = write_repo(tmp_path, GOOD)
    ctl, _, _, _ = controller(root, reg, LoopConfig(self_heal=False))
    ctl.reconcile()
    (root / "bot.yaml").write_text(GOOD.replace("champion: current", "stable: current").replace(
        "alias: champion", "alias: stable"))  # fmt: skip
    report = ctl.reconcile()
    assert report.drift == {} and list(report.applied) == ["bot"]
    assert reg.models["bot"].aliases == {"stable": 1}


def test_broken_manifests_keep_the_last_good_state_and_prune_nothing(tmp_path: Path) -> None:
    reg = FakeRegistry()
    root = two_agents(tmp_path)
    ctl, _, events, metrics = controller(root, reg, LoopConfig(prune=True))
    assert ctl.reconcile().ok and set(reg.models) == {"a", "b"}

    (root / "b.yaml").write_text("apiVersion: agentctl.io/v1alpha1\nkind: Agent\nmetadata: [\n")
    writes = list(reg.writes)
    for _ in range(2):
        report = ctl.reconcile()
        assert not report.desired_valid
    assert reg.writes == writes and set(reg.models) == {"a", "b"}  # nothing pruned
    invalid = [e for e in events.seen if e[1] == "InvalidManifests"]
    assert len(invalid) == 1  # reported once, not on every reconcile
    assert (
        "b.yaml" in invalid[0][2] and "the last good desired state stays applied" in (invalid[0][2])
    )
    assert value(metrics, "agentctl_desired_state_valid") == 0
    assert value(metrics, "agentctl_manifest_errors_total") == 2

    (root / "b.yaml").unlink()  # fixed by removing the agent: now it is pruned
    assert ctl.reconcile().desired_valid
    assert set(reg.models) == {"a"}
    assert value(metrics, "agentctl_desired_state_valid") == 1


def test_no_valid_manifests_yet_is_an_error_and_applies_nothing(tmp_path: Path) -> None:
    reg = FakeRegistry()
    root = write_repo(tmp_path, GOOD.replace("percent: 100", "percent: 90"))
    ctl, _, _, metrics = controller(root, reg)
    report = ctl.reconcile()
    assert report.error == "no valid desired state yet" and reg.writes == []
    assert value(metrics, "agentctl_errors_total", agent="") == 1


def test_a_stop_lets_the_action_in_flight_finish_and_the_next_reconcile_goes_on(
    tmp_path: Path,
) -> None:
    reg = FakeRegistry()
    ctl, _, _, _ = controller(write_repo(tmp_path, GOOD), reg)
    asked = iter([False, False, True])  # the agent, its first change, then stop
    report = ctl.reconcile(stop=lambda: next(asked, True))
    assert report.stopped and not report.ok
    assert reg.writes == ["create_model"]
    assert ctl.reconcile().ok
    assert reg.models["bot"].aliases == {"champion": 1}


def test_serving_failures_stay_with_their_agent(tmp_path: Path) -> None:
    reg, srv = FakeRegistry(), FakeServing()
    ctl, _, _, _ = controller(two_agents(tmp_path), reg, serving=srv)
    srv.fail("start_version", PERMANENT)
    report = ctl.reconcile()
    assert list(report.failed) == ["a"] and list(report.applied) == ["b"]
    assert set(srv.observe().agents) == {"b"}


def test_the_loop_reconciles_on_start_on_wakeups_and_on_resync(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, _, _, _ = controller(write_repo(tmp_path, GOOD), reg, LoopConfig(resync=0.3))
    ctl.clock = SystemClock()
    wakeups, stop = Wakeups(), threading.Event()
    seen: list[CycleReport] = []
    thread = threading.Thread(
        target=ctl.run, args=(wakeups, stop), kwargs={"on_cycle": seen.append}
    )
    thread.start()
    try:
        _until(lambda: len(seen) >= 1)
        wakeups.notify("manifests")
        _until(lambda: any(r.trigger == "manifests" for r in seen))
        _until(lambda: any(r.trigger == "resync" for r in seen))
    finally:
        stop.set()
        wakeups.notify("stop")
        thread.join(5)
    assert not thread.is_alive()
    assert seen[0].trigger == "start"


def test_the_loop_waits_for_leadership_and_returns_when_it_is_lost(tmp_path: Path) -> None:
    reg = FakeRegistry()
    ctl, _, _, _ = controller(write_repo(tmp_path, GOOD), reg, LoopConfig(resync=0.1))
    ctl.clock = SystemClock()
    leader = threading.Event()
    seen: list[CycleReport] = []
    thread = threading.Thread(
        target=ctl.run,
        args=(Wakeups(), threading.Event()),
        kwargs={"is_leader": leader.is_set, "on_cycle": seen.append},
    )
    thread.start()
    time.sleep(0.3)
    assert seen == [] and reg.writes == []  # a standby applies nothing
    leader.set()
    _until(lambda: len(seen) >= 1)
    leader.clear()
    thread.join(5)
    assert not thread.is_alive()  # returned: leadership lost
    assert "bot" in reg.models


def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Rolling:
    """A controller over in-memory registry and serving, with a wall clock the test moves and
    a metric source whose answers it sets (for rollouts)."""

    def __init__(self, tmp_path: Path, config: LoopConfig | None = None) -> None:
        from controller.core.rollout.gates import Measurement
        from tests.support.sources import Source

        self.reg, self.srv = FakeRegistry(), FakeServing()
        self.root = write_repo(tmp_path, GOOD)
        self.wall = [1_000_000.0]
        self.source = Source(Measurement(0.0, 50))
        self.ctl, _, self.events, self.metrics = controller(
            self.root, self.reg, config, serving=self.srv, wall=lambda: self.wall[0],
            providers={"router": self.source},
        )  # fmt: skip


def test_a_rollout_is_progress_not_drift_and_its_end_is_an_event_and_a_metric(
    tmp_path: Path,
) -> None:
    from controller.core.rollout.gates import Measurement
    from tests.support.manifests import ROLLOUT

    r = Rolling(tmp_path)
    reg, srv, root, wall, source = r.reg, r.srv, r.root, r.wall, r.source
    ctl, events, metrics = r.ctl, r.events, r.metrics
    assert ctl.reconcile().ok and srv.weights["bot"] == {1: 100}
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    assert ctl.reconcile("manifests").ok  # v2 registered and warm
    started = ctl.reconcile()
    assert srv.weights["bot"] == {1: 80, 2: 20}
    assert started.requeue == 10.0  # the gate's interval, before the 60 s pause ends
    assert ("bot", "RolloutStarted") in events.reasons()
    assert value(metrics, "agentctl_rollout_step", agent="bot") == 1
    # Nothing in the manifests changed since, yet traffic moves: that is not drift.
    wall[0] += 65
    moved = ctl.reconcile()
    assert moved.drift == {} and srv.weights["bot"] == {1: 50, 2: 50}
    assert value(metrics, "agentctl_rollout_step", agent="bot") == 2
    assert value(metrics, "agentctl_drift_detected_total", agent="bot", kind="traffic") == 0
    source.m = Measurement(0.9, 50)
    wall[0] += 10
    ctl.reconcile()
    wall[0] += 10
    failed = ctl.reconcile()
    assert failed.ok and srv.weights["bot"] == {1: 100}
    [failure] = [e for e in events.seen if e[1] == "RolloutFailed"]
    assert failure[3] is True  # a Warning
    assert value(metrics, "agentctl_rollouts_total", agent="bot", result="Failed") == 1
    assert failed.requeue is None
    # Someone moves the alias by hand now: that is drift again (the rollout is over).
    reg.models["bot"].aliases["champion"] = 2
    wall[0] += 10
    healed = ctl.reconcile()
    assert healed.drift == {"bot": ["bot.alias.champion"]}
    assert reg.models["bot"].aliases["champion"] == 1


def test_without_self_heal_a_rollout_still_rolls_back_promotes_and_scales_down(
    tmp_path: Path,
) -> None:
    from controller.core.rollout.gates import Measurement
    from tests.support.manifests import ROLLOUT

    r = Rolling(tmp_path, LoopConfig(self_heal=False))
    reg, srv, root, wall, source, ctl = r.reg, r.srv, r.root, r.wall, r.source, r.ctl

    def cycle(dt: float) -> CycleReport:
        wall[0] += dt
        report = ctl.reconcile()
        assert report.drift == {} and not report.held, (report.drift, report.held)
        return report

    cycle(0)
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT)
    cycle(0)
    cycle(1)
    cycle(65)
    cycle(61)  # promoted: v1 kept at 0 % for the delay
    assert srv.weights["bot"] == {1: 0, 2: 100} and reg.models["bot"].aliases["champion"] == 2
    cycle(31)  # the delay is over: v1 stops, though nothing in the manifests changed
    assert srv.weights["bot"] == {2: 100} and set(srv.servers["bot"]) == {2}
    # v3 fails: rolled back to v2 with self-heal off too.
    (root / "config.yaml").write_text("greeting: howdy\n")
    cycle(0)
    cycle(1)
    source.m = Measurement(0.9, 50)
    cycle(10)
    cycle(10)
    assert srv.weights["bot"] == {2: 100} and reg.models["bot"].aliases["champion"] == 2


def test_the_next_look_is_the_resync_with_jitter_or_sooner_when_something_is_pending(
    tmp_path: Path,
) -> None:
    reg = FakeRegistry()
    config = LoopConfig(resync=60.0, jitter=0.1)
    low, _, _, _ = controller(write_repo(tmp_path, GOOD), reg, config, random=lambda: 0.0)
    high, _, _, _ = controller(write_repo(tmp_path, GOOD), reg, config, random=lambda: 0.999)
    idle = CycleReport("resync")
    assert low.next_look(idle) == 60.0 and 65.9 < high.next_look(idle) < 66.0
    pending = CycleReport("resync", requeue=5.0)
    assert low.next_look(pending) == high.next_look(pending) == 5.0


EVALUATED = """\
  evaluation:
    dataset: eval.jsonl
    scorers:
      - builtin: PIIDetection
    thresholds:
      - scorer: pii_detection
        min: 1.0
"""


def test_a_version_that_fails_its_evaluation_is_one_event_and_is_not_evaluated_again(
    tmp_path: Path,
) -> None:
    from tests.support.fake_evaluator import VersionEvaluator

    root = write_repo(tmp_path, GOOD + EVALUATED)
    (root / "eval.jsonl").write_text('{"inputs": {"input": [{"role": "user", "content": "hi"}]}}\n')
    reg = FakeRegistry()
    evaluator = VersionEvaluator()
    evaluator.figures[("bot", 1)] = {"pii_detection": 0.0}
    ctl, clock, events, _ = controller(root, reg, evaluator=evaluator)
    first = ctl.reconcile("start")
    assert first.error == "" and evaluator.evaluated == [1]
    assert reg.models["bot"].aliases == {}  # withheld: no alias to a failed version
    for _ in range(3):
        clock.sleep(60)
        ctl.reconcile()
    assert evaluator.evaluated == [1]  # the verdict is recorded: not evaluated at each resync
    failed = [m for a, r, m, w in events.seen if r == "EvaluationFailed"]
    assert len(failed) == 1 and "version 1 failed its evaluation: pii_detection 0" in failed[0]
    # A controller that starts with the version already failed says so, once.
    again, _, events2, _ = controller(root, reg, evaluator=evaluator)
    again.reconcile("start")
    again.reconcile()
    assert [r for _, r, _, _ in events2.seen].count("EvaluationFailed") == 1
    assert evaluator.evaluated == [1]
