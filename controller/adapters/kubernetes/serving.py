"""Serving on Kubernetes: Deployments, Services and a route object per agent.

Implements :class:`~controller.ports.ServingTarget`. This adapter only observes and writes.
Observation is one LIST per kind in the namespace, by the ``app.kubernetes.io/managed-by=agentctl``
label selector, and reports what each object says of itself
(:class:`~controller.core.state.cluster.ClusterState`), plus one GET of the HTTPRoute CRD when
an HTTPRoute asks for affinity (whether its rules have ``sessionPersistence``); whether that is
what the manifests ask for now is decided in the core (:mod:`controller.core.plan.kube_outdated`),
not here. Writes (:mod:`controller.adapters.kubernetes.objects`) render objects from each agent's
settings, looked up through the one ``settings_of`` given at construction, and only when writing.

A version's Deployment must be Available before any traffic moves to it: ``start_version``
waits up to ``wait`` seconds, then raises :class:`~controller.core.errors.NotReady`.

Traffic goes through one of two :class:`~controller.ports.TrafficRouter` implementations per
agent (:mod:`controller.adapters.kubernetes.routers`): :class:`GatewayRouter` (a Gateway API
HTTPRoute) or :class:`ServiceRouter` (one Service, the split approximated by replica counts), as
the agent's ``router`` setting says; ``auto`` is the gateway router where the cluster serves the
Gateway API, else the service router.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from controller.adapters.kubernetes.api import (
    Conflict,
    Forbidden,
    KubeApi,
    NotFound,
    connect,
    micro_time,
)
from controller.adapters.kubernetes.objects import PENDING, Cluster, Route
from controller.adapters.kubernetes.routers import GatewayRouter, KubeRouter, ServiceRouter
from controller.core.plan import kube_objects as ko
from controller.core.plan.changes import (
    Action,
    Change,
    Kind,
    RoutingState,
    ServerState,
    ShadowState,
    TrafficSplit,
)
from controller.core.plan.preview import ObjectPreview
from controller.core.state.cluster import ClusterState, LiveAgent, LiveObject, LiveRoute
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot
from controller.ports import Clock

__all__ = [
    "Conflict",
    "Forbidden",
    "GatewayRouter",
    "KubeApi",
    "KubernetesServing",
    "NotFound",
    "ServiceRouter",
    "connect",
    "micro_time",
]

_ROUTE_KINDS = ("HTTPRoute", "Service")


class KubernetesServing:
    """Serve agents in one namespace. ``settings_of(agent)`` gives an agent's resolved
    settings (its manifest's ``spec.serving.kubernetes`` over the defaults), for the objects
    this target writes; observing never asks for them."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        settings_of: Callable[[str], ko.Settings] = lambda agent: ko.Settings(),
        *,
        wait: float = 0.0,
        poll: float = 1.0,
        clock: Clock | None = None,
        written_by: str = "",
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.settings_of = settings_of
        self.cluster = Cluster(
            api, namespace, wait=wait, poll=poll, clock=clock, written_by=written_by
        )
        self.gateway = GatewayRouter(self.cluster, settings_of)
        self.service = ServiceRouter(self.cluster, settings_of)

    # How long start_version waits for availability, and how often it looks.
    @property
    def wait(self) -> float:
        return self.cluster.wait

    @wait.setter
    def wait(self, seconds: float) -> None:
        self.cluster.wait = seconds

    @property
    def poll(self) -> float:
        return self.cluster.poll

    @poll.setter
    def poll(self, seconds: float) -> None:
        self.cluster.poll = seconds

    def router_for(self, agent: str) -> KubeRouter:
        """The agent's traffic router: its setting, ``auto`` resolved by whether the cluster
        serves the Gateway API (known after :meth:`observe`)."""
        kind = ko.router_kind(self.settings_of(agent), self.cluster.gateway_api)
        return self.service if kind == "service" else self.gateway

    # -- reading -------------------------------------------------------------------------------

    def observe(self) -> ServingSnapshot:
        c = self.cluster
        c.forget()  # a Gateway may have gone, the CRDs changed, since the last observation
        try:
            self.api.request("GET", f"/api/v1/namespaces/{self.namespace}")
        except NotFound as exc:
            raise NotFound(
                f"namespace '{self.namespace}' does not exist (create it, or pick another with "
                "--namespace)",
                operation=exc.operation,
            ) from exc
        deployments = c.list("Deployment")
        services = c.list("Service")
        try:
            routes = c.list("HTTPRoute")
            c.gateway_api = True
        except NotFound:  # the cluster serves no Gateway API
            routes, c.gateway_api = [], False
        # LIST answers leave out each item's kind and apiVersion: put them back.
        c.live = {}
        for kind, api_version, objs in (
            ("Deployment", "apps/v1", deployments),
            ("Service", "v1", services),
            ("HTTPRoute", "gateway.networking.k8s.io/v1", routes),
        ):
            for obj in objs:
                obj.setdefault("apiVersion", api_version)
                obj.setdefault("kind", kind)
                c.live[(kind, obj["metadata"]["name"])] = obj
        return self._snapshot(deployments, services, routes)

    def _snapshot(
        self,
        deployments: list[dict[str, Any]],
        services: list[dict[str, Any]],
        routes: list[dict[str, Any]],
    ) -> ServingSnapshot:
        """What is served, and what every object says of itself; nothing compared with what
        the manifests ask for (the planner does that, from ``cluster``)."""

        def key(obj: Mapping[str, Any]) -> tuple[str, int] | None:
            labels = obj["metadata"].get("labels", {})
            agent, version = labels.get(ko.AGENT_LABEL), labels.get(ko.VERSION_LABEL, "")
            if agent is None or not version.isdigit():
                return None
            return agent, int(version)

        deps = {k: d for d in deployments if (k := key(d)) is not None}
        svcs = {k: s for s in services if (k := key(s)) is not None}
        # Router service: an agent's own Service (agent label, no version label).
        agent_svcs = {
            labels[ko.AGENT_LABEL]: s
            for s in services
            if ko.AGENT_LABEL in (labels := s["metadata"].get("labels") or {})
            and ko.VERSION_LABEL not in labels
            and s["metadata"]["name"] == ko.agent_service_name(labels[ko.AGENT_LABEL])
        }
        models: dict[str, str] = {}
        versions: dict[str, dict[int, ServedVersion]] = {}
        live_deps: dict[str, dict[int, LiveObject]] = {}
        live_svcs: dict[str, dict[int, LiveObject]] = {}
        for agent, number in sorted(set(deps) | set(svcs)):
            dep, svc = deps.get((agent, number)), svcs.get((agent, number))
            model = ((dep or svc or {})["metadata"].get("annotations") or {}).get(
                ko.MODEL_ANNOTATION, ""
            )
            models.setdefault(agent, model)
            ready, why = False, "its Deployment is missing"
            if dep is not None:
                ready, why = ko.availability(dep)
                live_deps.setdefault(agent, {})[number] = _live(dep)
            if svc is not None:
                live_svcs.setdefault(agent, {})[number] = _live(svc)
            name = ko.object_name(agent, number)
            versions.setdefault(agent, {})[number] = ServedVersion(
                version=number,
                model=model,
                ready=ready,
                url=f"http://{name}.{self.namespace}.svc:{ko.SERVICE_PORT}",
                status=why,
            )
        service_versions = {
            s["metadata"]["name"]: k[1] for s in services if (k := key(s)) is not None
        }
        http_routes = {
            labels[ko.AGENT_LABEL]: r
            for r in routes
            if ko.AGENT_LABEL in (labels := r["metadata"].get("labels") or {})
        }
        agents: dict[str, AgentServing] = {}
        readings: dict[str, tuple[LiveRoute | None, LiveRoute | None]] = {}
        self.cluster.routes = {kind: {} for kind in _ROUTE_KINDS}
        # Whether an HTTPRoute's affinity can be its sessionPersistence: read only if one asks.
        persistence = None
        if any(ko.AFFINITY_ANNOTATION in _annotations(r) for r in http_routes.values()):
            persistence = self.cluster.session_persistence()[0]
        for agent in sorted(set(http_routes) | set(agent_svcs)):
            http = _http_route(http_routes.get(agent), service_versions, bool(persistence))
            svc_route = _agent_service(agent_svcs.get(agent))
            readings[agent] = (http, svc_route)
            for kind, found in (("HTTPRoute", http), ("Service", svc_route)):
                if found is not None:
                    self.cluster.routes[kind][agent] = Route(
                        found.object.model,
                        dict(found.weights or {}),
                        found.shadow,
                        found.headers,
                        found.affinity,
                    )
            # As the cluster has it: the HTTPRoute's split where there is one. The planner
            # reads the split from the object the agent's router uses.
            shown = http or svc_route
            assert shown is not None
            agents[agent] = AgentServing(
                agent=agent,
                model=models.get(agent, shown.object.model),
                versions=versions.pop(agent, {}),
                weights=dict(shown.weights or {}),
                shadow=shown.shadow,
                headers=shown.headers,
                affinity=shown.affinity,
            )
        for agent, served in versions.items():
            agents[agent] = AgentServing(agent=agent, model=models[agent], versions=served)
        cluster = ClusterState(
            namespace=self.namespace,
            gateway_api=bool(self.cluster.gateway_api),
            agents={
                agent: LiveAgent(
                    deployments=live_deps.get(agent, {}),
                    services=live_svcs.get(agent, {}),
                    http_route=readings.get(agent, (None, None))[0],
                    agent_service=readings.get(agent, (None, None))[1],
                )
                for agent in sorted(agents)
            },
            session_persistence=persistence,
        )
        return ServingSnapshot(
            agents=agents,
            endpoint=f"HTTPRoutes and agent Services in namespace {self.namespace}",
            cluster=cluster,
        )

    def object_ref(self, agent: str) -> dict[str, str] | None:
        """The agent's route object as last seen (its HTTPRoute, or its Service under router
        service), as an object reference: what its events are about."""
        for router in (self.gateway, self.service):
            obj = self.cluster.live.get(router.route_object(agent))
            if obj is not None:
                meta = obj["metadata"]
                return {
                    "apiVersion": str(obj.get("apiVersion", "")),
                    "kind": str(obj.get("kind", "")),
                    "name": str(meta["name"]),
                    "namespace": self.namespace,
                    "uid": str(meta.get("uid", "")),
                }
        return None

    # -- writing: servers ----------------------------------------------------------------------

    def start_version(self, agent: str, model: str, version: int) -> str:
        settings = self.settings_of(agent)
        name = ko.object_name(agent, version)
        replicas = self.router_for(agent).start_replicas(agent, version)
        dep = ko.deployment(self.namespace, agent, model, version, settings, replicas)
        self.cluster.apply(agent, dep)
        self.cluster.apply(agent, ko.service(self.namespace, agent, model, version))
        self.cluster.wait_available(agent, version)
        return f"http://{name}.{self.namespace}.svc:{ko.SERVICE_PORT}"

    def stop_version(self, agent: str, version: int) -> None:
        name = ko.object_name(agent, version)
        self.cluster.delete(agent, "Service", name)
        self.cluster.delete(agent, "Deployment", name)

    # -- writing: traffic, through the agent's router ------------------------------------------

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        self.router_for(agent).set_weights(agent, model, weights)

    def verify_weight(self, agent: str, weights: Mapping[int, int]) -> bool:
        return self.router_for(agent).verify_weight(agent, weights)

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        self.router_for(agent).set_mirror(agent, shadow)

    def set_routing(
        self,
        agent: str,
        headers: Sequence[tuple[str, str, int]],
        affinity: tuple[str | None, str | None] | None,
    ) -> None:
        self.router_for(agent).set_routing(agent, headers, affinity)

    def remove_route(self, agent: str) -> None:
        self.router_for(agent).remove_route(agent)

    # -- previewing ----------------------------------------------------------------------------

    def preview(self, changes: Sequence[Change]) -> list[ObjectPreview]:
        """What the serving changes would write, object by object, from server-side dry runs:
        nothing is changed. Raises what the writes would raise (a name collision, RBAC, a missing
        Gateway, an object the API server's validation refuses), naming agent and object."""
        out: list[ObjectPreview] = []
        routes: dict[str, Route] = {}
        # Agents whose route names a version this apply registers (no dry run: said once, last),
        # and the affinity routes changes ask for (what the route's note speaks of).
        pending: dict[str, KubeRouter] = {}
        asked: dict[str, tuple[str | None, str | None] | None] = {}
        for c in changes:
            if c.kind is Kind.SERVED_VERSION:
                out += self._preview_served(c)
                continue
            if c.kind not in (Kind.TRAFFIC, Kind.SHADOW, Kind.ROUTES):
                continue
            router = self.router_for(c.agent)
            old = routes.get(c.agent) or router.current(c.agent)
            route = (
                replace(old, model=c.model, weights=dict(old.weights))
                if old is not None
                else Route(c.model, {})
            )
            if c.kind is Kind.TRAFFIC and c.action is not Action.DELETE:
                split = c.after_as(TrafficSplit)
                numbered = {t: p for t, p in split.weights if isinstance(t, int)}
                if len(numbered) < len(split.weights):
                    pending.setdefault(c.agent, router)
                    routes.pop(c.agent, None)
                    continue
                route.weights = numbered
            elif c.kind is Kind.SHADOW and c.action is not Action.DELETE:
                router.check_mirror(c.agent)
                shadow = c.after_as(ShadowState)
                if not isinstance(shadow.target, int):
                    pending.setdefault(c.agent, router)
                    continue
                route.shadow = (shadow.target, shadow.percent)
            elif c.kind is Kind.SHADOW:
                route.shadow = None
            elif c.kind is Kind.ROUTES and c.action is not Action.DELETE:
                router.check_routing(c.agent)
                routing = c.after_as(RoutingState)
                asked[c.agent] = routing.affinity
                if routing.pending:
                    pending.setdefault(c.agent, router)
                    continue
                route.headers = tuple(
                    (h, v, t) for h, v, t in routing.headers if isinstance(t, int)
                )
                route.affinity = routing.affinity
            elif c.kind is Kind.ROUTES:
                route.headers, route.affinity = (), None
            else:  # the route goes: whichever route objects it has
                for kind in _ROUTE_KINDS:
                    obj_key = (kind, router.object_name(kind, c.agent))
                    if obj_key in self.cluster.live:
                        out.append(self._preview_delete(c, *obj_key))
                routes.pop(c.agent, None)
                continue
            routes[c.agent] = route
        for agent, route in routes.items():
            router = self.router_for(agent)
            if not route.weights or agent in pending:  # (e.g. a shadow over pending traffic)
                pending.setdefault(agent, router)
            else:
                out += router.preview(agent, route)
        for agent, router in pending.items():
            current = routes.get(agent) or router.current(agent)
            affinity = asked.get(agent, current.affinity if current is not None else None)
            out.append(router.preview_unknown(agent, affinity))
        return out

    def _preview_delete(self, c: Change, kind: str, name: str) -> ObjectPreview:
        self.cluster.delete(c.agent, kind, name, dry_run=True)
        return ObjectPreview(
            c.agent, kind, name, self.namespace, "delete", self.cluster.live.get((kind, name)), None
        )

    def _preview_served(self, c: Change) -> list[ObjectPreview]:
        if c.action is Action.DELETE:
            stopped = c.before_as(ServerState).target
            name = ko.object_name(c.agent, stopped if isinstance(stopped, int) else 0)
            return [self._preview_delete(c, k, name) for k in ("Deployment", "Service")]
        target = c.after_as(ServerState).target
        pending = not isinstance(target, int)
        # A version this apply registers has no number yet: dry-run it as v0, which checks the
        # namespace, RBAC and the API server's validation all the same.
        number = target if isinstance(target, int) else 0
        settings = self.settings_of(c.agent)
        out = []
        replicas = self.router_for(c.agent).start_replicas(c.agent, number)
        for obj in (
            ko.deployment(self.namespace, c.agent, c.model, number, settings, replicas),
            ko.service(self.namespace, c.agent, c.model, number),
        ):
            kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
            before = None if pending else self.cluster.live.get((kind, name))
            dry = self.cluster.apply(c.agent, obj, dry_run=True, guard=not pending)
            out.append(
                ObjectPreview(
                    c.agent,
                    kind,
                    name,
                    self.namespace,
                    "update" if before else "create",
                    before,
                    dry,
                    note=PENDING if pending else "",
                )
            )
        return out


def _live(obj: Mapping[str, Any]) -> LiveObject:
    """What an object agentctl wrote says of itself."""
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    replicas, images = None, ()
    if obj.get("kind") == "Deployment":
        spec = obj.get("spec", {})
        replicas = spec.get("replicas")
        containers = spec.get("template", {}).get("spec", {}).get("containers", [])
        images = tuple(c.get("image") for c in containers)
    return LiveObject(
        kind=str(obj.get("kind", "")),
        name=str(meta["name"]),
        model=str(annotations.get(ko.MODEL_ANNOTATION, "")),
        digest=annotations.get(ko.DIGEST_ANNOTATION),
        replicas=replicas,
        images=images,
    )


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def _http_route(
    obj: Mapping[str, Any] | None, services: Mapping[str, int], persistence: bool
) -> LiveRoute | None:
    """An HTTPRoute and what it carries (split, shadow, header routes, affinity), its Services
    mapped to versions by ``services``; ``persistence``: whether its CRD has sessionPersistence."""
    if obj is None:
        return None
    found = ko.route_state(obj, services, persistence)
    return LiveRoute(
        _live(obj), found.weights, found.shadow, found.odd, found.headers, found.affinity
    )


def _agent_service(obj: Mapping[str, Any] | None) -> LiveRoute | None:
    """An agent's own Service and the split its weights annotation records (None: none)."""
    if obj is None:
        return None
    return LiveRoute(_live(obj), ko.agent_service_state(obj))
