"""Header routes and affinity on Kubernetes, with an in-memory API server: what the routers
write to the HTTPRoute, what ServiceRouter refuses, when the HTTPRoute CRD is read, and that a
second plan after apply is empty (the real API server and CRDs: tests/integration/test_kubernetes.py).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.kubernetes.api import Forbidden, NotFound
from controller.adapters.kubernetes.serving import KubernetesServing
from controller.core.errors import InvalidInput, PermanentBackendError
from controller.core.plan import kube_objects as ko
from controller.core.plan.changes import Kind
from controller.engine.loader import load
from controller.engine.retry import RetryPolicy
from tests.support.engine import reconcile
from tests.support.fake_registry import FakeRegistry
from tests.support.manifests import GOOD, write_repo

NS = "prod"
CRD_PATH = (
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/httproutes.gateway.networking.k8s.io"
)
NO_WAIT = RetryPolicy(attempts=1, initial=0.0, maximum=0.0, sleep=lambda s: None)


def crd(*rule_fields: str) -> dict[str, Any]:
    """An HTTPRoute CRD whose v1 rules have ``rule_fields``."""
    rule = {"type": "object", "properties": {f: {"type": "object"} for f in rule_fields}}
    spec = {"properties": {"rules": {"type": "array", "items": rule}}}
    return {
        "spec": {
            "versions": [
                {"name": "v1beta1", "schema": {"openAPIV3Schema": {"properties": {}}}},
                {"name": "v1", "schema": {"openAPIV3Schema": {"properties": {"spec": spec}}}},
            ]
        }
    }


STANDARD = crd("matches", "filters", "backendRefs")
EXPERIMENTAL = crd("matches", "filters", "backendRefs", "sessionPersistence")

_KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "httproutes": "HTTPRoute",
    "gateways": "Gateway",
}


class FakeApi:
    """Enough of the Kubernetes API for KubernetesServing: namespaced objects by (kind, name),
    server-side apply (dry runs return the object, store nothing), LIST, GET, DELETE; every
    Deployment is Available as soon as written. ``crd`` is what a GET of the HTTPRoute CRD
    answers (an exception is raised)."""

    def __init__(self, crd: Any = STANDARD) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {("Gateway", "agentctl"): {}}
        self.crd = crd
        self.requests = 0
        self.log: list[tuple[str, str]] = []
        self.uids = itertools.count(1)

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        self.requests += 1
        self.log.append((method, path))
        if path == CRD_PATH:
            if isinstance(self.crd, Exception):
                raise self.crd
            return copy.deepcopy(self.crd)
        if path == f"/api/v1/namespaces/{NS}":
            return {"metadata": {"name": NS}}
        parts = path.split(f"/namespaces/{NS}/", 1)[1].split("/")
        kind = _KINDS[parts[0]]
        name = parts[1] if len(parts) > 1 else None
        if name is None:
            items = [copy.deepcopy(o) for (k, _), o in sorted(self.objects.items()) if k == kind]
            return {"items": items}
        key = (kind, name)
        if method == "GET":
            if key not in self.objects:
                raise NotFound(f"{kind} {name} not found")
            return copy.deepcopy(self.objects[key])
        if method == "DELETE":
            if ("dryRun", "All") not in query:
                self.objects.pop(key, None)
            return {}
        assert method == "PATCH"
        obj = copy.deepcopy(body)
        old = self.objects.get(key)
        obj["metadata"]["uid"] = old["metadata"]["uid"] if old else f"uid-{next(self.uids)}"
        if kind == "Deployment":
            n = obj["spec"]["replicas"]
            obj["metadata"]["generation"] = 1
            obj["status"] = {
                "observedGeneration": 1,
                "replicas": n,
                "updatedReplicas": n,
                "availableReplicas": n,
                "conditions": [{"type": "Available", "status": "True"}],
            }
        if ("dryRun", "All") not in query:
            self.objects[key] = obj
        return copy.deepcopy(obj)

    def route(self, agent: str = "bot") -> dict[str, Any]:
        return self.objects[("HTTPRoute", agent)]


def serving(api: FakeApi, router: str = "gateway") -> KubernetesServing:
    s = ko.Settings(router=router)
    return KubernetesServing(api, NS, lambda agent: s)  # type: ignore[arg-type]


def routed(api: FakeApi, router: str = "gateway") -> KubernetesServing:
    """Agent bot with v1 and v2 served, 80/20, read back by an observation."""
    srv = serving(api, router)
    srv.observe()
    for v in (1, 2):
        srv.start_version("bot", "bot", v)
    srv.set_weights("bot", "bot", {1: 80, 2: 20})
    srv.observe()
    return srv


HEADERS = (("x-agent-version", "canary", 2), ("x-tester", "alice", 1))


def header_rules(api: FakeApi) -> list[tuple[str, str, str]]:
    return header_rules_of(api.route())


def header_rules_of(route: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for rule in route["spec"]["rules"]:
        for match in rule["matches"]:
            for h in match.get("headers", []):
                out.append((h["name"], h["value"], rule["backendRefs"][0]["name"]))
    return out


def test_set_routing_writes_header_rules_that_weights_and_mirror_keep() -> None:
    api = FakeApi(EXPERIMENTAL)
    srv = routed(api)
    srv.set_routing("bot", HEADERS, ("x-session-id", None))
    assert header_rules(api) == [
        ("x-agent-version", "canary", "bot-v2"),
        ("x-tester", "alice", "bot-v1"),
    ]
    default = api.route()["spec"]["rules"][-1]
    assert default["sessionPersistence"] == {"sessionName": "x-session-id", "type": "Header"}
    srv.set_weights("bot", "bot", {1: 50, 2: 50})
    srv.set_mirror("bot", (2, 10))
    assert len(header_rules(api)) == 2
    assert "sessionPersistence" in api.route()["spec"]["rules"][-1]
    # verify_weight reads the default rule, whatever header rules come before it
    assert srv.verify_weight("bot", {1: 50, 2: 50})
    assert not srv.verify_weight("bot", {1: 80, 2: 20})
    # read back by the next observation
    agent = srv.observe().agents["bot"]
    assert (agent.headers, agent.affinity, agent.shadow) == (
        HEADERS,
        ("x-session-id", None),
        (2, 10),
    )
    assert agent.weights == {1: 50, 2: 50}
    srv.set_routing("bot", (), None)
    assert header_rules(api) == [] and len(api.route()["spec"]["rules"]) == 1
    assert ko.AFFINITY_ANNOTATION not in api.route()["metadata"]["annotations"]


def test_without_the_crd_field_affinity_is_recorded_but_not_written() -> None:
    api = FakeApi(STANDARD)
    srv = routed(api)
    srv.set_routing("bot", (), ("x-session-id", None))
    route = api.route()
    assert "sessionPersistence" not in route["spec"]["rules"][-1]
    assert route["metadata"]["annotations"][ko.AFFINITY_ANNOTATION] == "header=x-session-id,cookie="
    observed = srv.observe()
    assert observed.agents["bot"].affinity == ("x-session-id", None)
    assert observed.cluster is not None and observed.cluster.session_persistence is False


@pytest.mark.parametrize(
    ("answer", "supported", "why"),
    [
        (EXPERIMENTAL, True, ""),
        (STANDARD, False, "the cluster's HTTPRoute CRD has no sessionPersistence"),
        (Forbidden("HTTP 403"), False, "agentctl may not read the CustomResourceDefinition"),
        (NotFound("HTTP 404"), False, "the cluster has no HTTPRoute CRD"),
    ],
)
def test_the_crd_is_read_once_per_observation_and_only_for_affinity(
    answer: Any, supported: bool, why: str
) -> None:
    api = FakeApi(answer)
    srv = routed(api)
    assert ("GET", CRD_PATH) not in api.log, "no affinity: the CRD is not read"
    srv.set_routing("bot", HEADERS, None)
    assert ("GET", CRD_PATH) not in api.log
    srv.set_routing("bot", HEADERS, (None, "sid"))
    srv.set_weights("bot", "bot", {1: 100, 2: 0})
    assert srv.cluster.session_persistence()[0] is supported
    assert why in srv.cluster.session_persistence()[1]
    assert api.log.count(("GET", CRD_PATH)) == 1
    srv.observe()  # an HTTPRoute asks for affinity: read again, once
    srv.set_weights("bot", "bot", {1: 90, 2: 10})
    assert api.log.count(("GET", CRD_PATH)) == 2
    sticky = api.route()["spec"]["rules"][-1].get("sessionPersistence")
    assert sticky == ({"sessionName": "sid", "type": "Cookie"} if supported else None)


def test_set_routing_before_traffic_is_an_error_unless_it_clears() -> None:
    srv = serving(FakeApi())
    srv.observe()
    srv.set_routing("bot", (), None)  # nothing to clear
    with pytest.raises(PermanentBackendError, match="agent bot: no HTTPRoute to route headers on"):
        srv.set_routing("bot", HEADERS, None)


def test_router_service_refuses_header_routes_and_affinity() -> None:
    api = FakeApi()
    srv = routed(api, router="service")
    srv.set_routing("bot", (), None)  # a no-op
    for headers, affinity in ((HEADERS, None), ((), ("x-session-id", None))):
        with pytest.raises(PermanentBackendError) as info:
            srv.set_routing("bot", headers, affinity)
        assert str(info.value) == (
            f"agent bot: Service {NS}/bot-svc: its router is service, and a Service cannot route "
            "by header nor keep a conversation on one version: spec.serving.routes, "
            "spec.serving.affinity and spec.rollout.headerRoute need router gateway (HTTPRoute "
            "header matches and sessionPersistence)"
        )
    assert ("HTTPRoute", "bot") not in api.objects


# -- through reconcile: plan, apply, a second plan -------------------------------------------

CANARY = GOOD.replace(
    """  versions: [current]
  aliases:
    champion: current
  serving:
    traffic:
      - alias: champion
        percent: 100
