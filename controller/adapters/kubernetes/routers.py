"""The two ways agentctl routes an agent's traffic on Kubernetes: two TrafficRouters.

:class:`GatewayRouter` writes a Gateway API HTTPRoute per agent: weighted ``backendRefs`` over
the versions' Services carry the split, a ``RequestMirror`` filter the shadow, rules with a header
match before that one the header routes, and its ``sessionPersistence`` the affinity (where the
cluster's CRD has the field).

:class:`ServiceRouter` (where the cluster serves no Gateway API, or the manifest asks for it)
writes one Service per agent over all its versions' pods, the split approximated by replica
counts. A new version starts at its share of the current split (none, if it has no traffic
yet); a traffic change first scales up the versions that gain replicas and waits for their
Deployments to be Available, then records the split on the Service, then scales down the rest.
Kubernetes sends a pod its share once that pod is Ready. There is no mirroring, no header route
and no affinity: each is a clear error.

Each implements :class:`~controller.ports.TrafficRouter`, ``verify_weight`` included (Argo
Rollouts' verify step: the route read back from the API server says what was set). Moving an
agent from one router to the other deletes the route object of the one it leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from controller.adapters.kubernetes.objects import PENDING, Cluster, Route
from controller.core.errors import PermanentBackendError
from controller.core.plan import kube_objects as ko
from controller.core.plan.preview import ObjectPreview

__all__ = ["GatewayRouter", "KubeRouter", "ServiceRouter"]


class _Router:
    """What both routers share: the cluster's objects, the agents' settings, and the route
    object of each router (the one to delete when an agent moves to the other)."""

    #: The kind of the object that carries an agent's split under this router.
    kind = ""

    def __init__(self, cluster: Cluster, settings_of: Callable[[str], ko.Settings]) -> None:
        self.cluster = cluster
        self.settings_of = settings_of

    @property
    def other_kind(self) -> str:
        return "Service" if self.kind == "HTTPRoute" else "HTTPRoute"

    @staticmethod
    def object_name(kind: str, agent: str) -> str:
        return ko.route_name(agent) if kind == "HTTPRoute" else ko.agent_service_name(agent)

    def route_object(self, agent: str) -> tuple[str, str]:
        """The (kind, name) that carries the agent's split under this router."""
        return self.kind, self.object_name(self.kind, agent)

    def current(self, agent: str) -> Route | None:
        """The agent's split as last read or written: from this router's object, else from the
        other router's (while the agent moves)."""
        routes = self.cluster.routes
        return routes[self.kind].get(agent) or routes[self.other_kind].get(agent)

    def _record(self, agent: str, route: Route) -> None:
        self.cluster.routes[self.kind][agent] = route

    def _drop_other(self, agent: str) -> None:
        """Delete the other router's route object of the agent, if it has one."""
        key = (self.other_kind, self.object_name(self.other_kind, agent))
        if key in self.cluster.live:
            self.cluster.delete(agent, *key)
        self.cluster.routes[self.other_kind].pop(agent, None)

    def remove_route(self, agent: str) -> None:
        self.cluster.delete(agent, *self.route_object(agent))
        self._drop_other(agent)
        for routes in self.cluster.routes.values():
            routes.pop(agent, None)

    def start_replicas(self, agent: str, version: int) -> int | None:
        """How many replicas a version's Deployment starts with; None: the settings' own."""
        return None

    def preview_leftover(self, agent: str) -> list[ObjectPreview]:
        """The other router's route object of the agent, if it has one: deleted."""
        key = (self.other_kind, self.object_name(self.other_kind, agent))
        live = self.cluster.live.get(key)
        if live is None:
            return []
        self.cluster.delete(agent, *key, dry_run=True)
        return [ObjectPreview(agent, key[0], key[1], self.cluster.namespace, "delete", live, None)]

    def preview_unknown(
        self, agent: str, affinity: tuple[str | None, str | None] | None = None
    ) -> ObjectPreview:
        """The route object, when the route names a version this apply registers: no dry run.
        ``affinity``: what the route will ask for."""
        kind, name = self.route_object(agent)
        before = self.cluster.live.get((kind, name))
        action = "update" if before else "create"
        note = "; ".join(filter(None, (PENDING, self.affinity_note(affinity))))
        return ObjectPreview(
            agent, kind, name, self.cluster.namespace, action, before, None, note=note
        )

    def affinity_note(self, affinity: tuple[str | None, str | None] | None) -> str:
        """What a plan says of the route's affinity ("": nothing)."""
        return ""


