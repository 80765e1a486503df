"""The one reconcile: what it returns says when to look again, or that it cannot proceed; in
isolation one agent's failure stays with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controller.core.errors import ApplyFailed, PermanentBackendError
from controller.core.plan.changeset import ChangeSet
from controller.engine.loader import load
from controller.engine.reconcile import REQUEUE_WAITING, Backends, reconcile
from controller.engine.retry import RetryPolicy
from tests.support.fake_registry import FakeRegistry
from tests.support.fake_serving import FakeServing
from tests.support.manifests import GOOD, write_repo

NO_WAIT = RetryPolicy(attempts=1, initial=0.0, maximum=0.0, sleep=lambda s: None)


def test_nothing_pending_means_no_requeue_and_a_plan_with_errors_is_terminal(
    tmp_path: Path,
) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    done = reconcile(desired, Backends(reg, srv, policy=NO_WAIT), apply=True)
    assert done.changeset is not None and done.requeue_after is None and done.terminal is None
    bad, _ = load(write_repo(tmp_path / "b", GOOD.replace("[current]", "[current, 7]")))
    refused = reconcile(bad, Backends(reg, srv, policy=NO_WAIT), apply=True)
    assert refused.terminal == "the plan has errors" and refused.changeset is None


def test_a_server_becoming_ready_asks_for_a_look_in_a_few_seconds(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg, srv = FakeRegistry(), FakeServing()
    srv.slow.add(("bot", 1))
    waiting = reconcile(desired, Backends(reg, srv, policy=NO_WAIT), apply=True)
    assert waiting.changeset is not None and waiting.changeset.waiting
    assert waiting.requeue_after == REQUEUE_WAITING


def test_isolated_a_failing_agent_does_not_stop_the_others_and_holds_are_kept(
    tmp_path: Path,
) -> None:
    write_repo(tmp_path, GOOD)
    write_repo(tmp_path, GOOD.replace("name: bot", "name: other"), name="other.yaml")
    desired, _ = load(tmp_path)
    reg = FakeRegistry()
    reg.fail("create_model", PermanentBackendError("refused"))
    heard: list[tuple[str, bool]] = []

    def on_agent(agent: str, cs: ChangeSet, error: BaseException | None) -> None:
        heard.append((agent, error is None))

    result = reconcile(
        desired, Backends(reg, policy=NO_WAIT), apply=True, isolate=True, on_agent=on_agent
    )
    assert list(result.failed) == ["bot"] and list(result.applied) == ["other"]
    assert heard == [("bot", False), ("other", True)]
    # hold is asked agent by agent, when its turn comes: not for agents a stop never reached.
    asked: list[str] = []

    def hold(plan: object, progress: object) -> Callable[[str], str]:
        def why(agent: str) -> str:
            asked.append(agent)
            return "held by the test"

        return why

    reg3 = FakeRegistry()
    held = reconcile(desired, Backends(reg3, policy=NO_WAIT), apply=True, isolate=True, hold=hold)
    assert held.held == {"bot": "held by the test", "other": "held by the test"}
    assert reg3.models == {} and asked == ["bot", "other"]
    asked.clear()
    stops = iter([False, True])
    reconcile(desired, Backends(FakeRegistry(), policy=NO_WAIT), apply=True, isolate=True,
              hold=hold, stop=lambda: next(stops))  # fmt: skip
    assert asked == ["bot"]
    # A dry run applies nothing, isolated or not.
    reg2 = FakeRegistry()
    dry = reconcile(desired, Backends(reg2, policy=NO_WAIT), apply=False, isolate=True)
    assert dry.applied == {} and reg2.models == {} and dry.plan.has_changes


class _Guard:
    """A lock that something else can take over (``holds`` turns False after ``held`` asks),
    and that lets ``meanwhile`` write while it is being taken."""

    def __init__(self, held: int = 1000, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.asks, self.held, self.meanwhile = 0, held, meanwhile

    def __enter__(self) -> None:
        self.meanwhile()

    def __exit__(self, *exc: object) -> None:
        pass

    def holds(self) -> bool:
        self.asks += 1
        return self.asks <= self.held


def test_a_plan_with_changes_is_made_again_once_the_lock_is_held(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    shown: list[list[str]] = []
    # While this apply waited for the lock, another one created the model.
    guard = _Guard(
        meanwhile=lambda: reg.create_model("bot", None, {"agentctl.io/owner": "agentctl"})
    )
    result = reconcile(
        desired, Backends(reg, policy=NO_WAIT), apply=True, guard=lambda: guard,
        on_plan=lambda p: shown.append([c.address for c in p.changes]),
    )  # fmt: skip
    assert shown == [[c.address for c in result.plan.changes]]  # the plan shown is the one applied
    assert "bot.registered_model" not in [
        c.address for c in result.plan.changes if c.action.value == "create"
    ]
    # A no-op plan takes no lock.
    entered: list[bool] = []
    reconcile(desired, Backends(reg, policy=NO_WAIT), apply=True,
              guard=lambda: _Guard(meanwhile=lambda: entered.append(True)))  # fmt: skip
    assert entered == []


def test_an_apply_whose_lock_is_lost_stops_and_says_so(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    with pytest.raises(ApplyFailed, match="the registry lock was lost") as info:
        reconcile(desired, Backends(reg, policy=NO_WAIT), apply=True, guard=lambda: _Guard(held=1))
    done = [e.address for e in info.value.changeset.entries]
    assert done == ["bot.registered_model"] and "champion" not in reg.models["bot"].aliases
