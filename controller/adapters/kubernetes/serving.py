"""Serving on Kubernetes: Deployments, Services and a Gateway API HTTPRoute per agent.

Implements :class:`~controller.ports.ServingTarget`. Every write is a server-side apply with one
field manager (``agentctl``, forcing conflicts: the manifests are the source of truth) of an
object rendered by :mod:`controller.core.plan.kube_objects`. Observation is one LIST per kind in the
namespace, by the ``app.kubernetes.io/managed-by=agentctl`` label selector; an object without that
label is never written or deleted, even when its name is the one agentctl would use (a clear
error instead). Requests go through the kubernetes client's ApiClient (kubeconfig or in-cluster
configuration, its TLS and auth) as plain JSON, with no discovery round-trips.

A version's Deployment must be Available before any traffic moves to it: ``start_version``
waits up to ``wait`` seconds, then raises :class:`~controller.core.errors.NotReady`.

Router ``service`` (where the cluster serves no Gateway API, or the manifest asks for it): one
Service per agent over all its versions' pods, the split approximated by replica counts. A new
version starts at its share of the current split (none, if it has no traffic yet); a traffic
change first scales up the versions that gain replicas and waits for their Deployments to be
Available, then records the split on the Service, then scales down the rest. Kubernetes sends a
pod its share once that pod is Ready. There is no mirroring: a shadow is a clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from controller.core.errors import (
    BackendError,
    InvalidInput,
    NotReady,
    PermanentBackendError,
    TemporaryBackendError,
)
from controller.core.plan import kube_objects as ko
from controller.core.plan.changes import (
    Action,
    Change,
    Kind,
    ServerState,
    ShadowState,
    TrafficSplit,
)
from controller.core.plan.preview import ObjectPreview
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot
from controller.ports import Clock, SystemClock

__all__ = [
    "Conflict",
    "Forbidden",
    "KubeApi",
    "KubernetesServing",
    "NotFound",
    "connect",
    "micro_time",
]

_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
}
_GATEWAYS = "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways/{name}"
_PENDING = "names the version this apply registers (its number is known after apply; dry-run as v0)"
_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def micro_time(now: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC), as Leases and Events take."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeApi:
    """JSON over the kubernetes client's ApiClient. Errors become typed BackendErrors:
    429 / 5xx / no answer are temporary, the rest permanent. ``requests`` counts calls made."""

    def __init__(self, api_client: k8s_client.ApiClient, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.requests = 0
        self.server = str(api_client.configuration.host)

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        self.requests += 1
        what = f"{method} {path}"
        try:
            response = self.api_client.call_api(
                serialized[0],
                serialized[1],
                header_params=serialized[2],
                body=serialized[3],
                _request_timeout=self.timeout,
            )
            raw = response.read()
        except ApiException as exc:  # raised by the client for some failures before a status
            raise _error(exc.status or 0, exc.body or str(exc), what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryBackendError(
                f"the Kubernetes API server at {self.server} did not answer: {exc}",
                operation=what,
            ) from exc
        if not 200 <= response.status < 300:
            raise _error(response.status, raw.decode(errors="replace"), what)
        return json.loads(raw) if raw else None


class Forbidden(PermanentBackendError):
    """RBAC denied the request."""


class NotFound(PermanentBackendError):
    """The object, its namespace or its API does not exist."""


class Conflict(PermanentBackendError):
    """The object exists already, or changed since it was read (HTTP 409)."""


def _error(status: int, body: str, what: str) -> BackendError:
    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", body)
    text = f"{what}: HTTP {status}: {message}"
    if status == 403:
        return Forbidden(text, operation=what)
    if status == 404:
        return NotFound(text, operation=what)
    if status == 409:
        return Conflict(text, operation=what)
    if status == 429 or status >= 500 or status == 0:
        return TemporaryBackendError(text, operation=what)
    return PermanentBackendError(text, operation=what)


def connect(
    kubeconfig: str | None = None, context: str | None = None, timeout: float = 30.0
) -> tuple[KubeApi, str]:
    """An API client from a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ~/.kube/config; its
    ``--context``) or, in a pod with neither given, the in-cluster configuration; and the
    namespace that configuration names (``default`` if none)."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            k8s_config.load_incluster_config(client_configuration=configuration)
            try:
                with open(_IN_CLUSTER_NAMESPACE) as fh:
                    namespace = fh.read().strip() or "default"
            except OSError:
                namespace = "default"
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
            if context is not None:
                contexts, _ = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                active = next(c for c in contexts if c["name"] == context)
            namespace = active.get("context", {}).get("namespace") or "default"
    except (k8s_config.ConfigException, OSError, StopIteration) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise InvalidInput.of(
            f"cannot load the Kubernetes configuration ({where}"
            f"{', context ' + context if context else ''}): {exc}",
            field="--kubeconfig",
        ) from exc
    configuration.retries = 0  # the retry policy retries, with backoff
    return KubeApi(k8s_client.ApiClient(configuration), timeout), namespace


