"""What a cluster runs against what the desired settings ask for: decided in the core, from the
objects the Kubernetes adapter read (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from controller.core.plan import kube_objects as ko
from controller.core.plan.kube_outdated import mark_outdated
from controller.core.state.cluster import ClusterState, LiveAgent, LiveObject, LiveRoute
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot

NS = "prod"
GATEWAY = ko.Settings(image="team/agents:1", replicas=2, router="gateway")
SERVICE = replace(GATEWAY, router="service")


def live(obj: Mapping[str, Any], **changed: Any) -> LiveObject:
    """What the adapter reads from an object agentctl wrote; ``changed`` as edited by hand."""
    annotations = obj["metadata"]["annotations"]
    spec = obj["spec"]
    found = LiveObject(
        kind=obj["kind"],
        name=obj["metadata"]["name"],
        model=annotations[ko.MODEL_ANNOTATION],
        digest=annotations[ko.DIGEST_ANNOTATION],
        replicas=spec.get("replicas") if obj["kind"] == "Deployment" else None,
        images=tuple(c["image"] for c in spec["template"]["spec"]["containers"])
        if obj["kind"] == "Deployment"
        else (),
    )
    return replace(found, **changed)


def cluster(
    s: ko.Settings,
    weights: dict[int, int],
    *,
    replicas: dict[int, int] | None = None,
    http: bool | None = None,
    svc: bool | None = None,
    drop: tuple[str, int] | None = None,
    edit: dict[str, Any] | None = None,
) -> ServingSnapshot:
    """Agent ``bot`` as agentctl would have written it under ``s`` for ``weights``: each
    version's Deployment and Service, and the route object of its router (``http`` / ``svc``
    say which route objects exist when given); ``drop`` leaves one object out, ``edit`` changes
    the Deployments as read."""
    router = s.router
    http = router == "gateway" if http is None else http
    svc = router == "service" if svc is None else svc
    shares = ko.replica_shares(s.replicas, weights)
    deployments, services = {}, {}
    for v in weights:
        count = (replicas or {}).get(v, shares[v] if router == "service" else s.replicas)
        dep = ko.deployment(NS, "bot", "bot", v, s, count if router == "service" else None)
        if drop != ("Deployment", v):
            deployments[v] = live(dep, **{"replicas": count, **(edit or {})})
        if drop != ("Service", v):
            services[v] = live(ko.service(NS, "bot", "bot", v))
    route = ko.route(NS, "bot", "bot", weights, None, s)
    agent_svc = ko.agent_service(NS, "bot", "bot", weights)
    state = LiveAgent(
        deployments=deployments,
        services=services,
        http_route=LiveRoute(live_route(route), dict(weights)) if http else None,
        agent_service=LiveRoute(live_route(agent_svc), dict(weights)) if svc else None,
    )
    served = AgentServing(
        "bot",
        "bot",
        {v: ServedVersion(v, "bot") for v in sorted(set(deployments) | set(services))},
        dict(weights),
    )
    return ServingSnapshot({"bot": served}, "", ClusterState(NS, True, {"bot": state}))


def live_route(obj: Mapping[str, Any]) -> LiveObject:
    annotations = obj["metadata"]["annotations"]
    return LiveObject(
        obj["kind"],
        obj["metadata"]["name"],
        annotations[ko.MODEL_ANNOTATION],
        annotations[ko.DIGEST_ANNOTATION],
    )


def why(snapshot: ServingSnapshot, s: ko.Settings) -> tuple[dict[int, str], str]:
    agent = mark_outdated(snapshot, lambda name: s).agents["bot"]
    return {v: sv.outdated for v, sv in agent.versions.items()}, agent.route_outdated


@pytest.mark.parametrize("s", [GATEWAY, SERVICE], ids=["gateway", "service"])
def test_what_agentctl_wrote_is_not_outdated(s: ko.Settings) -> None:
    assert why(cluster(s, {1: 80, 2: 20}), s) == ({1: "", 2: ""}, "")


def test_a_snapshot_without_cluster_objects_is_left_as_it_is() -> None:
    plain = ServingSnapshot({"bot": AgentServing("bot", "bot", {1: ServedVersion(1, "bot")})})
    assert mark_outdated(plain, lambda name: GATEWAY) is plain


def test_settings_that_changed_make_every_deployment_outdated() -> None:
    snapshot = cluster(GATEWAY, {1: 100})
    wanted = replace(GATEWAY, image="team/agents:2")
    assert why(snapshot, wanted)[0] == {1: "its Deployment differs from what the manifest asks for"}


CASES = [
    ("missing Deployment", {"drop": ("Deployment", 2)}, {2: "its Deployment is missing"}),
    ("missing Service", {"drop": ("Service", 2)}, {2: "its Service is missing"}),
    (
        "replicas by hand",
        {"edit": {"replicas": 5}},
        {v: "its Deployment was changed outside agentctl (replicas 5, want 2)" for v in (1, 2)},
    ),
    (
        "image by hand",
        {"edit": {"images": ("theirs:1",)}},
        {v: "its Deployment was changed outside agentctl (image theirs:1)" for v in (1, 2)},
    ),
]


@pytest.mark.parametrize(("what", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_server_changed_by_hand_or_missing_is_outdated(
    what: str, kwargs: dict[str, Any], expected: dict[int, str]
) -> None:
    found, route = why(cluster(GATEWAY, {1: 80, 2: 20}, **kwargs), GATEWAY)
    assert {v: w for v, w in found.items() if w} == expected
    assert route == ""


def test_router_service_compares_replicas_with_the_split_not_the_settings() -> None:
    snapshot = cluster(SERVICE, {1: 80, 2: 20}, replicas={2: 3})
    assert why(snapshot, SERVICE) == (
        {1: "", 2: ""},
        "v2 has 3 replicas; its share of the split is 1",
    )


def test_a_route_on_the_other_router_s_object_is_outdated_and_read_from_it() -> None:
    snapshot = cluster(GATEWAY, {1: 100})
    agent = mark_outdated(snapshot, lambda name: SERVICE).agents["bot"]
    assert agent.route_outdated == "the router is now service: a Service replaces its HTTPRoute"
    assert agent.weights == {1: 100}  # what the HTTPRoute carries, until the Service replaces it
    back = cluster(SERVICE, {1: 100})
    assert why(back, GATEWAY)[1] == "the router is now gateway: an HTTPRoute replaces its Service"


def test_the_other_router_s_object_left_over_is_outdated() -> None:
    snapshot = cluster(GATEWAY, {1: 100}, svc=True)
    assert why(snapshot, GATEWAY)[1] == "its Service is left over"


def test_auto_is_the_service_router_where_the_cluster_serves_no_gateway_api() -> None:
    auto = replace(GATEWAY, router="auto")
    with_api = cluster(GATEWAY, {1: 100})
    assert why(with_api, auto) == ({1: ""}, "")
    assert cluster_state(with_api) is not None
    without = replace(with_api, cluster=replace(cluster_state(with_api), gateway_api=False))
    assert why(without, auto)[1] == "the router is now service: a Service replaces its HTTPRoute"


def cluster_state(snapshot: ServingSnapshot) -> ClusterState:
    assert snapshot.cluster is not None
    return snapshot.cluster


def test_a_route_to_services_agentctl_does_not_serve_is_outdated() -> None:
    snapshot = cluster(GATEWAY, {1: 100})
    state = cluster_state(snapshot)
    bot = state.agents["bot"]
    assert bot.http_route is not None
    odd = "its HTTPRoute routes to Services agentctl does not serve"
    unknown = replace(bot, http_route=replace(bot.http_route, odd=odd))
    assert not unknown.http_route.known
    snapshot = replace(snapshot, cluster=replace(state, agents={"bot": unknown}))
    assert why(snapshot, GATEWAY)[1] == odd


# -- header routes and affinity: read back from the HTTPRoute, compared as rendered -----------

HEADERS = (("x-agent-version", "canary", 2), ("x-tester", "alice", 1))


def routed(
    obj: Mapping[str, Any], weights: dict[int, int], persistence: bool | None
) -> ServingSnapshot:
    """Agent ``bot`` routed by ``obj`` (an HTTPRoute as the API server has it), read back as the
    adapter reads it; ``persistence``: whether the cluster's CRD has sessionPersistence (None:
    not read)."""
    snapshot = cluster(GATEWAY, weights)
    state = cluster_state(snapshot)
    found = ko.route_state(obj, {f"bot-v{v}": v for v in weights}, bool(persistence))
    http = LiveRoute(
        live_route(obj), found.weights, found.shadow, found.odd, found.headers, found.affinity
    )
    bot = replace(state.agents["bot"], http_route=http)
    return replace(
        snapshot,
        cluster=replace(state, agents={"bot": bot}, session_persistence=persistence),
    )


@pytest.mark.parametrize("persistence", [True, False])
@pytest.mark.parametrize("affinity", [("x-session-id", None), (None, "sid"), (None, None), None])
def test_a_route_with_header_routes_and_affinity_as_written_is_not_outdated(
    persistence: bool, affinity: tuple[str | None, str | None] | None
) -> None:
    weights = {1: 80, 2: 20}
    obj = ko.route(NS, "bot", "bot", weights, (2, 10), GATEWAY, HEADERS, affinity, persistence)
    agent = mark_outdated(routed(obj, weights, persistence), lambda name: GATEWAY).agents["bot"]
    assert agent.route_outdated == ""
    assert (agent.headers, agent.affinity, agent.shadow) == (HEADERS, affinity, (2, 10))


def test_a_route_written_before_the_crd_had_session_persistence_is_outdated() -> None:
    weights = {1: 100}
    before = ko.route(NS, "bot", "bot", weights, None, GATEWAY, (), ("x-session-id", None))
    agent = mark_outdated(routed(before, weights, True), lambda name: GATEWAY).agents["bot"]
    assert agent.route_outdated == (
        "its HTTPRoute's sessionPersistence is not what its affinity asks for"
    )
    assert agent.affinity == ("x-session-id", None)  # as asked: the route is written again


def test_a_header_route_edited_by_hand_is_read_as_it_is_now() -> None:
    weights = {1: 80, 2: 20}
    obj = ko.route(NS, "bot", "bot", weights, None, GATEWAY, HEADERS)
    obj["spec"]["rules"][0]["matches"][0]["headers"][0]["value"] = "edited"
    agent = mark_outdated(routed(obj, weights, None), lambda name: GATEWAY).agents["bot"]
    assert agent.headers == (("x-agent-version", "edited", 2), HEADERS[1])
    assert agent.route_outdated == "its HTTPRoute differs from what the manifest asks for"
