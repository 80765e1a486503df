"""The planner and versions built from sources of their own: each found by its digest like
``current``, created under its name, in declaration order; one registry version per content."""

from __future__ import annotations

from dataclasses import replace

from controller.core.diagnostics import Severity
from controller.core.manifest.desired import DesiredAgent, ResolvedSource
from controller.core.plan.changes import Plan, VersionCreate
from controller.core.plan.planner import plan
from controller.core.render.formats import render_plan
from controller.core.state.observed import DIGEST_TAG, ServingSnapshot
from tests.support.builders import D1, D2, agent, desired, model, snapshot

D3 = "sha256:" + "3" * 64
STABLE = {"version": "stable", "source": {"config": "config-stable.yaml"}}
SERVING = {
    "traffic": [{"alias": "champion", "percent": 90}, {"alias": "challenger", "percent": 10}]
}


def named(
    current: str = D1, stable: str = D2, *, commit: str | None = None, versions: list | None = None
) -> DesiredAgent:
    a = agent(
        digest=current,
        versions=versions or [STABLE, "current"],
        aliases={"champion": "stable", "challenger": "current"},
        serving=SERVING,
    )
    own = ResolvedSource("/r/agent.py", "/r/config-stable.yaml", "agent.py", "config-stable.yaml",
                         ("mlflow==3.17.2",), stable, commit=commit,
                         revision="v1" if commit else None)  # fmt: skip
    return replace(a, named={"stable": own})


def kinds(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.kind.value, c.name, c.action.value) for c in p.changes]


def test_a_new_agent_with_two_sources_creates_both_in_declaration_order() -> None:
    p = plan(desired(named()), snapshot(), serving=ServingSnapshot({}))
    assert kinds(p)[:5] == [
        ("registered_model", "", "create"),
        ("model_version", "stable", "create"),
        ("model_version", "current", "create"),
        ("alias", "challenger", "create"),
        ("alias", "champion", "create"),
    ]
    stable, current = (c.after for c in p.changes[1:3])
    assert isinstance(stable, VersionCreate) and isinstance(current, VersionCreate)
    assert (stable.digest, stable.config, stable.tags[DIGEST_TAG]) == (D2, "config-stable.yaml", D2)
    assert current.digest == D1
    assert p.changes[4].after.to_dict() == {"version": None, "digest": D2}  # champion: stable
    assert [c.kind.value for c in p.changes].count("served_version") == 2
    assert not p.has_errors
    text = render_plan(p)
    assert 'model version "bot" (stable)' in text and "config-stable.yaml" in text


def test_both_registered_is_an_empty_plan() -> None:
    obs = snapshot(model(aliases={"champion": 2, "challenger": 1}, versions={1: D1, 2: D2}))
    assert plan(desired(named()), obs).changes == ()


def test_a_changed_named_source_logs_only_that_version() -> None:
    obs = snapshot(model(aliases={"champion": 2, "challenger": 1}, versions={1: D1, 2: D2}))
    p = plan(desired(named(stable=D3)), obs)
    assert kinds(p) == [("model_version", "stable", "create"), ("alias", "champion", "update")]


def test_two_names_with_one_content_are_one_version_and_the_plan_says_so() -> None:
    p = plan(desired(named(stable=D1)), snapshot())
    assert [c.name for c in p.changes if c.kind.value == "model_version"] == ["stable"]
    (warning,) = [d for d in p.diagnostics if d.field.startswith("spec.versions")]
    assert warning.severity is Severity.WARNING and warning.field == "spec.versions[1]"
    assert "'current' is built from the same content as 'stable'" in warning.message
    aliases = {c.name: c.after.to_dict() for c in p.changes if c.kind.value == "alias"}
    assert aliases["champion"] == aliases["challenger"] == {"version": None, "digest": D1}


def test_a_revision_is_carried_to_apply_and_shown() -> None:
    p = plan(desired(named(commit="a" * 40)), snapshot())
    (stable,) = [c for c in p.changes if c.name == "stable"]
    assert isinstance(stable.after, VersionCreate) and stable.after.commit == "a" * 40
    assert VersionCreate.from_dict(stable.after.to_dict()) == stable.after
    assert "at revision v1 (aaaaaaaaaaaa)" in stable.reason


def test_each_new_served_version_is_addressed_by_its_name_and_survives_a_round_trip() -> None:
    p = plan(desired(named()), snapshot(), serving=ServingSnapshot({}))
    served = [c.address for c in p.changes if c.kind.value == "served_version"]
    assert sorted(served) == ["bot.served_version.current", "bot.served_version.stable"]
    assert len({c.address for c in p.changes}) == len(p.changes)
    again = Plan.from_dict(p.to_dict())
    assert [c.address for c in again.changes] == [c.address for c in p.changes]
    assert again.changes == p.changes
