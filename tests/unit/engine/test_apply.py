"""The executor and one reconcile, against an in-memory registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.core.errors import ApplyFailed, PlanRejected, TemporaryBackendError
from controller.core.plan.changeset import Verb
from controller.core.plan.planner import plan
from controller.engine.apply import apply
from controller.engine.loader import load
from controller.engine.retry import RetryPolicy
from controller.ports import VersionSource
from tests.support.engine import reconcile
from tests.support.fake_registry import PERMANENT, TEMPORARY, FakeRegistry
from tests.support.fake_serving import FakeServing
from tests.support.manifests import GOOD, write_repo

NO_WAIT = RetryPolicy(attempts=4, initial=0.0, maximum=0.0, sleep=lambda s: None)


def test_apply_then_replan_is_empty_and_a_second_apply_writes_nothing(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    first = reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert first.changeset is not None and first.changeset.count(Verb.CREATED) == 3
    assert reg.models["bot"].aliases == {"champion": 1}
    writes = len(reg.writes)
    second = reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert second.plan.changes == () and second.changeset is None
    assert len(reg.writes) == writes


def test_temporary_errors_are_retried(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    reg.fail("observe", TEMPORARY)
    reg.fail("log_version", TEMPORARY, TEMPORARY)
    reg.fail("set_alias", TEMPORARY)
    result = reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert result.changeset is not None
    assert reg.models["bot"].aliases == {"champion": 1}
    assert len(reg.models["bot"].versions) == 1


def test_retries_give_up_with_the_last_error(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    reg.fail("observe", *[TEMPORARY] * 4)
    with pytest.raises(TemporaryBackendError):
        reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert reg.writes == []


def test_a_run_that_stops_part_way_is_finished_by_the_next(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    reg.fail("set_alias", PERMANENT)
    with pytest.raises(ApplyFailed) as info:
        reconcile(desired, reg, apply=True, policy=NO_WAIT)
    done = [e.address for e in info.value.changeset.entries]
    assert done == ["bot.registered_model", "bot.model_version.current"]
    assert reg.models["bot"].aliases == {}
    second = reconcile(desired, reg, apply=True, policy=NO_WAIT)
    assert [c.address for c in second.plan.changes] == ["bot.alias.champion"]
    assert second.plan.changes[0].after.to_dict() == {
        "version": 1
    }  # found by digest: no second log
    assert reg.writes.count("log_version") == 1
    assert reconcile(desired, reg, apply=False).plan.changes == ()


def test_a_version_registered_since_the_plan_is_not_logged_twice(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    the_plan = plan(desired, reg.observe())
    # Someone (a concurrent apply) registers the same source between plan and apply.
    from controller.engine.apply import apply

    apply(plan(desired, reg.observe()), reg, root=desired.root, policy=NO_WAIT)
    changeset = apply(the_plan, FakeRegistryView(reg), root=desired.root, policy=NO_WAIT)
    assert reg.writes.count("log_version") == 1
    assert any(
        e.verb is Verb.UNCHANGED and "already registered" in e.detail for e in changeset.entries
    )


class FakeRegistryView(FakeRegistry):
    """The same registry, whose create_model tolerates an existing model (as MLflow's adapter does)."""

    def __init__(self, inner: FakeRegistry) -> None:
        self.__dict__ = inner.__dict__

    def create_model(self, name: str, description: str | None, tags: object) -> None:  # type: ignore[override]
        self._op("create_model")


def test_apply_refuses_sources_changed_since_the_plan(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    the_plan = plan(desired, reg.observe())
    (tmp_path / "config.yaml").write_text("greeting: changed\n")
    from controller.engine.apply import apply

    with pytest.raises(ApplyFailed) as info:
        apply(the_plan, reg, root=desired.root, policy=NO_WAIT)
    assert "changed since the plan" in str(info.value)
    assert reg.writes == [], "a plan whose sources changed is refused before the first write"


def test_the_logged_source_is_the_digested_one_whatever_is_edited_meanwhile(
    tmp_path: Path,
) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    config = tmp_path / "config.yaml"
    digested = config.read_bytes()
    logged_from: list[str] = []

    class EditedWhileLogging(FakeRegistry):
        """Someone edits the config after the digest check, before the model is logged."""

        def find_version(self, name: str, digest: str) -> int | None:
            config.write_text("greeting: edited after the check\n")
            return super().find_version(name, digest)

        def log_version(self, name: str, source: VersionSource, *args: Any) -> int:
            logged_from.append(source.code_path)
            assert source.code_ref == "agent.py"
            return super().log_version(name, source, *args)

    reg = EditedWhileLogging()
    the_plan = plan(desired, reg.observe())
    apply(the_plan, reg, root=desired.root, policy=NO_WAIT)

    code, logged_config = reg.logged[("bot", 1)]
    assert logged_config == digested and code == (tmp_path / "agent.py").read_bytes()
    assert reg.models["bot"].versions[1].digest == desired.agents[0].source.digest  # type: ignore[union-attr]
    # Logged from a snapshot, under the code file's own name, removed once the apply is done.
    assert Path(logged_from[0]).name == "agent.py" and not Path(logged_from[0]).is_relative_to(
        tmp_path
    )
    assert not Path(logged_from[0]).exists()


def test_a_plan_with_errors_is_never_applied(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD.replace("[current]", "[current, 5]")))
    reg = FakeRegistry()
    the_plan = plan(desired, reg.observe())
    assert the_plan.has_errors
    from controller.engine.apply import apply

    with pytest.raises(PlanRejected):
        apply(the_plan, reg, root=desired.root, policy=NO_WAIT)
    assert reconcile(desired, reg, apply=True, policy=NO_WAIT).changeset is None
    assert reg.writes == []


def test_retry_after_is_honoured() -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=slept.append)
    calls = iter([TemporaryBackendError("slow down", retry_after=7.0)])

    def flaky() -> str:
        err = next(calls, None)
        if err:
            raise err
        return "ok"

    assert policy.call(flaky) == "ok"
    assert slept == [7.0]


