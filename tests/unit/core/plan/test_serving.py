"""Planning spec.serving: servers, traffic and shadow against what a serving target reports."""

from __future__ import annotations

from typing import Any

from controller.adapters.local.routing import Route
from controller.core.manifest.schema import CURRENT
from controller.core.plan.changes import Plan
from controller.core.plan.planner import plan
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot
from tests.support.builders import D1, D2, agent, desired, model, snapshot


def kinds(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.kind.value, c.name, c.action.value) for c in p.changes]


def served(
    versions: dict[int, bool], weights: dict[int, int], shadow: tuple[int, int] | None = None
) -> ServingSnapshot:
    return ServingSnapshot(
        {
            "bot": AgentServing(
                "bot",
                "bot",
                {v: ServedVersion(v, "bot", ready=r) for v, r in versions.items()},
                weights,
                shadow,
            )
        }
    )


def canary(**serving: Any) -> Any:
    extra = {"serving": serving} if serving else {}
    return agent(versions=[1, CURRENT], aliases={"champion": 1, "challenger": CURRENT}, **extra)


SPLIT = {"traffic": [{"alias": "champion", "percent": 80}, {"alias": "challenger", "percent": 20}]}
REGISTRY = snapshot(model(aliases={"champion": 1, "challenger": 2}, versions={1: D2, 2: D1}))


def test_nothing_served_starts_servers_then_routes() -> None:
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=ServingSnapshot())
    assert kinds(p) == [
        ("served_version", "1", "create"),
        ("served_version", "2", "create"),
        ("traffic", "", "create"),
    ]
    assert p.changes[2].after.to_dict() == {
        "weights": [{"version": 1, "percent": 80}, {"version": 2, "percent": 20}]
    }


def test_serving_as_desired_is_no_change() -> None:
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=served({1: True, 2: True}, {1: 80, 2: 20}))
    assert p.changes == ()


def test_weight_change_moves_traffic_only() -> None:
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=served({1: True, 2: True}, {1: 50, 2: 50}))
    assert kinds(p) == [("traffic", "", "update")]
    assert p.changes[0].before.to_dict() == {
        "weights": [{"version": 1, "percent": 50}, {"version": 2, "percent": 50}]
    }


def test_version_leaving_traffic_is_stopped_after_traffic_moves() -> None:
    d = desired(canary(traffic=[{"alias": "challenger", "percent": 100}]))
    p = plan(d, REGISTRY, serving=served({1: True, 2: True}, {1: 80, 2: 20}))
    assert kinds(p) == [("traffic", "", "update"), ("served_version", "1", "delete")]


def test_zero_percent_version_stays_served() -> None:
    d = desired(
        canary(
            traffic=[{"alias": "champion", "percent": 0}, {"alias": "challenger", "percent": 100}]
        )
    )
    p = plan(d, REGISTRY, serving=served({1: True, 2: True}, {1: 80, 2: 20}))
    assert kinds(p) == [("traffic", "", "update")]


def test_new_version_is_started_before_traffic_and_known_after_apply() -> None:
    d = desired(
        agent(
            digest=D2,
            aliases={"champion": CURRENT},
            serving={"traffic": [{"alias": "champion", "percent": 100}]},
        )
    )
    obs = snapshot(model(aliases={"champion": 1}, versions={1: D1}))
    p = plan(d, obs, serving=served({1: True}, {1: 100}))
    assert kinds(p) == [
        ("model_version", "current", "create"),
        ("alias", "champion", "update"),
        ("served_version", "current", "create"),
        ("traffic", "", "update"),
        ("served_version", "1", "delete"),
    ]
    assert p.changes[2].after.to_dict() == {"version": None, "digest": D2, "model": "bot"}
    assert p.changes[3].after.to_dict() == {
        "weights": [{"version": None, "digest": D2, "percent": 100}]
    }


