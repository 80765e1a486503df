"""The planner, table-driven: desired + observed -> changes. No I/O, no fakes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from controller.core.manifest.schema import CURRENT
from controller.core.plan.changes import Action, Kind, Plan
from controller.core.plan.planner import plan
from controller.core.rollout.codec import STATE_TAG, TAG_PREFIX, Phase, RolloutState, read
from controller.core.rollout.commands import COMMAND_TAG
from controller.core.rollout.progress import Clear, Hold, Progress, Running
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot
from controller.engine.progressive import evaluate
from tests.support.builders import D1, D2, agent, desired, model, snapshot


def kinds(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.kind.value, c.name, c.action.value) for c in p.changes]


def test_fresh_registry_creates_model_version_and_aliases_in_order() -> None:
    p = plan(desired(agent(aliases={"champion": CURRENT})), snapshot())
    assert kinds(p) == [
        ("registered_model", "", "create"),
        ("model_version", "current", "create"),
        ("alias", "champion", "create"),
    ]
    alias = p.changes[2]
    assert alias.after.to_dict() == {"version": None, "digest": D1}  # known after apply
    assert p.summary() == {"add": 3, "change": 0, "destroy": 0, "evaluate": 0}
    assert not p.has_errors


def test_registry_as_desired_gives_an_empty_plan() -> None:
    d = desired(agent(aliases={"champion": CURRENT}, tags={"team": "a"}))
    obs = snapshot(model(tags={"team": "a"}, aliases={"champion": 1}, versions={1: D1}))
    p = plan(d, obs)
    assert p.changes == ()
    assert p.unchanged >= 2


def test_changed_source_logs_a_new_version_and_moves_the_alias() -> None:
    d = desired(agent(digest=D2, aliases={"champion": CURRENT}))
    obs = snapshot(model(aliases={"champion": 1}, versions={1: D1}))
    p = plan(d, obs)
    assert kinds(p) == [("model_version", "current", "create"), ("alias", "champion", "update")]
    assert p.changes[1].before.to_dict() == {"version": 1}
    assert p.changes[1].after.to_dict() == {"version": None, "digest": D2}


def test_source_already_registered_is_not_logged_again() -> None:
    d = desired(
        agent(digest=D1, versions=[1, CURRENT], aliases={"champion": 1, "challenger": CURRENT})
    )
    obs = snapshot(model(aliases={"champion": 1}, versions={1: D2, 2: D1}))
    p = plan(d, obs)
    # No version is logged: the inventory learns the new alias, then the alias is set.
    assert kinds(p) == [("registered_model", "", "update"), ("alias", "challenger", "create")]
    assert p.changes[0].after and p.changes[0].after.tags["agentctl.io/managed-aliases"] == (
        "challenger,champion"
    )
    assert p.changes[1].after.to_dict() == {"version": 2}


def test_pinned_version_that_does_not_exist_is_an_error_with_its_location() -> None:
    d = desired(agent(versions=[7], aliases={"champion": 7}))
    p = plan(d, snapshot(model(versions={1: D1})))
    (err,) = p.diagnostics.errors
    assert err.field == "spec.versions[0].version"
    assert "version 7" in err.message and "does not exist" in err.message


def test_unmanaged_model_with_the_same_name_is_left_alone() -> None:
    p = plan(desired(agent()), snapshot(model(owner=None, tags={"x": "y"})))
    assert p.changes == ()
    (err,) = p.diagnostics.errors
    assert "not managed by agentctl" in err.message and err.field == "spec.registeredModel"


def test_adopt_takes_over_an_unmanaged_model() -> None:
    p = plan(desired(agent(adopt=True)), snapshot(model(owner=None, versions={1: D1})))
    (change,) = p.changes
    assert (change.kind, change.action) == (Kind.REGISTERED_MODEL, Action.UPDATE)
    assert change.after and change.after.tags["agentctl.io/owner"] == "agentctl"
    assert change.reason == "adopting an unmanaged model"


def test_model_of_another_owner_is_an_error() -> None:
    p = plan(desired(agent()), snapshot(model(owner="team-b", versions={1: D1})), owner="team-a")
    assert p.changes == ()
    assert "managed by 'team-b'" in p.diagnostics.errors[0].message


def test_removed_alias_is_deleted_but_a_hand_made_alias_is_not() -> None:
    obs = model(aliases={"champion": 1, "old": 1}, versions={1: D1})
    hand_made = dict(obs.aliases) | {"staging": 1}  # not in agentctl's inventory
    obs = type(obs)(obs.name, obs.description, obs.tags, hand_made, obs.versions)
    p = plan(desired(agent(aliases={"champion": CURRENT})), snapshot(obs))
    assert ("alias", "old", "delete") in kinds(p)
    assert not any(c.name == "staging" for c in p.changes)
    # The alias is deleted before the inventory that lists it is rewritten.
    order = [(c.kind, c.action) for c in p.changes]
    assert order.index((Kind.ALIAS, Action.DELETE)) < order.index(
        (Kind.REGISTERED_MODEL, Action.UPDATE)
    )


def test_tags_removed_from_the_manifest_are_deleted_others_left() -> None:
    obs = model(tags={"team": "a", "cost": "x"}, versions={1: D1})
    obs_tags = dict(obs.tags) | {"someone-elses": "keep"}
    obs = type(obs)(obs.name, obs.description, obs_tags, obs.aliases, obs.versions)
    p = plan(desired(agent(tags={"team": "b"})), snapshot(obs))
    (change,) = p.changes
    assert change.before and change.after
    assert change.before.tags["cost"] == "x" and "cost" not in change.after.tags
    assert change.after.tags["team"] == "b"
    assert "someone-elses" not in change.before.tags


@pytest.mark.parametrize(
    ("have", "want", "changes"),
    [("", None, 0), ("old", None, 0), ("old", "new", 1), ("same", "same", 0)],
)
def test_description_is_managed_only_when_declared(
    have: str, want: str | None, changes: int
) -> None:
    spec = {"description": want} if want is not None else {}
    obs = model(versions={1: D1}, description=have)
    assert len(plan(desired(agent(**spec)), snapshot(obs)).changes) == changes


def test_version_tags_are_planned_on_the_resolved_version() -> None:
    d = desired(agent(versions=[{"version": CURRENT, "tags": {"channel": "web"}}]))
    p = plan(d, snapshot(model(versions={3: D1})))
    (change,) = p.changes
    assert (change.kind, change.name, change.action) == (
        Kind.MODEL_VERSION,
        "current",
        Action.UPDATE,
    )
    assert change.after and change.after.version == 3 and change.after.tags["channel"] == "web"


def test_models_no_longer_declared_are_pruned_only_when_asked() -> None:
    obs = snapshot(model("gone", versions={1: D1}), model("bot", versions={1: D1}))
    p = plan(desired(agent()), obs)
    assert p.changes == ()
    assert any("--prune" in w.message for w in p.diagnostics.warnings)
    p = plan(desired(agent()), obs, prune=True)
    assert kinds(p) == [("registered_model", "", "delete")]
    assert p.changes[0].model == "gone"


def test_prune_never_touches_other_owners_or_unmanaged_models() -> None:
    obs = snapshot(
        model("theirs", owner="other"), model("manual", owner=None), model("bot", versions={1: D1})
    )
    assert plan(desired(agent()), obs, prune=True).changes == ()


def test_plan_is_deterministic_and_round_trips_through_json() -> None:
    d = desired(agent("b", aliases={"x": CURRENT}), agent("a", digest=D2, aliases={"y": CURRENT}))
    p1, p2 = plan(d, snapshot()), plan(d, snapshot())
    assert p1 == p2
    assert Plan.from_dict(p1.to_dict()) == p1
    # Agents come in name order, and the changes of one agent are contiguous.
    seen: list[str] = []
    for c in p1.changes:
        if not seen or seen[-1] != c.agent:
            assert c.agent not in seen
            seen.append(c.agent)
    assert seen == ["a", "b"]


def test_current_resolving_to_a_pinned_version_is_planned_once_and_settles() -> None:
    # The source is unchanged since version 1, which the manifest also pins with tags.
    d = desired(agent(versions=[{"version": 1, "tags": {"stage": "prod"}}]))
    obs = model(versions={1: D1})
    p = plan(d, snapshot(obs))
    (change,) = p.changes
    assert change.after and change.after.tags["stage"] == "prod"
    # Once applied, nothing is left to do (the implied `current` entry must not undo it).
    v1 = obs.versions[1]
    tags = {**v1.tags, **change.after.tags}
    applied = type(obs)(
        obs.name, obs.description, obs.tags, obs.aliases, {1: type(v1)(1, tags=tags)}
    )
    assert plan(d, snapshot(applied)).changes == ()


def test_two_explicit_entries_on_one_version_that_disagree_are_an_error() -> None:
    d = desired(
        agent(
            versions=[
                {"version": 1, "tags": {"stage": "prod"}},
                {"version": CURRENT, "tags": {"stage": "dev"}},
            ]
        )
    )
    p = plan(d, snapshot(model(versions={1: D1})))
    (err,) = p.diagnostics.errors
    assert err.field == "spec.versions[1].version" and "resolves to version 1" in err.message
    assert not any(c.kind is Kind.MODEL_VERSION for c in p.changes)


# -- a rollout's round (Progress) in place of the manifest's end state ------------------------

ROLLING = agent(
    digest=D2,
    aliases={"champion": CURRENT},
    serving={"traffic": [{"alias": "champion", "percent": 100}]},
    rollout={
        "canary": {"alias": "champion"},
        "promoteAlias": "champion",
        "steps": [{"weight": 20, "pause": "60s"}, {"weight": 100}],
    },
)
STATE = RolloutState(2, 1, "d", message="step 1/2: 20% for 60 s")
OLD = RolloutState(2, 1, "d", step_started=-5.0)
CMD = {COMMAND_TAG: "promote@2:0"}
SERVED = ServingSnapshot(
    {"bot": AgentServing("bot", "bot", {1: ServedVersion(1, "bot")}, {1: 100})}
)


def _running(stored: dict[str, str], state: RolloutState = STATE, **kw: Any) -> Running:
    fields: dict[str, Any] = {"alias_version": 1, "weights": {1: 80, 2: 20}, **kw}
    return Running(
        "champion", state=state, stored=read(stored), reason="why", active=True, **fields
    )


PROMOTED = replace(STATE, phase=Phase.PROMOTED)


@pytest.mark.parametrize(
    ("progress", "registered", "rollout", "alias", "weights"),
    [
        # Nothing recorded yet: the state is created, before the alias and traffic move.
        (_running({}), {1: D1, 2: D2}, ("create", None, STATE.to_storage(), "why"), None,
         [(1, 80), (2, 20)]),
        # Recorded, with the CLI's command beside it: the command is not the controller's.
        (_running({**OLD.to_storage(), **CMD}), {1: D1, 2: D2},
         ("update", OLD.to_storage(), STATE.to_storage(), "why"), None, [(1, 80), (2, 20)]),
        (_running({**STATE.to_storage(), **CMD}), {1: D1, 2: D2}, None, None,
         [(1, 80), (2, 20)]),
        # Promoted: the alias moves; the old version serves at 0 % until the delay is over.
        (_running(STATE.to_storage(), PROMOTED, alias_version=2, weights={2: 100, 1: 0}),
         {1: D1, 2: D2}, ("update", STATE.to_storage(), PROMOTED.to_storage(), "why"), 2,
         [(1, 0), (2, 100)]),
        # Cleared: the whole record goes (the command too); the manifest governs.
        (Clear(2, read({**OLD.to_storage(), **CMD}), "cleared"), {1: D1, 2: D2},
         ("delete", {**CMD, **OLD.to_storage()}, None, "cleared"), 2, [(2, 100)]),
        (Clear(2, read({}), "cleared"), {1: D1, 2: D2}, None, 2, [(2, 100)]),
        # Held for the canary this apply registers: it is served too, without traffic.
        (Hold("champion", 1, CURRENT, read(OLD.to_storage())), {1: D1}, None, None,
         [(1, 100), ("new", 0)]),
    ],
)  # fmt: skip
def test_a_rollouts_round_is_planned_from_the_progress_value_alone(
    progress: Progress,
    registered: dict[int, str | None],
    rollout: tuple[Any, ...] | None,
    alias: int | None,
    weights: list[tuple[int | str, int]],
) -> None:
    """The observed model carries no rollout tags at all: what the plan records, and the
    before it shows, come from the progress value (the planner reads no raw rollout tags)."""
    bare = snapshot(model(aliases={"champion": 1}, versions=registered))
    assert not any(k.startswith(TAG_PREFIX) for k in bare.models["bot"].tags)
    p = plan(desired(ROLLING), bare, serving=SERVED, progress={"bot": progress})
    assert not p.has_errors, p.diagnostics
    got = [
        (c.action.value, _d(c.before), _d(c.after), c.reason)
        for c in p.changes
        if c.kind is Kind.ROLLOUT
    ]
    assert got == ([rollout] if rollout else [])
    moved = [_d(c.after)["version"] for c in p.changes if c.kind is Kind.ALIAS and c.after]
    assert moved == ([alias] if alias else [])
    [traffic] = [_d(c.after) for c in p.changes if c.kind is Kind.TRAFFIC]
    assert [
        (w["version"] if w["version"] is not None else "new", w["percent"])
        for w in traffic["weights"]
    ] == weights


@pytest.mark.parametrize(
    "tags",
    [
        {},
        {**OLD.to_storage(), **CMD},
        {STATE_TAG: "{garbage", COMMAND_TAG: "nonsense", TAG_PREFIX + "legacy": "x"},
    ],
)
def test_the_plan_is_the_same_whatever_rollout_tags_the_observed_model_carries(
    tags: dict[str, str],
) -> None:
    """The round is evaluated once, from the tags; the planner then gives the same plan
    whether the model it is handed still carries them or not."""
    registered: dict[int, str | None] = {1: D1, 2: D2}
    tagged = snapshot(model(aliases={"champion": 1}, versions=registered, tags=tags,
                            managed_tags=""))  # fmt: skip
    bare = snapshot(model(aliases={"champion": 1}, versions=registered))
    progress = evaluate(desired(ROLLING), tagged, now=1000.0)
    assert isinstance(progress["bot"], Running)
    with_tags = plan(desired(ROLLING), tagged, serving=SERVED, progress=progress)
    without = plan(desired(ROLLING), bare, serving=SERVED, progress=progress)
    assert with_tags.changes == without.changes
    [change] = [c for c in without.changes if c.kind is Kind.ROLLOUT]
    record = {k: v for k, v in sorted(tags.items()) if k != COMMAND_TAG}
    assert _d(change.before) == (record or None)
    assert _d(change.after) == progress["bot"].state.to_storage()


def _d(payload: Any) -> Any:
    """A change's payload as the plan's JSON shows it."""
    return payload.to_dict() if payload is not None else None