@pytest.mark.parametrize(
    "env",
    [
        {"AGENTCTL_RETRY_ATTEMPTS": "many"},
        {"AGENTCTL_RETRY_ATTEMPTS": "0"},
        {"AGENTCTL_RETRY_DEADLINE": "-1"},
    ],
)
def test_bad_retry_settings_are_invalid_input(env: dict[str, str]) -> None:
    from controller.core.errors import InvalidInput

    with pytest.raises(InvalidInput) as info:
        RetryPolicy.from_env(env)
    assert next(iter(env)) in info.value.diagnostics.errors[0].message


def test_retry_settings_from_the_environment() -> None:
    policy = RetryPolicy.from_env(
        {"AGENTCTL_RETRY_ATTEMPTS": "2", "AGENTCTL_RETRY_DEADLINE": "1.5"}
    )
    assert (policy.attempts, policy.deadline) == (2, 1.5)


def test_serving_is_applied_after_the_registry_and_a_second_reconcile_starts_nothing(
    tmp_path: Path,
) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    first = reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert first.changeset is not None
    assert srv.calls == [("start", "bot", 1), ("weights", "bot", {1: 100})]
    second = reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert second.plan.changes == () and srv.starts == 1


def test_a_new_version_takes_the_traffic_and_the_old_one_stops_last(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    (tmp_path / "config.yaml").write_text("greeting: hello\n")
    desired, _ = load(tmp_path)
    srv.calls.clear()
    reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    # FakeServing refuses to stop a version that still takes traffic, or to route to none.
    assert srv.calls == [("start", "bot", 2), ("weights", "bot", {2: 100}), ("stop", "bot", 1)]


def test_weights_are_verified_and_set_again_until_the_route_says_so(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    srv.lagging["bot"] = 2  # the router reads back the old route twice
    result = reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert result.changeset is not None and srv.weights == {"bot": {1: 100}}
    assert srv.verified == [("bot", {1: 100})] * 3
    assert srv.calls.count(("weights", "bot", {1: 100})) == 3  # set again on each retry


def test_a_route_that_never_says_what_was_set_fails_the_apply(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    srv.lagging["bot"] = NO_WAIT.attempts
    with pytest.raises(ApplyFailed) as info:
        reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert isinstance(info.value.cause, TemporaryBackendError)
    assert "bot.traffic: agent bot: the route does not carry the weights just set (v1 100%)" in (
        str(info.value)
    )
    assert len(srv.verified) == NO_WAIT.attempts


def test_serving_changes_need_a_serving_target(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    the_plan = plan(desired, reg.observe(), serving=srv.observe())
    with pytest.raises(ValueError, match="serving target"):
        apply(the_plan, reg, root=str(tmp_path), policy=NO_WAIT)
    assert reg.writes == []


SHADOWED = GOOD.replace(
    """      - alias: champion
        percent: 100
""",
    """      - alias: champion
        percent: 100
    shadow:
      alias: champion
      percent: 10
""",
)


def test_serving_with_a_shadow_is_removed_in_one_apply(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, SHADOWED))
    reg, srv = FakeRegistry(), FakeServing()
    reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert srv.mirrors == {"bot": (1, 10)}
    desired, _ = load(write_repo(tmp_path, GOOD.split("  serving:")[0]))
    srv.calls.clear()
    result = reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert result.changeset is not None
    # Removing the route removes its shadow with it: no route is rewritten on the way out.
    assert srv.calls == [("unroute", "bot"), ("stop", "bot", 1)]
    assert srv.observe().agents == {}


def test_traffic_waits_for_a_version_that_is_not_ready_and_a_later_apply_moves_it(
    tmp_path: Path,
) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    (tmp_path / "config.yaml").write_text("greeting: hello\n")
    desired, _ = load(tmp_path)
    srv.slow.add(("bot", 2))
    srv.calls.clear()
    first = reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert first.changeset is not None and first.changeset.waiting
    verbs = {
        e.address: e.verb
        for e in first.changeset.entries
        if "serv" in e.address or "traffic" in e.address
    }
    assert Verb.WAITING in verbs.values() and Verb.SKIPPED in verbs.values()
    # Version 1 keeps every request and keeps running; version 2 was started.
    assert srv.calls == [("start", "bot", 2)] and srv.weights == {"bot": {1: 100}}

    waiting = reconcile(desired, reg, apply=False, policy=NO_WAIT, serving=srv)
    assert waiting.plan.changes[0].reason == (
        "waiting for bot v2 to become available (restarted 0 times)"
    )
    srv.slow.clear()
    srv.calls.clear()
    reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv)
    assert srv.calls == [("start", "bot", 2), ("weights", "bot", {2: 100}), ("stop", "bot", 1)]


# -- parallel apply ----------------------------------------------------------------------------

PLAIN = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: agent-{i:02d}
spec:
  description: number {i}
  tags: {{team: t{i}}}
"""


class SlowRegistry(FakeRegistry):
    """Each write takes a little while; records how many ran at once, and can fail one model."""

    def __init__(self, fail_model: str = "") -> None:
        super().__init__()
        import threading

        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.fail_model = fail_model

    def create_model(self, name: str, description: str | None, tags: dict[str, str]) -> None:  # type: ignore[override]
        import time

        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.02)
            if name == self.fail_model:
                raise PERMANENT
            super().create_model(name, description, tags)
        finally:
            with self.lock:
                self.now -= 1


def many(tmp_path: Path, n: int = 12) -> Path:
    root = write_repo(tmp_path, GOOD)
    (root / "bot.yaml").unlink()
    for i in range(n):
        (root / f"agent-{i:02d}.yaml").write_text(PLAIN.format(i=i))
    return root


def test_parallel_apply_does_the_same_side_by_side_in_plan_order(tmp_path: Path) -> None:
    desired, _ = load(many(tmp_path))
    serial, parallel = SlowRegistry(), SlowRegistry()
    p = plan(desired, serial.observe())
    one = apply(p, serial, root=desired.root, policy=NO_WAIT)
    seen: list[str] = []
    four = apply(
        p,
        parallel,
        root=desired.root,
        policy=NO_WAIT,
        workers=4,
        on_entry=lambda e: seen.append(e.address),
    )
    assert serial.observe() == parallel.observe()
    assert four == one  # the same entries, in plan order
    assert sorted(seen) == sorted(e.address for e in four.entries)
    assert serial.most == 1 and parallel.most == 4


def test_after_a_failure_no_agent_starts_another_change(tmp_path: Path) -> None:
    desired, _ = load(many(tmp_path, 20))
    reg = SlowRegistry(fail_model="agent-03")
    p = plan(desired, reg.observe())
    with pytest.raises(ApplyFailed) as info:
        apply(p, reg, root=desired.root, policy=NO_WAIT, workers=4)
    assert "agent-03.registered_model" in str(info.value)
    done = info.value.changeset.entries
    assert len(done) < 19 and "agent-03" not in reg.models  # stopped early, the rest left
    assert {e.address.split(".")[0] for e in done} == set(reg.models)
    # The next apply finishes what is left.
    reg.fail_model = ""
    p = plan(desired, reg.observe())
    apply(p, reg, root=desired.root, policy=NO_WAIT, workers=4)
    assert len(reg.models) == 20 and not plan(desired, reg.observe()).has_changes


def test_serving_changes_run_one_at_a_time(tmp_path: Path) -> None:
    import threading
    import time

    class Watched(FakeServing):
        def __init__(self) -> None:
            super().__init__()
            self.now = self.most = 0
            self.lock = threading.Lock()

        def start_version(self, agent: str, model: str, version: int) -> str:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.02)
            try:
                return super().start_version(agent, model, version)
            finally:
                with self.lock:
                    self.now -= 1

    root = write_repo(tmp_path, GOOD)
    for name in ("a", "b", "c", "d"):
        (root / f"{name}.yaml").write_text(GOOD.replace("name: bot", f"name: {name}"))
    (root / "bot.yaml").unlink()
    desired, _ = load(root)
    reg, srv = FakeRegistry(), Watched()
    reconcile(desired, reg, apply=True, policy=NO_WAIT, serving=srv, workers=4)
    assert srv.most == 1 and set(srv.weights) == {"a", "b", "c", "d"}


def test_nothing_is_pruned_in_an_apply_that_fails(tmp_path: Path) -> None:
    root = many(tmp_path, 6)
    desired, _ = load(root)
    reg = SlowRegistry()
    apply(plan(desired, reg.observe()), reg, root=desired.root, policy=NO_WAIT, workers=4)
    (root / "agent-05.yaml").unlink()  # no longer declared: pruned by an apply with --prune
    (root / "agent-00.yaml").write_text(PLAIN.format(i=0).replace("number 0", "changed"))
    desired, _ = load(root)
    p = plan(desired, reg.observe(), prune=True)
    reg.faults["set_model_description"] = [PERMANENT]
    with pytest.raises(ApplyFailed):
        apply(p, reg, root=desired.root, policy=NO_WAIT, workers=4)
    assert "agent-05" in reg.models  # the delete waited for the rest, which failed
    apply(
        plan(desired, reg.observe(), prune=True), reg, root=desired.root, policy=NO_WAIT, workers=4
    )
    assert "agent-05" not in reg.models


def test_an_unexpected_error_stops_every_agent_and_surfaces(tmp_path: Path) -> None:
    desired, _ = load(many(tmp_path, 20))
    reg = SlowRegistry()
    reg.faults["create_model"] = [KeyError("a bug")]
    with pytest.raises(KeyError, match="a bug"):
        apply(plan(desired, reg.observe()), reg, root=desired.root, policy=NO_WAIT, workers=4)
    assert len(reg.models) < 19


def test_what_apply_writes_says_which_agentctl_wrote_it_and_that_is_never_a_change(
    tmp_path: Path,
) -> None:
    from controller.core.state.observed import WRITTEN_BY_TAG
    from controller.engine.reconcile import Backends
    from controller.engine.reconcile import reconcile as engine_reconcile

    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    old = Backends(reg, policy=NO_WAIT, written_by="agentctl 1.0")
    first = engine_reconcile(desired, old, apply=True)
    assert first.changeset is not None and first.changeset.count(Verb.CREATED) == 3
    assert reg.models["bot"].tags[WRITTEN_BY_TAG] == "agentctl 1.0"
    assert reg.models["bot"].versions[1].tags[WRITTEN_BY_TAG] == "agentctl 1.0"
    # The run and the logged model are tagged from the source the version is logged from.
    assert reg.sources[("bot", 1)].written_by == "agentctl 1.0"
    writes = len(reg.writes)
    # A newer agentctl finds nothing to do: it does not rewrite every model to bump the tag.
    newer = Backends(reg, policy=NO_WAIT, written_by="agentctl 2.0")
    second = engine_reconcile(desired, newer, apply=True)
    assert second.plan.changes == () and second.changeset is None
    assert len(reg.writes) == writes
    assert reg.models["bot"].tags[WRITTEN_BY_TAG] == "agentctl 1.0"
    # Nor is the tag drift when someone else changes it.
    reg.models["bot"].tags[WRITTEN_BY_TAG] = "someone"
    assert engine_reconcile(desired, newer, apply=False).plan.changes == ()