def test_two_aliases_on_one_version_share_one_server() -> None:
    d = desired(agent(aliases={"champion": CURRENT, "challenger": CURRENT}, serving=SPLIT))
    obs = snapshot(model(aliases={"champion": 1, "challenger": 1}, versions={1: D1}))
    p = plan(d, obs, serving=ServingSnapshot())
    assert kinds(p) == [("served_version", "1", "create"), ("traffic", "", "create")]
    assert p.changes[1].after.to_dict() == {"weights": [{"version": 1, "percent": 100}]}


def test_shadow_is_served_and_mirrored() -> None:
    d = desired(
        canary(
            traffic=[{"alias": "champion", "percent": 100}],
            shadow={"alias": "challenger", "percent": 30},
        )
    )
    p = plan(d, REGISTRY, serving=served({1: True}, {1: 100}))
    assert kinds(p) == [("served_version", "2", "create"), ("shadow", "", "create")]
    assert p.changes[1].after.to_dict() == {"version": 2, "percent": 30}
    same = plan(d, REGISTRY, serving=served({1: True, 2: True}, {1: 100}, (2, 30)))
    assert same.changes == ()
    gone = plan(desired(canary(traffic=[{"alias": "champion", "percent": 100}])), REGISTRY,
                serving=served({1: True, 2: True}, {1: 100}, (2, 30)))  # fmt: skip
    assert kinds(gone) == [("shadow", "", "delete"), ("served_version", "2", "delete")]


def test_server_that_is_not_ready_is_waited_for_before_traffic() -> None:
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=served({1: True, 2: False}, {1: 100}))
    assert kinds(p) == [("served_version", "2", "update"), ("traffic", "", "update")]
    assert p.changes[0].reason == "waiting for bot v2 to become available (restarted 0 times)"


def test_a_target_s_reason_for_not_ready_is_shown() -> None:
    obs = ServingSnapshot(
        {
            "bot": AgentServing(
                "bot",
                "bot",
                {
                    1: ServedVersion(1, "bot"),
                    2: ServedVersion(2, "bot", ready=False, status="0 of 2 replicas available"),
                },
                {1: 100},
            )
        }
    )
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=obs)
    assert (
        p.changes[0].reason == "waiting for bot v2 to become available (0 of 2 replicas available)"
    )


def test_a_server_that_runs_otherwise_than_asked_is_updated() -> None:
    obs = ServingSnapshot(
        {
            "bot": AgentServing(
                "bot",
                "bot",
                {
                    1: ServedVersion(1, "bot", outdated="its Deployment differs"),
                    2: ServedVersion(2, "bot"),
                },
                {1: 80, 2: 20},
            )
        }
    )
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=obs)
    assert kinds(p) == [("served_version", "1", "update")]
    assert p.changes[0].reason == "version 1: its Deployment differs"


def test_a_route_that_differs_beyond_its_weights_is_updated() -> None:
    base = served({1: True, 2: True}, {1: 80, 2: 20})
    obs = ServingSnapshot(
        {"bot": AgentServing("bot", "bot", base.agents["bot"].versions, {1: 80, 2: 20},
                             route_outdated="its HTTPRoute names another Gateway")}
    )  # fmt: skip
    p = plan(desired(canary(**SPLIT)), REGISTRY, serving=obs)
    assert kinds(p) == [("traffic", "", "update")]
    assert p.changes[0].reason == "the route: its HTTPRoute names another Gateway"


def test_server_of_another_model_is_replaced() -> None:
    obs = ServingSnapshot(
        {"bot": AgentServing("bot", "old", {1: ServedVersion(1, "old")}, {1: 100})}
    )
    d = desired(canary(traffic=[{"alias": "champion", "percent": 100}]))
    p = plan(d, REGISTRY, serving=obs)
    assert kinds(p) == [("served_version", "1", "replace")]


def test_agent_without_serving_is_unrouted_then_stopped() -> None:
    d = desired(canary())
    p = plan(d, REGISTRY, serving=served({1: True, 2: True}, {1: 80, 2: 20}, (2, 5)))
    # The route goes whole, its shadow with it (a route is never rewritten on the way out).
    assert kinds(p) == [
        ("traffic", "", "delete"),
        ("served_version", "1", "delete"),
        ("served_version", "2", "delete"),
    ]


