"""Whether what a cluster runs is what agentctl would write now. Pure data: no I/O.

The Kubernetes adapter reports the objects it read (:class:`~controller.core.state.cluster.ClusterState`);
this module renders the objects the desired settings ask for (:mod:`controller.core.plan.kube_objects`)
and compares: a spec digest that differs, replicas or images changed by hand, a missing object, a
route on the other router's object, a replica split that no longer matches the weights, an
HTTPRoute whose rules are not as agentctl writes them. The route's split, shadow, header routes
and affinity are read from the object the agent's router uses, for the planner to compare. The
planner calls :func:`mark_outdated` before it plans a Kubernetes target's serving; what it finds
becomes the ``outdated`` / ``route_outdated`` reasons that :mod:`controller.core.plan.serving`
turns into changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from controller.core.plan import kube_objects as ko
from controller.core.state.cluster import ClusterState, LiveAgent, LiveObject, LiveRoute
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot

__all__ = ["mark_outdated", "outdated"]


def mark_outdated(
    serving: ServingSnapshot, settings_of: Callable[[str], ko.Settings]
) -> ServingSnapshot:
    """``serving`` with each server's ``outdated`` and each route's ``route_outdated`` said,
    and each route's split read from the object its router uses; as it is when the target
    reported no cluster objects (not Kubernetes)."""
    cluster = serving.cluster
    if cluster is None:
        return serving
    agents: dict[str, AgentServing] = {}
    for name, served in serving.agents.items():
        live = cluster.agents.get(name)
        agents[name] = served if live is None else _agent(cluster, served, live, settings_of(name))
    return replace(serving, agents=agents)


def _agent(
    cluster: ClusterState, served: AgentServing, live: LiveAgent, s: ko.Settings
) -> AgentServing:
    ns, agent = cluster.namespace, served.agent
    router = ko.router_kind(s, cluster.gateway_api)
    versions: dict[int, ServedVersion] = {}
    for number, server in served.versions.items():
        dep, svc = live.deployments.get(number), live.services.get(number)
        why = ""
        if dep is None:
            why = "its Deployment is missing"
        else:
            # Router service: the split sets replicas (checked with the route below).
            want = ko.deployment(ns, agent, server.model, number, s)
            why = outdated(dep, want, replicas=router == "gateway")
        if svc is None:
            why = why or "its Service is missing"
        else:
            why = why or outdated(svc, ko.service(ns, agent, server.model, number))
        versions[number] = replace(server, outdated=why)
    found = _route(ns, agent, router, live, s, bool(cluster.session_persistence))
    if found is None:
        return replace(served, versions=versions)
    route, why = found
    return replace(
        served,
        model=served.model if served.versions else route.object.model,
        versions=versions,
        weights=dict(route.weights or {}),
        shadow=route.shadow,
        headers=route.headers,
        affinity=route.affinity,
        route_outdated=why,
    )


def _route(
    ns: str, agent: str, router: str, live: LiveAgent, s: ko.Settings, persistence: bool
) -> tuple[LiveRoute, str] | None:
    """An agent's route as its route object carries it (the HTTPRoute for router gateway, its
    own Service for router service, the other one while the router changes), and why that
    object is not what agentctl would write now. ``persistence``: whether the cluster's
    HTTPRoute CRD has sessionPersistence (an HTTPRoute with affinity is rendered with it)."""
    http, svc = live.http_route, live.agent_service
    mine, other = (http, svc) if router == "gateway" else (svc, http)
    found: LiveRoute | None = mine or other
    if found is None:
        return None
    model = found.object.model
    weights = dict(found.weights or {})
    shadow = found.shadow
    if found is http:
        why = found.odd
    else:
        why = "" if found.weights is not None else f"its Service has no {ko.WEIGHTS_ANNOTATION}"
    if mine is None:
        why = {
            "gateway": "the router is now gateway: an HTTPRoute replaces its Service",
            "service": "the router is now service: a Service replaces its HTTPRoute",
        }[router]
    elif not why:
        want = (
            ko.route(
                ns, agent, model, weights, shadow, s, found.headers, found.affinity, persistence
            )
            if router == "gateway"
            else ko.agent_service(ns, agent, model, weights)
        )
        why = outdated(mine.object, want)
    if not why and router == "service":
        shares = ko.replica_shares(s.replicas, weights)
        for number, dep in sorted(live.deployments.items()):
            if dep.replicas != shares.get(number, 0):
                why = (
                    f"v{number} has {dep.replicas} replicas; its share of the split is "
                    f"{shares.get(number, 0)}"
                )
                break
    if not why and mine is not None and other is not None:
        why = f"its {'Service' if router == 'gateway' else 'HTTPRoute'} is left over"
    return found, why


def outdated(live: LiveObject, want: Mapping[str, Any], replicas: bool = True) -> str:
    """Why a live object is not ``want``, what agentctl would write now ("" if it is). A
    Deployment's replicas are compared only if ``replicas`` (router service: the split sets
    them)."""
    kind = live.kind
    if live.digest != want["metadata"]["annotations"][ko.DIGEST_ANNOTATION]:
        return f"its {kind} differs from what the manifest asks for"
    if kind == "Deployment":
        want_spec = want["spec"]
        if replicas and live.replicas != want_spec["replicas"]:
            return (
                f"its Deployment was changed outside agentctl (replicas {live.replicas}, "
                f"want {want_spec['replicas']})"
            )
        want_images = tuple(c["image"] for c in want_spec["template"]["spec"]["containers"])
        if live.images != want_images:
            return (
                "its Deployment was changed outside agentctl (image "
                f"{', '.join(map(str, live.images))})"
            )
    return ""