class GatewayRouter(_Router):
    """Router ``gateway``: an HTTPRoute per agent on the Gateway the settings name."""

    kind = "HTTPRoute"

    def _persistence(self, route: Route) -> tuple[bool, str]:
        """Whether the route's affinity can be its sessionPersistence (the CRD is read only for
        a route with affinity)."""
        return (False, "") if route.affinity is None else self.cluster.session_persistence()

    def _write(self, agent: str, route: Route, dry_run: bool = False) -> Any:
        settings = self.settings_of(agent)
        self.cluster.check_gateway(agent, settings)
        obj = ko.route(
            self.cluster.namespace,
            agent,
            route.model,
            route.weights,
            route.shadow,
            settings,
            route.headers,
            route.affinity,
            self._persistence(route)[0],
        )
        return self.cluster.apply(agent, obj, dry_run)

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        old = self.current(agent)
        route = (
            replace(old, model=model, weights=dict(weights))
            if old is not None
            else Route(model, dict(weights))
        )
        self._write(agent, route)
        self._drop_other(agent)
        self._record(agent, route)

    def verify_weight(self, agent: str, weights: Mapping[int, int]) -> bool:
        """Read the HTTPRoute back: its backendRefs' weights must be these, over the versions'
        Services, in its default rule (the one without header matches)."""
        obj = self.cluster.get(agent, *self.route_object(agent))
        rule = ko.default_rule(obj or {})
        if rule is None:
            return False
        found: dict[str, int] = {}
        for ref in rule.get("backendRefs") or []:
            name = str(ref.get("name", ""))
            found[name] = found.get(name, 0) + int(ref.get("weight", 1))
        return found == {ko.object_name(agent, v): w for v, w in weights.items()}

    def _no_route(self, agent: str, what: str) -> PermanentBackendError:
        return PermanentBackendError(
            f"agent {agent}: no HTTPRoute to {what} on; set its traffic first",
            target=f"HTTPRoute {self.cluster.namespace}/{ko.route_name(agent)}",
        )

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        old = self.current(agent)
        if old is None:
            raise self._no_route(agent, "mirror")
        route = replace(old, shadow=shadow)
        self._write(agent, route)
        self._record(agent, route)

    def set_routing(
        self,
        agent: str,
        headers: Sequence[tuple[str, str, int]],
        affinity: tuple[str | None, str | None] | None,
    ) -> None:
        """Header routes as rules before the weighted one; affinity as its sessionPersistence
        where the cluster's CRD has it (recorded in an annotation either way)."""
        old = self.current(agent)
        if old is None:
            if not headers and affinity is None:
                return
            raise self._no_route(agent, "route headers")
        route = replace(old, headers=tuple(headers), affinity=affinity)
        self._write(agent, route)
        self._record(agent, route)

    def check_mirror(self, agent: str) -> None:
        """An HTTPRoute can mirror."""

    def check_routing(self, agent: str) -> None:
        """An HTTPRoute can route by header (and keep affinity, where its CRD allows)."""

    def preview(self, agent: str, route: Route) -> list[ObjectPreview]:
        """The HTTPRoute as a dry run would write it, and the agent Service it replaces; its
        note says when its affinity cannot be kept as asked."""
        name = ko.route_name(agent)
        before = self.cluster.live.get(("HTTPRoute", name))
        after = self._write(agent, route, dry_run=True)
        action = "update" if before else "create"
        note = self.affinity_note(route.affinity)
        out = [
            ObjectPreview(
                agent, "HTTPRoute", name, self.cluster.namespace, action, before, after, note
            )
        ]
        return out + self.preview_leftover(agent)

    def preview_unknown(
        self, agent: str, affinity: tuple[str | None, str | None] | None = None
    ) -> ObjectPreview:
        self.cluster.check_gateway(agent, self.settings_of(agent))
        return super().preview_unknown(agent, affinity)

    def affinity_note(self, affinity: tuple[str | None, str | None] | None) -> str:
        """Whether the Gateway can keep the affinity as asked (the CRD is read only for one)."""
        if affinity is None:
            return ""
        return ko.affinity_note(affinity, self.cluster.session_persistence())