def test_a_route_that_names_no_known_version_is_still_removed() -> None:
    obs = ServingSnapshot(
        {"bot": AgentServing("bot", "bot", {}, {}, route_outdated="its HTTPRoute routes to "
                             "Services agentctl does not serve")}
    )  # fmt: skip
    p = plan(desired(), snapshot(), serving=obs, prune=True)
    assert kinds(p) == [("traffic", "", "delete")]


def test_undeclared_served_agent_is_stopped_only_with_prune() -> None:
    obs = served({1: True}, {1: 100})
    kept = plan(desired(), snapshot(), serving=obs)
    assert kept.changes == ()
    assert any("--prune" in d.message for d in kept.diagnostics)
    pruned = plan(desired(), snapshot(), serving=obs, prune=True)
    assert kinds(pruned) == [("traffic", "", "delete"), ("served_version", "1", "delete")]


def test_served_version_missing_from_registry_is_a_plan_error_naming_the_field() -> None:
    d = desired(
        agent(
            digest=None,
            versions=[7],
            aliases={"champion": 7},
            serving={"traffic": [{"alias": "champion", "percent": 100}]},
        )
    )
    p = plan(d, snapshot(model(versions={1: D1})), serving=ServingSnapshot())
    assert p.has_errors
    fields = {d.field for d in p.diagnostics}
    assert "spec.serving.traffic[0].alias" in fields
    assert all(c.kind.value not in ("served_version", "traffic") for c in p.changes)


def test_without_a_serving_target_serving_is_only_validated() -> None:
    p = plan(desired(canary(**SPLIT)), REGISTRY)
    assert p.changes == ()
    assert any("--target registry" in d.message for d in p.diagnostics)


def test_route_never_chooses_a_version_that_is_not_ready() -> None:
    route = Route.of({1: 80, 2: 20, 3: 0}, shadow=(4, 25))
    draws = [i / 1000 for i in range(1000)]
    picks = [route.choose(u, {1, 2, 3}) for u in draws]
    assert picks.count(1) == 800 and picks.count(2) == 200 and 3 not in picks
    assert {route.choose(u, {2, 3}) for u in draws} == {2}
    assert route.choose(0.5, {3}) is None
    assert sum(route.mirror(u, {4}) == 4 for u in draws) == 250
    assert route.mirror(0.1, {1}) is None


ROUTES = {
    "traffic": [{"alias": "champion", "percent": 100}],
    "routes": [{"header": "X-Agent-Version", "value": "canary", "alias": "challenger"}],
    "affinity": {"header": "X-Session-Id"},
}


def test_header_routes_and_affinity_are_planned_and_their_version_served() -> None:
    p = plan(desired(canary(**ROUTES)), REGISTRY, serving=served({1: True}, {1: 100}))
    assert kinds(p) == [("served_version", "2", "create"), ("routes", "", "create")]
    assert p.changes[1].after.to_dict() == {
        "headers": [{"header": "x-agent-version", "value": "canary", "version": 2}],
        "affinity": {"header": "x-session-id", "cookie": None},
    }


def test_routes_as_desired_are_no_change_and_a_hand_edit_is_reverted() -> None:
    def with_routing(headers: Any, affinity: Any) -> ServingSnapshot:
        versions = {v: ServedVersion(v, "bot") for v in (1, 2)}
        return ServingSnapshot(
            {"bot": AgentServing("bot", "bot", versions, {1: 100}, None, "", headers, affinity)}
        )

    good = with_routing((("x-agent-version", "canary", 2),), ("x-session-id", None))
    assert plan(desired(canary(**ROUTES)), REGISTRY, serving=good).changes == ()
    edited = with_routing((("x-agent-version", "canary", 1),), ("x-session-id", None))
    p = plan(desired(canary(**ROUTES)), REGISTRY, serving=edited)
    assert kinds(p) == [("routes", "", "update")]
    p = plan(desired(canary(traffic=ROUTES["traffic"])), REGISTRY, serving=good)
    assert kinds(p) == [("routes", "", "delete"), ("served_version", "2", "delete")]