""",
    """  versions: [1, current]
  aliases:
    champion: 1
    challenger: current
  serving:
    traffic:
      - alias: champion
        percent: 80
      - alias: challenger
        percent: 20
    shadow:
      alias: challenger
      percent: 10
    routes:
      - {header: X-Agent-Version, value: canary, alias: challenger}
      - {header: x-tester, value: alice, version: 1}
    affinity:
      header: x-session-id
""",
)


def run(root: Path, reg: FakeRegistry, api: FakeApi, apply: bool = True) -> Any:
    desired, _ = load(root)
    srv = KubernetesServing(api, NS, ko.settings_of(desired))  # type: ignore[arg-type]
    return reconcile(desired, reg, apply=apply, policy=NO_WAIT, serving=srv)


@pytest.mark.parametrize("crd_answer", [EXPERIMENTAL, STANDARD], ids=["experimental", "standard"])
def test_routes_and_affinity_apply_and_a_second_plan_is_empty(
    tmp_path: Path, crd_answer: dict[str, Any]
) -> None:
    api = FakeApi(crd_answer)
    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    run(root, reg, api)
    assert run(root, reg, api, apply=False).plan.changes == ()

    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(CANARY)
    planned = run(root, reg, api, apply=False)
    assert Kind.ROUTES in {c.kind for c in planned.plan.changes}
    [preview] = [p for p in planned.previews if p.kind == "HTTPRoute"]
    # said once, though traffic, shadow and routes name the version; with what affinity gets
    assert preview.note == (
        PENDING_NOTE if crd_answer is EXPERIMENTAL else f"{PENDING_NOTE}; {NOT_ENFORCED}"
    )
    run(root, reg, api)
    assert header_rules(api) == [
        ("x-agent-version", "canary", "bot-v2"),
        ("x-tester", "alice", "bot-v1"),
    ]
    sticky = api.route()["spec"]["rules"][-1].get("sessionPersistence")
    assert sticky == (
        {"sessionName": "x-session-id", "type": "Header"} if crd_answer is EXPERIMENTAL else None
    )
    assert run(root, reg, api, apply=False).plan.changes == ()

    # A hand edit of a header rule is drift, put back by the next apply.
    api.route()["spec"]["rules"][1]["matches"][0]["headers"][0]["value"] = "mallory"
    drift = run(root, reg, api, apply=False)
    assert Kind.ROUTES in {c.kind for c in drift.plan.changes}
    [preview] = [p for p in drift.previews if p.kind == "HTTPRoute"]
    assert preview.after is not None
    assert header_rules_of(preview.after)[1] == ("x-tester", "alice", "bot-v1")
    if crd_answer is STANDARD:
        assert preview.note == NOT_ENFORCED
    else:
        assert preview.note == ""
    run(root, reg, api)
    assert header_rules(api)[1] == ("x-tester", "alice", "bot-v1")
    assert run(root, reg, api, apply=False).plan.changes == ()


#: The route names the version this apply registers: not dry-run (no note on affinity yet).
PENDING_NOTE = (
    "names the version this apply registers (its number is known after apply; dry-run as v0)"
)
NOT_ENFORCED = (
    "affinity not enforced: the cluster's HTTPRoute CRD has no sessionPersistence (Gateway API's "
    "standard channel; it is in the experimental channel); the HTTPRoute carries no "
    "sessionPersistence and requests are split by weight"
)


def test_header_routes_under_router_service_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    api = FakeApi()
    root = write_repo(tmp_path, GOOD + "    kubernetes:\n      router: service\n")
    reg = FakeRegistry()
    run(root, reg, api)
    routes = "    routes:\n      - {header: x-tester, value: alice, alias: champion}\n"
    (root / "bot.yaml").write_text(GOOD + routes + "    kubernetes:\n      router: service\n")
    before = copy.deepcopy(api.objects)
    with pytest.raises(InvalidInput) as info:  # at load: router service is the manifest's
        run(root, reg, api, apply=False)
    assert "cannot express header routes" in str(info.value.diagnostics.errors[0])
    assert api.objects == before
