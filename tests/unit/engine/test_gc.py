"""gc's orchestration over the in-memory registry: a dry run writes nothing; --yes deletes each
orphan once, logged models before runs, retried; nothing referenced is deleted."""

from __future__ import annotations

from controller.core.state.logged import LoggedModel, LoggedRun
from controller.core.state.observed import AGENT_TAG, DIGEST_TAG, OWNER_TAG, ObservedVersion
from controller.engine.gc import collect
from controller.engine.retry import RetryPolicy
from tests.support.fake_registry import TEMPORARY, FakeRegistry

NO_WAIT = RetryPolicy(attempts=3, initial=0.0, maximum=0.0, sleep=lambda s: None)
TAGS = {OWNER_TAG: "agentctl", AGENT_TAG: "bot", DIGEST_TAG: "sha256:1"}


def _registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.create_model("bot", None, {OWNER_TAG: "agentctl", AGENT_TAG: "bot"})
    reg.models["bot"].versions[1] = ObservedVersion(1, source="models:/m-1", run_id="r1")
    for n in ("1", "2"):
        reg.runs[f"r{n}"] = LoggedRun(f"r{n}", "bot", 0, TAGS)
        reg.logged_models[f"m-{n}"] = LoggedModel(f"m-{n}", f"r{n}", "bot", 0, TAGS)
    reg.writes.clear()
    return reg


def test_a_dry_run_lists_and_writes_nothing() -> None:
    reg = _registry()
    found = collect(reg, "agentctl", now_ms=1, min_age_s=0, delete=False, policy=NO_WAIT)
    assert [(o.kind, o.id) for o in found] == [("logged_model", "m-2"), ("run", "r2")]
    assert reg.writes == []


def test_yes_deletes_the_orphans_only_retrying_a_failure() -> None:
    reg = _registry()
    reg.fail("delete_run", TEMPORARY)
    told: list[str] = []
    collect(reg, "agentctl", now_ms=1, min_age_s=0, delete=True, policy=NO_WAIT,
            on_deleted=lambda o: told.append(o.id))  # fmt: skip
    assert told == ["m-2", "r2"]
    assert reg.writes == ["delete_logged_model", "delete_run"]
    assert set(reg.runs) == {"r1"} and set(reg.logged_models) == {"m-1"}
    again = collect(reg, "agentctl", now_ms=1, min_age_s=0, delete=True, policy=NO_WAIT)
    assert again == ()