@dataclass
class _Route:
    model: str
    weights: dict[int, int]
    shadow: tuple[int, int] | None
    outdated: str = ""


class KubernetesServing:
    """Serve agents in one namespace. ``settings_of(agent)`` gives an agent's resolved
    settings (its manifest's ``spec.serving.kubernetes`` over the defaults)."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        settings_of: Callable[[str], ko.Settings] = lambda agent: ko.Settings(),
        *,
        wait: float = 0.0,
        poll: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.settings_of = settings_of
        self.wait = wait
        self.poll = poll
        self.clock = clock or SystemClock()
        self._live: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, name) -> ours, as read
        self._routes: dict[str, _Route] = {}
        self._gateway_api: bool | None = None
        self._gateways_seen: set[tuple[str, str]] = set()

    def router(self, agent: str) -> str:
        """``gateway`` or ``service``: the agent's setting, ``auto`` resolved by whether the
        cluster serves the Gateway API (known after :meth:`observe`)."""
        router = self.settings_of(agent).router
        if router == "auto":
            return "service" if self._gateway_api is False else "gateway"
        return router

    # -- reading -------------------------------------------------------------------------------

    def _path(self, kind: str, name: str | None = None) -> str:
        base = _PATHS[kind].format(ns=self.namespace)
        return base if name is None else f"{base}/{name}"

    def _list(self, kind: str) -> list[dict[str, Any]]:
        answer = self.api.request("GET", self._path(kind), [("labelSelector", ko.SELECTOR)])
        items: list[dict[str, Any]] = answer.get("items", [])
        return items

    def observe(self) -> ServingSnapshot:
        self._gateways_seen = set()  # a Gateway may have gone since the last observation
        try:
            self.api.request("GET", f"/api/v1/namespaces/{self.namespace}")
        except NotFound as exc:
            raise NotFound(
                f"namespace '{self.namespace}' does not exist (create it, or pick another with "
                "--namespace)",
                operation=exc.operation,
            ) from exc
        deployments = self._list("Deployment")
        services = self._list("Service")
        try:
            routes = self._list("HTTPRoute")
            self._gateway_api = True
        except NotFound:  # the cluster serves no Gateway API
            routes, self._gateway_api = [], False
        # LIST answers leave out each item's kind and apiVersion: put them back.
        self._live = {}
        for kind, api_version, objs in (
            ("Deployment", "apps/v1", deployments),
            ("Service", "v1", services),
            ("HTTPRoute", "gateway.networking.k8s.io/v1", routes),
        ):
            for obj in objs:
                obj.setdefault("apiVersion", api_version)
                obj.setdefault("kind", kind)
                self._live[(kind, obj["metadata"]["name"])] = obj
        return self._snapshot(deployments, services, routes)

    def _snapshot(
        self,
        deployments: list[dict[str, Any]],
        services: list[dict[str, Any]],
        routes: list[dict[str, Any]],
    ) -> ServingSnapshot:
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
        for agent, number in sorted(set(deps) | set(svcs)):
            dep, svc = deps.get((agent, number)), svcs.get((agent, number))
            model = ((dep or svc or {})["metadata"].get("annotations") or {}).get(
                ko.MODEL_ANNOTATION, ""
            )
            models.setdefault(agent, model)
            settings = self.settings_of(agent)
            ready, why, outdated = False, "", ""
            if dep is None:
                why = outdated = "its Deployment is missing"
            else:
                ready, why = ko.availability(dep)
                outdated = _outdated(
                    dep,
                    ko.deployment(self.namespace, agent, model, number, settings),
                    "Deployment",
                    # router service: the split sets replicas (checked with the route below)
                    replicas=self.router(agent) == "gateway",
                )
            if svc is None:
                outdated = outdated or "its Service is missing"
            else:
                outdated = outdated or _outdated(
                    svc, ko.service(self.namespace, agent, model, number), "Service"
                )
            name = ko.object_name(agent, number)
            versions.setdefault(agent, {})[number] = ServedVersion(
                version=number,
                model=model,
                ready=ready,
                url=f"http://{name}.{self.namespace}.svc:{ko.SERVICE_PORT}",
                status=why,
                outdated=outdated,
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
        self._routes = {}
        for agent in sorted(set(http_routes) | set(agent_svcs)):
            state = self._route_state(
                agent,
                http_routes.get(agent),
                agent_svcs.get(agent),
                service_versions,
                {v: d for (a, v), d in deps.items() if a == agent},
            )
            self._routes[agent] = state
            agents[agent] = AgentServing(
                agent=agent,
                model=models.get(agent, state.model),
                versions=versions.pop(agent, {}),
                weights=dict(state.weights),
                shadow=state.shadow,
                route_outdated=state.outdated,
            )
        for agent, served in versions.items():
            agents[agent] = AgentServing(agent=agent, model=models[agent], versions=served)
        return ServingSnapshot(
            agents=agents, endpoint=f"HTTPRoutes and agent Services in namespace {self.namespace}"
        )

    def _route_state(
        self,
        agent: str,
        http_route: dict[str, Any] | None,
        agent_svc: dict[str, Any] | None,
        service_versions: Mapping[str, int],
        deps: Mapping[int, dict[str, Any]],
    ) -> _Route:
        """An agent's split as its route object carries it (the HTTPRoute for router gateway,
        its own Service for router service, the other one while the router changes), and why
        that object is not what agentctl would write now."""
        router = self.router(agent)
        settings = self.settings_of(agent)
        mine, other = (http_route, agent_svc) if router == "gateway" else (agent_svc, http_route)
        obj = mine or other
        assert obj is not None
        model = (obj["metadata"].get("annotations") or {}).get(ko.MODEL_ANNOTATION, "")
        shadow: tuple[int, int] | None = None
        if obj is http_route:
            weights, shadow, known = ko.route_state(obj, service_versions)
            outdated = "" if known else "its HTTPRoute routes to Services agentctl does not serve"
        else:
            found = ko.agent_service_state(obj)
            weights = found or {}
            outdated = "" if found is not None else f"its Service has no {ko.WEIGHTS_ANNOTATION}"
        kind = {"gateway": "HTTPRoute", "service": "Service"}[router]
        if mine is None:
            outdated = {
                "gateway": "the router is now gateway: an HTTPRoute replaces its Service",
                "service": "the router is now service: a Service replaces its HTTPRoute",
            }[router]
        elif not outdated:
            if router == "gateway":
                want = ko.route(self.namespace, agent, model, weights, shadow, settings)
            else:
                want = ko.agent_service(self.namespace, agent, model, weights)
            outdated = _outdated(obj, want, kind)
        if not outdated and router == "service":
            shares = ko.replica_shares(settings.replicas, weights)
            for number, dep in sorted(deps.items()):
                have = dep.get("spec", {}).get("replicas")
                if have != shares.get(number, 0):
                    outdated = (
                        f"v{number} has {have} replicas; its share of the split is "
                        f"{shares.get(number, 0)}"
                    )
                    break
        if not outdated and mine is not None and other is not None:
            outdated = f"its {'Service' if router == 'gateway' else 'HTTPRoute'} is left over"
        return _Route(model, dict(weights), shadow, outdated)

    def object_ref(self, agent: str) -> dict[str, str] | None:
        """The agent's route object as last seen (its HTTPRoute, or its Service under router
        service), as an object reference: what its events are about."""
        for router in ("gateway", "service"):
            obj = self._live.get(_route_object(agent, router))
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

    # -- writing -------------------------------------------------------------------------------

    def _guard(self, agent: str, kind: str, name: str) -> None:
        """Refuse to write an object that exists without agentctl's labels (or is another
        agent's): a name collision, never a takeover."""
        live = self._live.get((kind, name)) or self._get(agent, kind, name)
        if live is None:
            return
        labels = live.get("metadata", {}).get("labels") or {}
        if not _managed(live):
            raise PermanentBackendError(
                f"agent {agent}: {kind} {self.namespace}/{name} exists and is not managed by "
                f"agentctl (it has no {ko.SELECTOR} label); agentctl will not touch it: rename "
                "or remove it",
                target=f"{kind} {self.namespace}/{name}",
            )
        if labels.get(ko.AGENT_LABEL) != agent:
            raise PermanentBackendError(
                f"agent {agent}: {kind} {self.namespace}/{name} belongs to agent "
                f"'{labels.get(ko.AGENT_LABEL)}'",
                target=f"{kind} {self.namespace}/{name}",
            )

    def _apply(
        self, agent: str, obj: Mapping[str, Any], dry_run: bool = False, guard: bool = True
    ) -> Any:
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        if guard:
            self._guard(agent, kind, name)
        # Strict: a field the API server does not know (an older CRD) is an error, not dropped.
        query = [
            ("fieldManager", ko.FIELD_MANAGER),
            ("force", "true"),
            ("fieldValidation", "Strict"),
        ]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            result = self.api.request(
                "PATCH", self._path(kind, name), query, dict(obj), "application/apply-patch+yaml"
            )
        except BackendError as exc:
            raise self._naming(exc, agent, kind, name) from exc
        if not dry_run:
            self._live[(kind, name)] = result
        return result

    def _get(self, agent: str, kind: str, name: str) -> dict[str, Any] | None:
        """One object as the API server has it now; None if it does not exist."""
        try:
            found: dict[str, Any] = self.api.request("GET", self._path(kind, name))
        except NotFound:
            return None
        except BackendError as exc:
            raise self._naming(exc, agent, kind, name) from exc
        return found

    def _naming(self, exc: BackendError, agent: str, kind: str, name: str) -> BackendError:
        """The same error, its message naming the agent and the object."""
        return type(exc)(
            f"agent {agent}: {kind} {self.namespace}/{name}: {exc}",
            operation=exc.operation,
            target=f"{kind} {self.namespace}/{name}",
        )

    def _delete(self, agent: str, kind: str, name: str, dry_run: bool = False) -> None:
        live = self._live.get((kind, name)) or self._get(agent, kind, name)
        if live is None:
            return
        if (
            not _managed(live)
            or (live["metadata"].get("labels") or {}).get(ko.AGENT_LABEL) != agent
        ):
            return  # not ours, or another agent's: never deleted
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "preconditions": {"uid": live["metadata"]["uid"]},
        }
        query = [("dryRun", "All")] if dry_run else []
        try:
            self.api.request("DELETE", self._path(kind, name), query, body)
        except NotFound:
            pass
        except BackendError as exc:
            raise self._naming(exc, agent, kind, name) from exc
        if not dry_run:
            self._live.pop((kind, name), None)

    def start_version(self, agent: str, model: str, version: int) -> str:
        settings = self.settings_of(agent)
        name = ko.object_name(agent, version)
        replicas = self._start_replicas(agent, version)
        dep = ko.deployment(self.namespace, agent, model, version, settings, replicas)
        self._apply(agent, dep)
        self._apply(agent, ko.service(self.namespace, agent, model, version))
        self._wait_available(agent, version)
        return f"http://{name}.{self.namespace}.svc:{ko.SERVICE_PORT}"

    def _start_replicas(self, agent: str, version: int) -> int | None:
        """Router service: a version starts at its share of the split as it stands (none while
        it has no traffic), keeping replicas a traffic change added and still waits on. None:
        the settings' replicas (router gateway)."""
        if self.router(agent) != "service":
            return None
        live = self._live.get(("Deployment", ko.object_name(agent, version)))
        if live is not None:
            return int(live["spec"].get("replicas", 0))
        current = self._routes.get(agent)
        weights = current.weights if current else {}
        return ko.replica_shares(self.settings_of(agent).replicas, weights).get(version, 0)

    def _wait_available(self, agent: str, version: int) -> None:
        """Wait up to ``wait`` seconds for a version's Deployment to be Available."""
        name = ko.object_name(agent, version)
        deadline = self.clock.monotonic() + self.wait
        while True:
            try:
                live = self.api.request("GET", self._path("Deployment", name))
            except BackendError as exc:
                raise self._naming(exc, agent, "Deployment", name) from exc
            self._live[("Deployment", name)] = live
            ready, why = ko.availability(live)
            if ready:
                return
            if self.clock.monotonic() >= deadline:
                raise NotReady(agent, version, why)
            self.clock.sleep(self.poll)

    def stop_version(self, agent: str, version: int) -> None:
        name = ko.object_name(agent, version)
        self._delete(agent, "Service", name)
        self._delete(agent, "Deployment", name)

    def _check_gateway(self, agent: str, settings: ko.Settings) -> None:
        if self._gateway_api is False:
            raise NotFound(
                f"agent {agent}: HTTPRoute {self.namespace}/{ko.route_name(agent)}: the cluster "
                "serves no Gateway API (gateway.networking.k8s.io/v1); install its CRDs",
                target=f"HTTPRoute {self.namespace}/{ko.route_name(agent)}",
            )
        gw_ns = settings.gateway.namespace or self.namespace
        key = (gw_ns, settings.gateway.name)
        if key in self._gateways_seen:
            return
        try:
            self.api.request("GET", _GATEWAYS.format(ns=gw_ns, name=settings.gateway.name))
        except NotFound as exc:
            raise NotFound(
                f"agent {agent}: HTTPRoute {self.namespace}/{ko.route_name(agent)}: Gateway "
                f"{gw_ns}/{settings.gateway.name} does not exist (spec.serving.kubernetes.gateway)",
                target=f"HTTPRoute {self.namespace}/{ko.route_name(agent)}",
            ) from exc
        except BackendError as exc:
            raise self._naming(exc, agent, "HTTPRoute", ko.route_name(agent)) from exc
        self._gateways_seen.add(key)

    def _route(self, agent: str, route: _Route, dry_run: bool = False) -> Any:
        settings = self.settings_of(agent)
        self._check_gateway(agent, settings)
        obj = ko.route(self.namespace, agent, route.model, route.weights, route.shadow, settings)
        return self._apply(agent, obj, dry_run)

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        old = self._routes.get(agent)
        route = _Route(model, dict(weights), old.shadow if old else None)
        if self.router(agent) == "service":
            self._split_by_replicas(agent, model, route.weights)
            self._drop(agent, "gateway")
        else:
            self._route(agent, route)
            self._drop(agent, "service")
        self._routes[agent] = route

    def _drop(self, agent: str, router: str) -> None:
        """Delete the route object of a router the agent does not use, if it has one."""
        if _route_object(agent, router) in self._live:
            self._delete(agent, *_route_object(agent, router))

    def _versions(self, agent: str) -> dict[int, dict[str, Any]]:
        """The agent's live Deployments by version."""
        out = {}
        for (kind, _), obj in self._live.items():
            labels = obj["metadata"].get("labels") or {}
            number = labels.get(ko.VERSION_LABEL, "")
            if kind == "Deployment" and labels.get(ko.AGENT_LABEL) == agent and number.isdigit():
                out[int(number)] = obj
        return out

    def _scaled(self, agent: str, dep: Mapping[str, Any], replicas: int) -> dict[str, Any]:
        """A live Deployment of the agent, rendered again with ``replicas``."""
        labels, annotations = dep["metadata"]["labels"], dep["metadata"].get("annotations") or {}
        return ko.deployment(
            self.namespace,
            agent,
            annotations.get(ko.MODEL_ANNOTATION, ""),
            int(labels[ko.VERSION_LABEL]),
            self.settings_of(agent),
            replicas,
        )

    def _split_by_replicas(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        """Router service: scale up, wait until Available, record the split, scale down."""
        shares = ko.replica_shares(self.settings_of(agent).replicas, weights)
        live = self._versions(agent)
        missing = sorted(set(shares) - set(live))
        if missing:
            raise PermanentBackendError(
                f"agent {agent}: no Deployment serves v{missing[0]}; it must be started before "
                "traffic moves to it",
                target=f"Deployment {self.namespace}/{ko.object_name(agent, missing[0])}",
            )

        def have(v: int) -> int:
            return int(live[v].get("spec", {}).get("replicas", 0))

        gaining = [v for v in sorted(shares) if shares[v] > have(v)]
        for v in gaining:
            self._apply(agent, self._scaled(agent, live[v], shares[v]))
        for v in gaining:
            self._wait_available(agent, v)
        self._apply(agent, ko.agent_service(self.namespace, agent, model, weights))
        for v in sorted(live):
            if shares.get(v, 0) < have(v):
                self._apply(agent, self._scaled(agent, live[v], shares.get(v, 0)))

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        old = self._routes.get(agent)
        if self.router(agent) == "service":
            if shadow is not None:
                raise self._no_mirror(agent)
            return
        if old is None:
            raise PermanentBackendError(
                f"agent {agent}: no HTTPRoute to mirror on; set its traffic first",
                target=f"HTTPRoute {self.namespace}/{ko.route_name(agent)}",
            )
        route = _Route(old.model, old.weights, shadow)
        self._route(agent, route)
        self._routes[agent] = route

    def _no_mirror(self, agent: str) -> PermanentBackendError:
        why = (
            "the cluster serves no Gateway API"
            if self._gateway_api is False
            else "its router is service"
        )
        return PermanentBackendError(
            f"agent {agent}: Service {self.namespace}/{ko.agent_service_name(agent)}: {why}, and a "
            "Service cannot mirror traffic: spec.serving.shadow needs router gateway (the "
            "Gateway API's RequestMirror filter)",
            target=f"Service {self.namespace}/{ko.agent_service_name(agent)}",
        )

    def remove_route(self, agent: str) -> None:
        self._delete(agent, *_route_object(agent, self.router(agent)))
        self._drop(agent, "gateway" if self.router(agent) == "service" else "service")
        self._routes.pop(agent, None)

    # -- previewing ----------------------------------------------------------------------------

    def preview(self, changes: Sequence[Change]) -> list[ObjectPreview]:
        """What the serving changes would write, object by object, from server-side dry runs:
        nothing is changed. Raises what the writes would raise (a name collision, RBAC, a missing
        Gateway, an object the API server's validation refuses), naming agent and object."""
        out: list[ObjectPreview] = []
        routes: dict[str, _Route] = {}
        for c in changes:
            if c.kind is Kind.SERVED_VERSION:
                out += self._preview_served(c)
            elif c.kind in (Kind.TRAFFIC, Kind.SHADOW):
                old = routes.get(c.agent) or self._routes.get(c.agent)
                route = _Route(
                    c.model, dict(old.weights) if old else {}, old.shadow if old else None
                )
                if c.kind is Kind.TRAFFIC and c.action is not Action.DELETE:
                    split = c.after_as(TrafficSplit)
                    numbered = {t: p for t, p in split.weights if isinstance(t, int)}
                    if len(numbered) < len(split.weights):
                        out.append(self._unknown_route(c.agent, c.model))
                        routes.pop(c.agent, None)
                        continue
                    route.weights = numbered
                elif c.kind is Kind.SHADOW and c.action is not Action.DELETE:
                    if self.router(c.agent) == "service":
                        raise self._no_mirror(c.agent)
                    shadow = c.after_as(ShadowState)
                    if not isinstance(shadow.target, int):
                        out.append(self._unknown_route(c.agent, c.model))
                        continue
                    route.shadow = (shadow.target, shadow.percent)
                elif c.kind is Kind.SHADOW:
                    route.shadow = None
                else:  # the route goes: whichever route objects it has
                    for router in ("gateway", "service"):
                        if _route_object(c.agent, router) in self._live:
                            out.append(self._preview_delete(c, *_route_object(c.agent, router)))
                    routes.pop(c.agent, None)
                    continue
                routes[c.agent] = route
        for agent, route in routes.items():
            if not route.weights:  # a shadow over traffic that names a pending version
                out.append(self._unknown_route(agent, route.model))
            elif self.router(agent) == "service":
                out += self._preview_split(agent, route)
            else:
                out += self._preview_route(agent, route)
        return out

    def _preview_route(self, agent: str, route: _Route) -> list[ObjectPreview]:
        name = ko.route_name(agent)
        before = self._live.get(("HTTPRoute", name))
        after = self._route(agent, route, dry_run=True)
        action = "update" if before else "create"
        out = [ObjectPreview(agent, "HTTPRoute", name, self.namespace, action, before, after)]
        return out + self._preview_leftover(agent, "service")

    def _preview_leftover(self, agent: str, router: str) -> list[ObjectPreview]:
        """The route object of the router the agent leaves, if it has one: deleted."""
        key = _route_object(agent, router)
        live = self._live.get(key)
        if live is None:
            return []
        self._delete(agent, *key, dry_run=True)
        return [ObjectPreview(agent, key[0], key[1], self.namespace, "delete", live, None)]

    def _preview_split(self, agent: str, route: _Route) -> list[ObjectPreview]:
        """Router service: the agent's Service and the Deployments whose replicas change."""
        if route.shadow is not None:
            raise self._no_mirror(agent)
        settings = self.settings_of(agent)
        shares = ko.replica_shares(settings.replicas, route.weights)
        out = []
        name = ko.agent_service_name(agent)
        before = self._live.get(("Service", name))
        obj = ko.agent_service(self.namespace, agent, route.model, route.weights)
        out.append(
            ObjectPreview(
                agent,
                "Service",
                name,
                self.namespace,
                "update" if before else "create",
                before,
                self._apply(agent, obj, dry_run=True),
                note=ko.split_note(
                    settings.replicas,
                    route.weights,
                    "no Gateway API" if settings.router == "auto" else "",
                ),
            )
        )
        for number, dep in sorted(self._versions(agent).items()):
            want = shares.get(number, 0)
            if dep.get("spec", {}).get("replicas") == want:
                continue
            after = self._apply(agent, self._scaled(agent, dep, want), dry_run=True)
            dep_name = str(dep["metadata"]["name"])
            out.append(
                ObjectPreview(agent, "Deployment", dep_name, self.namespace, "update", dep, after)
            )
        return out + self._preview_leftover(agent, "gateway")

    def _unknown_route(self, agent: str, model: str) -> ObjectPreview:
        kind, name = _route_object(agent, self.router(agent))
        if kind == "HTTPRoute":
            self._check_gateway(agent, self.settings_of(agent))
        before = self._live.get((kind, name))
        action = "update" if before else "create"
        return ObjectPreview(agent, kind, name, self.namespace, action, before, None, note=_PENDING)

    def _preview_delete(self, c: Change, kind: str, name: str) -> ObjectPreview:
        self._delete(c.agent, kind, name, dry_run=True)
        return ObjectPreview(
            c.agent, kind, name, self.namespace, "delete", self._live.get((kind, name)), None
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
        replicas = self._start_replicas(c.agent, number)
        for obj in (
            ko.deployment(self.namespace, c.agent, c.model, number, settings, replicas),
            ko.service(self.namespace, c.agent, c.model, number),
        ):
            kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
            before = None if pending else self._live.get((kind, name))
            dry = self._apply(c.agent, obj, dry_run=True, guard=not pending)
            out.append(
                ObjectPreview(
                    c.agent,
                    kind,
                    name,
                    self.namespace,
                    "update" if before else "create",
                    before,
                    dry,
                    note=_PENDING if pending else "",
                )
            )
        return out


def _route_object(agent: str, router: str) -> tuple[str, str]:
    """The (kind, name) that carries an agent's split under a router."""
    if router == "service":
        return "Service", ko.agent_service_name(agent)
    return "HTTPRoute", ko.route_name(agent)


def _managed(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries agentctl's ``managed-by`` label."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(ko.MANAGED_BY[0]) == ko.MANAGED_BY[1])


def _outdated(
    live: Mapping[str, Any], want: Mapping[str, Any], kind: str, replicas: bool = True
) -> str:
    """Why a live object is not what agentctl would write now ("" if it is). A Deployment's
    replicas are compared only if ``replicas`` (router service: the split sets them)."""
    have = (live.get("metadata", {}).get("annotations") or {}).get(ko.DIGEST_ANNOTATION)
    if have != want["metadata"]["annotations"][ko.DIGEST_ANNOTATION]:
        return f"its {kind} differs from what the manifest asks for"
    if kind == "Deployment":
        spec, want_spec = live.get("spec", {}), want["spec"]
        if replicas and spec.get("replicas") != want_spec["replicas"]:
            return (
                f"its Deployment was changed outside agentctl (replicas {spec.get('replicas')}, "
                f"want {want_spec['replicas']})"
            )
        images = [
            c.get("image") for c in spec.get("template", {}).get("spec", {}).get("containers", [])
        ]
        want_images = [c["image"] for c in want_spec["template"]["spec"]["containers"]]
        if images != want_images:
            return (
                f"its Deployment was changed outside agentctl (image {', '.join(map(str, images))})"
            )
    return ""