class ServiceRouter(_Router):
    """Router ``service``: one Service per agent over its versions' pods, split by replicas."""

    kind = "Service"

    def _scaled(self, agent: str, dep: Mapping[str, Any], replicas: int) -> dict[str, Any]:
        """A live Deployment of the agent, rendered again with ``replicas``."""
        labels, annotations = dep["metadata"]["labels"], dep["metadata"].get("annotations") or {}
        return ko.deployment(
            self.cluster.namespace,
            agent,
            annotations.get(ko.MODEL_ANNOTATION, ""),
            int(labels[ko.VERSION_LABEL]),
            self.settings_of(agent),
            replicas,
        )

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        """Scale up, wait until Available, record the split, scale down."""
        c = self.cluster
        shares = ko.replica_shares(self.settings_of(agent).replicas, weights)
        live = c.versions(agent)
        missing = sorted(set(shares) - set(live))
        if missing:
            raise PermanentBackendError(
                f"agent {agent}: no Deployment serves v{missing[0]}; it must be started before "
                "traffic moves to it",
                target=f"Deployment {c.namespace}/{ko.object_name(agent, missing[0])}",
            )

        def have(v: int) -> int:
            return int(live[v].get("spec", {}).get("replicas", 0))

        gaining = [v for v in sorted(shares) if shares[v] > have(v)]
        for v in gaining:
            c.apply(agent, self._scaled(agent, live[v], shares[v]))
        for v in gaining:
            c.wait_available(agent, v)
        c.apply(agent, ko.agent_service(c.namespace, agent, model, weights))
        for v in sorted(live):
            if shares.get(v, 0) < have(v):
                c.apply(agent, self._scaled(agent, live[v], shares.get(v, 0)))
        self._drop_other(agent)
        self._record(agent, Route(model, dict(weights)))

    def verify_weight(self, agent: str, weights: Mapping[int, int]) -> bool:
        """Read the agent's Service and Deployments back: the Service must record these
        weights, and every version's Deployment have its share of the replicas."""
        c = self.cluster
        svc = c.get(agent, *self.route_object(agent))
        if svc is None or ko.agent_service_state(svc) != dict(weights):
            return False
        shares = ko.replica_shares(self.settings_of(agent).replicas, weights)
        for number in sorted(set(shares) | set(c.versions(agent))):
            dep = c.get(agent, "Deployment", ko.object_name(agent, number))
            if dep is None:
                if number in shares:  # a version the split names has no Deployment
                    return False
                continue  # gone since it was read
            if dep.get("spec", {}).get("replicas") != shares.get(number, 0):
                return False
        return True

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        if shadow is not None:
            raise self.no_mirror(agent)

    def check_mirror(self, agent: str) -> None:
        raise self.no_mirror(agent)

    def set_routing(
        self,
        agent: str,
        headers: Sequence[tuple[str, str, int]],
        affinity: tuple[str | None, str | None] | None,
    ) -> None:
        """Nothing to clear; anything to set is an error: one Service cannot route by header."""
        if headers or affinity is not None:
            raise self.no_routing(agent)

    def check_routing(self, agent: str) -> None:
        raise self.no_routing(agent)

    def _why(self) -> str:
        return (
            "the cluster serves no Gateway API"
            if self.cluster.gateway_api is False
            else "its router is service"
        )

    def no_mirror(self, agent: str) -> PermanentBackendError:
        name = f"{self.cluster.namespace}/{ko.agent_service_name(agent)}"
        return PermanentBackendError(
            f"agent {agent}: Service {name}: {self._why()}, and a Service cannot mirror traffic: "
            "spec.serving.shadow needs router gateway (the Gateway API's RequestMirror filter)",
            target=f"Service {name}",
        )

    def no_routing(self, agent: str) -> PermanentBackendError:
        name = f"{self.cluster.namespace}/{ko.agent_service_name(agent)}"
        return PermanentBackendError(
            f"agent {agent}: Service {name}: {self._why()}, and a Service cannot route by header "
            "nor keep a conversation on one version: spec.serving.routes, spec.serving.affinity "
            "and spec.rollout.headerRoute need router gateway (HTTPRoute header matches and "
            "sessionPersistence)",
            target=f"Service {name}",
        )

    def start_replicas(self, agent: str, version: int) -> int | None:
        """A version starts at its share of the split as it stands (none while it has no
        traffic), keeping replicas a traffic change added and still waits on."""
        live = self.cluster.live.get(("Deployment", ko.object_name(agent, version)))
        if live is not None:
            return int(live["spec"].get("replicas", 0))
        current = self.current(agent)
        weights = current.weights if current else {}
        return ko.replica_shares(self.settings_of(agent).replicas, weights).get(version, 0)

    def preview(self, agent: str, route: Route) -> list[ObjectPreview]:
        """The agent's Service and the Deployments whose replicas change, as dry runs would
        write them, and the HTTPRoute it replaces."""
        if route.shadow is not None:
            raise self.no_mirror(agent)
        if route.headers or route.affinity is not None:
            raise self.no_routing(agent)
        c = self.cluster
        settings = self.settings_of(agent)
        shares = ko.replica_shares(settings.replicas, route.weights)
        name = ko.agent_service_name(agent)
        before = c.live.get(("Service", name))
        obj = ko.agent_service(c.namespace, agent, route.model, route.weights)
        out = [
            ObjectPreview(
                agent,
                "Service",
                name,
                c.namespace,
                "update" if before else "create",
                before,
                c.apply(agent, obj, dry_run=True),
                note=ko.split_note(
                    settings.replicas,
                    route.weights,
                    "no Gateway API" if settings.router == "auto" else "",
                ),
            )
        ]
        for number, dep in sorted(c.versions(agent).items()):
            want = shares.get(number, 0)
            if dep.get("spec", {}).get("replicas") == want:
                continue
            after = c.apply(agent, self._scaled(agent, dep, want), dry_run=True)
            dep_name = str(dep["metadata"]["name"])
            out.append(
                ObjectPreview(agent, "Deployment", dep_name, c.namespace, "update", dep, after)
            )
        return out + self.preview_leftover(agent)


KubeRouter = GatewayRouter | ServiceRouter
