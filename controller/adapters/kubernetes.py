"""Serving on Kubernetes: Deployments, Services and a Gateway API HTTPRoute per agent.

Implements :class:`~controller.ports.ServingTarget`. Every write is a server-side apply with one
field manager (``agentctl``, forcing conflicts: the manifests are the source of truth) of an
object rendered by :mod:`controller.kube_objects`. Observation is one LIST per kind in the
namespace, by the ``app.kubernetes.io/managed-by=agentctl`` label selector; an object without that
label is never written or deleted, even when its name is the one agentctl would use (a clear
error instead). Requests go through the kubernetes client's ApiClient (kubeconfig or in-cluster
configuration, its TLS and auth) as plain JSON, with no discovery round-trips.

A version's Deployment must be Available before any traffic moves to it: ``start_version``
waits up to ``wait`` seconds, then raises :class:`~controller.errors.NotReady`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from controller import kube_objects as ko
from controller.errors import (
    BackendError,
    InvalidInput,
    NotReady,
    PermanentBackendError,
    TemporaryBackendError,
)
from controller.observed import AgentServing, ServedVersion, ServingSnapshot
from controller.plan import Action, Change, Kind
from controller.ports import Clock
from controller.preview import ObjectPreview
from controller.retry import SystemClock

__all__ = ["Forbidden", "KubeApi", "KubernetesServing", "NotFound", "connect"]

_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
}
_GATEWAYS = "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways/{name}"
_PENDING = "names the version this apply registers (its number is known after apply; dry-run as v0)"
_IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


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


def _error(status: int, body: str, what: str) -> BackendError:
    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", body)
    text = f"{what}: HTTP {status}: {message}"
    if status == 403:
        return Forbidden(text, operation=what)
    if status == 404:
        return NotFound(text, operation=what)
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

    # -- reading -------------------------------------------------------------------------------

    def _path(self, kind: str, name: str | None = None) -> str:
        base = _PATHS[kind].format(ns=self.namespace)
        return base if name is None else f"{base}/{name}"

    def _list(self, kind: str) -> list[dict[str, Any]]:
        answer = self.api.request("GET", self._path(kind), [("labelSelector", ko.SELECTOR)])
        items: list[dict[str, Any]] = answer.get("items", [])
        return items

    def observe(self) -> ServingSnapshot:
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
                    dep, ko.deployment(self.namespace, agent, model, number, settings), "Deployment"
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
        agents: dict[str, AgentServing] = {}
        self._routes = {}
        for obj in routes:
            labels = obj["metadata"].get("labels", {})
            agent = labels.get(ko.AGENT_LABEL)
            if agent is None:
                continue
            model = (obj["metadata"].get("annotations") or {}).get(ko.MODEL_ANNOTATION, "")
            weights, shadow, known = ko.route_state(obj, service_versions)
            outdated = "" if known else "its HTTPRoute routes to Services agentctl does not serve"
            if not outdated:
                want = ko.route(
                    self.namespace, agent, model, weights, shadow, self.settings_of(agent)
                )
                outdated = _outdated(obj, want, "HTTPRoute")
            self._routes[agent] = _Route(model, dict(weights), shadow)
            agents[agent] = AgentServing(
                agent=agent,
                model=models.get(agent, model),
                versions=versions.pop(agent, {}),
                weights=weights,
                shadow=shadow,
                route_outdated=outdated,
            )
        for agent, served in versions.items():
            agents[agent] = AgentServing(agent=agent, model=models[agent], versions=served)
        return ServingSnapshot(agents=agents, endpoint=f"HTTPRoutes in namespace {self.namespace}")

    # -- writing -------------------------------------------------------------------------------

    def _guard(self, agent: str, kind: str, name: str) -> None:
        """Refuse to write an object that exists without agentctl's labels (or is another
        agent's): a name collision, never a takeover."""
        if (kind, name) in self._live:
            return
        try:
            live = self.api.request("GET", self._path(kind, name))
        except NotFound:
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
        query = [("fieldManager", ko.FIELD_MANAGER), ("force", "true")]
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

    def _naming(self, exc: BackendError, agent: str, kind: str, name: str) -> BackendError:
        """The same error, its message naming the agent and the object."""
        return type(exc)(
            f"agent {agent}: {kind} {self.namespace}/{name}: {exc}",
            operation=exc.operation,
            target=f"{kind} {self.namespace}/{name}",
        )

    def _delete(self, agent: str, kind: str, name: str, dry_run: bool = False) -> None:
        live = self._live.get((kind, name))
        if live is None:
            try:
                live = self.api.request("GET", self._path(kind, name))
            except NotFound:
                return
            if not _managed(live):
                return  # not ours: never deleted
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
        dep = ko.deployment(self.namespace, agent, model, version, settings)
        self._apply(agent, dep)
        self._apply(agent, ko.service(self.namespace, agent, model, version))
        name = ko.object_name(agent, version)
        deadline = self.clock.monotonic() + self.wait
        while True:
            live = self.api.request("GET", self._path("Deployment", name))
            ready, why = ko.availability(live)
            if ready:
                return f"http://{name}.{self.namespace}.svc:{ko.SERVICE_PORT}"
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
        self._gateways_seen.add(key)

    def _route(self, agent: str, route: _Route, dry_run: bool = False) -> Any:
        settings = self.settings_of(agent)
        self._check_gateway(agent, settings)
        obj = ko.route(self.namespace, agent, route.model, route.weights, route.shadow, settings)
        return self._apply(agent, obj, dry_run)

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        old = self._routes.get(agent)
        route = _Route(model, dict(weights), old.shadow if old else None)
        self._route(agent, route)
        self._routes[agent] = route

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        old = self._routes.get(agent)
        if old is None:
            raise PermanentBackendError(
                f"agent {agent}: no HTTPRoute to mirror on; set its traffic first",
                target=f"HTTPRoute {self.namespace}/{ko.route_name(agent)}",
            )
        route = _Route(old.model, old.weights, shadow)
        self._route(agent, route)
        self._routes[agent] = route

    def remove_route(self, agent: str) -> None:
        self._delete(agent, "HTTPRoute", ko.route_name(agent))
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
                after = c.after or {}
                if c.kind is Kind.TRAFFIC and c.action is not Action.DELETE:
                    if any(w.get("version") is None for w in after["weights"]):
                        out.append(self._unknown(c, "HTTPRoute", ko.route_name(c.agent)))
                        continue
                    route.weights = {int(w["version"]): int(w["percent"]) for w in after["weights"]}
                elif c.kind is Kind.SHADOW and c.action is not Action.DELETE:
                    if after.get("version") is None:
                        out.append(self._unknown(c, "HTTPRoute", ko.route_name(c.agent)))
                        continue
                    route.shadow = (int(after["version"]), int(after["percent"]))
                elif c.kind is Kind.SHADOW:
                    route.shadow = None
                else:  # the route goes
                    out.append(self._preview_delete(c, "HTTPRoute", ko.route_name(c.agent)))
                    routes.pop(c.agent, None)
                    continue
                routes[c.agent] = route
        for agent, route in routes.items():
            name = ko.route_name(agent)
            before = self._live.get(("HTTPRoute", name))
            after_obj = self._route(agent, route, dry_run=True)
            out.append(
                ObjectPreview(
                    agent,
                    "HTTPRoute",
                    name,
                    self.namespace,
                    "update" if before else "create",
                    before,
                    after_obj,
                )
            )
        return out

    def _unknown(self, c: Change, kind: str, name: str) -> ObjectPreview:
        self._check_gateway(c.agent, self.settings_of(c.agent))
        return ObjectPreview(
            c.agent,
            kind,
            name,
            self.namespace,
            c.action.value,
            self._live.get((kind, name)),
            None,
            note=_PENDING,
        )

    def _preview_delete(self, c: Change, kind: str, name: str) -> ObjectPreview:
        self._delete(c.agent, kind, name, dry_run=True)
        return ObjectPreview(
            c.agent, kind, name, self.namespace, "delete", self._live.get((kind, name)), None
        )

    def _preview_served(self, c: Change) -> list[ObjectPreview]:
        if c.action is Action.DELETE:
            number = int((c.before or {})["version"])
            name = ko.object_name(c.agent, number)
            return [self._preview_delete(c, k, name) for k in ("Deployment", "Service")]
        after = c.after or {}
        pending = after.get("version") is None
        # A version this apply registers has no number yet: dry-run it as v0, which checks the
        # namespace, RBAC and the API server's validation all the same.
        number = 0 if pending else int(after["version"])
        settings = self.settings_of(c.agent)
        out = []
        for obj in (
            ko.deployment(self.namespace, c.agent, c.model, number, settings),
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


def _managed(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries agentctl's ``managed-by`` label."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(ko.MANAGED_BY[0]) == ko.MANAGED_BY[1])


def _outdated(live: Mapping[str, Any], want: Mapping[str, Any], kind: str) -> str:
    """Why a live object is not what agentctl would write now ("" if it is)."""
    have = (live.get("metadata", {}).get("annotations") or {}).get(ko.DIGEST_ANNOTATION)
    if have != want["metadata"]["annotations"][ko.DIGEST_ANNOTATION]:
        return f"its {kind} differs from what the manifest asks for"
    if kind == "Deployment":
        spec, want_spec = live.get("spec", {}), want["spec"]
        if spec.get("replicas") != want_spec["replicas"]:
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
