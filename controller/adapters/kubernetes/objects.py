"""The objects agentctl manages in one namespace: as last read or written, and the writes that
the serving backend and both traffic routers share.

Every write is a server-side apply with one field manager (``agentctl``, forcing conflicts: the
manifests are the source of truth) of an object rendered by :mod:`controller.core.plan.kube_objects`.
An object without agentctl's ``managed-by`` label, or another agent's, is never written or
deleted, even when its name is the one agentctl would use (a clear error instead). A delete
carries the uid read as a precondition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.adapters.kubernetes.api import Forbidden, KubeApi, NotFound
from controller.core.errors import BackendError, NotReady, PermanentBackendError
from controller.core.plan import kube_objects as ko
from controller.ports import Clock, SystemClock

__all__ = ["PENDING", "Cluster", "Route", "managed"]

#: What a preview says of an object that names a version this apply registers.
PENDING = "names the version this apply registers (its number is known after apply; dry-run as v0)"

_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
}
_GATEWAYS = "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways/{name}"
#: The HTTPRoute CRD: whether its rules have sessionPersistence (Gateway API's experimental
#: channel) decides whether affinity can be written.
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
_CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + HTTPROUTE_CRD


@dataclass
class Route:
    """An agent's route as one route object carries it (or as it was last written): its split,
    its shadow, its header routes (header, value, version) and its affinity ((header, cookie);
    None: off). Only an HTTPRoute carries the last two."""

    model: str
    weights: dict[int, int]
    shadow: tuple[int, int] | None = None
    headers: tuple[tuple[str, str, int], ...] = ()
    affinity: tuple[str | None, str | None] | None = None


def managed(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries agentctl's ``managed-by`` label."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(ko.MANAGED_BY[0]) == ko.MANAGED_BY[1])


class Cluster:
    """One namespace's objects that agentctl manages, as last read (:meth:`remember`) or
    written. ``routes`` holds, per route kind (``HTTPRoute``, ``Service``), each agent's split as
    that kind of object carries it. ``gateway_api`` says whether the cluster serves the Gateway
    API (None until observed); :meth:`session_persistence` whether its HTTPRoutes can carry
    affinity (read once per observation, when first asked)."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        *,
        wait: float = 0.0,
        poll: float = 1.0,
        clock: Clock | None = None,
        written_by: str = "",
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.written_by = written_by  # ``agentctl <version>``: annotated on what it writes
        self.wait = wait
        self.poll = poll
        self.clock = clock or SystemClock()
        self.live: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, name) -> ours, as read
        self.routes: dict[str, dict[str, Route]] = {"HTTPRoute": {}, "Service": {}}
        self.gateway_api: bool | None = None
        self.gateways_seen: set[tuple[str, str]] = set()
        self.persistence: tuple[bool, str] | None = None  # session_persistence(), once read

    def forget(self) -> None:
        """What is read once per observation: read again after the next."""
        self.gateways_seen = set()  # a Gateway may have gone since the last observation
        self.persistence = None  # the CRDs may have been upgraded

    def session_persistence(self) -> tuple[bool, str]:
        """Whether the cluster's HTTPRoute CRD has ``sessionPersistence`` in its rules (its
        ``v1`` schema), and if not, why: one GET of the CRD per observation. A CRD agentctl may
        not read (RBAC) counts as without it."""
        if self.persistence is not None:
            return self.persistence
        try:
            crd = self.api.request("GET", _CRD)
        except NotFound:
            found = (False, "the cluster has no HTTPRoute CRD")
        except Forbidden:
            found = (
                False,
                f"agentctl may not read the CustomResourceDefinition {HTTPROUTE_CRD} (RBAC: get "
                "customresourcedefinitions in apiextensions.k8s.io) to know whether HTTPRoutes "
                "have sessionPersistence",
            )
        else:
            found = (
                (True, "")
                if _has_persistence(crd)
                else (
                    False,
                    "the cluster's HTTPRoute CRD has no sessionPersistence (Gateway API's standard "
                    "channel; it is in the experimental channel)",
                )
            )
        self.persistence = found
        return found

    # -- reading -------------------------------------------------------------------------------

    def path(self, kind: str, name: str | None = None) -> str:
        base = _PATHS[kind].format(ns=self.namespace)
        return base if name is None else f"{base}/{name}"

    def list(self, kind: str) -> list[dict[str, Any]]:
        """Every object of ``kind`` with agentctl's label: one LIST."""
        answer = self.api.request("GET", self.path(kind), [("labelSelector", ko.SELECTOR)])
        items: list[dict[str, Any]] = answer.get("items", [])
        return items

    def get(self, agent: str, kind: str, name: str) -> dict[str, Any] | None:
        """One object as the API server has it now; None if it does not exist."""
        try:
            found: dict[str, Any] = self.api.request("GET", self.path(kind, name))
        except NotFound:
            return None
        except BackendError as exc:
            raise self.naming(exc, agent, kind, name) from exc
        return found

    def versions(self, agent: str) -> dict[int, dict[str, Any]]:
        """The agent's live Deployments by version."""
        out = {}
        for (kind, _), obj in self.live.items():
            labels = obj["metadata"].get("labels") or {}
            number = labels.get(ko.VERSION_LABEL, "")
            if kind == "Deployment" and labels.get(ko.AGENT_LABEL) == agent and number.isdigit():
                out[int(number)] = obj
        return out

    def naming(self, exc: BackendError, agent: str, kind: str, name: str) -> BackendError:
        """The same error, its message naming the agent and the object."""
        return type(exc)(
            f"agent {agent}: {kind} {self.namespace}/{name}: {exc}",
            operation=exc.operation,
            target=f"{kind} {self.namespace}/{name}",
        )

    # -- writing -------------------------------------------------------------------------------

    def guard(self, agent: str, kind: str, name: str) -> None:
        """Refuse to write an object that exists without agentctl's labels (or is another
        agent's): a name collision, never a takeover."""
        live = self.live.get((kind, name)) or self.get(agent, kind, name)
        if live is None:
            return
        labels = live.get("metadata", {}).get("labels") or {}
        if not managed(live):
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

    def apply(
        self, agent: str, obj: Mapping[str, Any], dry_run: bool = False, guard: bool = True
    ) -> Any:
        """Server-side apply ``obj`` (a dry run: nothing is changed); return what the API server
        answered."""
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        if guard:
            self.guard(agent, kind, name)
        # Strict: a field the API server does not know (an older CRD) is an error, not dropped.
        query = [
            ("fieldManager", ko.FIELD_MANAGER),
            ("force", "true"),
            ("fieldValidation", "Strict"),
        ]
        if dry_run:
            query.append(("dryRun", "All"))
        if self.written_by:
            obj = ko.written(obj, self.written_by)
        try:
            result = self.api.request(
                "PATCH", self.path(kind, name), query, dict(obj), "application/apply-patch+yaml"
            )
        except BackendError as exc:
            raise self.naming(exc, agent, kind, name) from exc
        if not dry_run:
            self.live[(kind, name)] = result
        return result

    def delete(self, agent: str, kind: str, name: str, dry_run: bool = False) -> None:
        """Delete one of the agent's objects; succeed if it is gone; never one that is not ours."""
        live = self.live.get((kind, name)) or self.get(agent, kind, name)
        if live is None:
            return
        if not managed(live) or (live["metadata"].get("labels") or {}).get(ko.AGENT_LABEL) != agent:
            return  # not ours, or another agent's: never deleted
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "preconditions": {"uid": live["metadata"]["uid"]},
        }
        query = [("dryRun", "All")] if dry_run else []
        try:
            self.api.request("DELETE", self.path(kind, name), query, body)
        except NotFound:
            pass
        except BackendError as exc:
            raise self.naming(exc, agent, kind, name) from exc
        if not dry_run:
            self.live.pop((kind, name), None)

    def wait_available(self, agent: str, version: int) -> None:
        """Wait up to ``wait`` seconds for a version's Deployment to be Available; then raise
        :class:`~controller.core.errors.NotReady`."""
        name = ko.object_name(agent, version)
        deadline = self.clock.monotonic() + self.wait
        while True:
            try:
                live = self.api.request("GET", self.path("Deployment", name))
            except BackendError as exc:
                raise self.naming(exc, agent, "Deployment", name) from exc
            self.live[("Deployment", name)] = live
            ready, why = ko.availability(live)
            if ready:
                return
            if self.clock.monotonic() >= deadline:
                raise NotReady(agent, version, why)
            self.clock.sleep(self.poll)

    def check_gateway(self, agent: str, settings: ko.Settings) -> None:
        """The agent's Gateway exists (once per observation), and the cluster serves the
        Gateway API at all; else a clear error naming agent and HTTPRoute."""
        target = f"HTTPRoute {self.namespace}/{ko.route_name(agent)}"
        if self.gateway_api is False:
            raise NotFound(
                f"agent {agent}: {target}: the cluster serves no Gateway API "
                "(gateway.networking.k8s.io/v1); install its CRDs",
                target=target,
            )
        gw_ns = settings.gateway.namespace or self.namespace
        key = (gw_ns, settings.gateway.name)
        if key in self.gateways_seen:
            return
        try:
            self.api.request("GET", _GATEWAYS.format(ns=gw_ns, name=settings.gateway.name))
        except NotFound as exc:
            raise NotFound(
                f"agent {agent}: {target}: Gateway {gw_ns}/{settings.gateway.name} does not "
                "exist (spec.serving.kubernetes.gateway)",
                target=target,
            ) from exc
        except BackendError as exc:
            raise self.naming(exc, agent, "HTTPRoute", ko.route_name(agent)) from exc
        self.gateways_seen.add(key)


def _has_persistence(crd: Mapping[str, Any]) -> bool:
    """Whether a CRD's ``v1`` schema has ``spec.rules[].sessionPersistence``."""
    for version in crd.get("spec", {}).get("versions") or []:
        if version.get("name") != "v1":
            continue
        schema = version.get("schema", {}).get("openAPIV3Schema", {})
        rule = (
            schema.get("properties", {})
            .get("spec", {})
            .get("properties", {})
            .get("rules", {})
            .get("items", {})
        )
        return "sessionPersistence" in (rule.get("properties") or {})
    return False
