"""Serving on a real Kubernetes API server (kube-apiserver + etcd, envtest style, with Gateway
API's own standard CRDs, so that their schema and CEL rules check what agentctl writes).

No kubelet or controller-manager runs: a Deployment becomes Available when a test writes its
status, as a Deployment controller would. Writes are counted by the API server itself (its
``apiserver_request_total`` metric), status writes left out.

The CLI tests run the installed ``agentctl`` against the real MLflow server too; the others drive
:class:`KubernetesServing` through ``reconcile`` with the in-memory registry, since what they test
is the cluster side.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.kubernetes.serving import KubernetesServing, connect
from controller.core.errors import BackendError, NotReady, StalePlan, TemporaryBackendError
from controller.core.plan.kube_objects import settings_of
from controller.core.plan.kube_outdated import mark_outdated
from controller.core.plan.saved import SavedPlan
from controller.engine.loader import load
from controller.engine.retry import RetryPolicy
from controller.engine.saved import save
from tests.support.controller import repo_with
from tests.support.engine import apply_saved, reconcile
from tests.support.fake_registry import FakeRegistry
from tests.support.kube_apiserver import LIMITED_TOKEN, ApiServer, api_server
from tests.support.manifests import DEFAULTS, GOOD, write_repo

pytestmark = pytest.mark.integration

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)
_names = itertools.count(1)


@pytest.fixture
def ns(kube: ApiServer) -> str:
    """A fresh namespace with a Gateway named ``agentctl`` in it (agentctl's default)."""
    name = f"t{next(_names)}"
    kube.create_namespace(name)
    return name


def writes(kube: ApiServer) -> dict[tuple[str, str, str], int]:
    """Writes so far to the kinds agentctl writes; status writes (the tests' own) left out, and
    so are the API server's own (leases, endpoints) and the tests' RBAC set-up."""
    return {
        k: v
        for k, v in kube.writes().items()
        if k[1] in ("deployments", "services", "httproutes") and k[2] != "status"
    }


def serving(kube: ApiServer, ns: str, root: Path, token: str | None = None) -> KubernetesServing:
    kubeconfig = kube.kubeconfig(token) if token else kube.kubeconfig()
    api, _ = connect(kubeconfig)
    desired, _ = load(root)
    return KubernetesServing(api, ns, settings_of(desired), wait=0.0)


def run(root: Path, reg: FakeRegistry, srv: KubernetesServing, apply: bool = True) -> Any:
    desired, _ = load(root)
    return reconcile(desired, reg, apply=apply, policy=NO_WAIT, serving=srv)


# -- through the CLI, with the real MLflow server ---------------------------------------------

SUPPORT_BOT = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: support-bot
spec:
  source:
    code: ../agents/support_bot/agent.py
    config: ../agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
  serving:
    traffic:
      - alias: champion
        percent: 100
    kubernetes:
      image: registry.example/agents/support-bot:1
      replicas: 2
      mlflow:
        secret: mlflow-credentials
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return repo_with(tmp_path, SUPPORT_BOT, "support-bot.yaml")


def test_cli_apply_waits_for_availability_then_routes_and_a_second_apply_writes_nothing(
    kube: ApiServer, ns: str, repo: Path, agentctl: Any
) -> None:
    k8s = ["--target", "kubernetes", "--kubeconfig", kube.kubeconfig(), "--namespace", ns]
    manifests = str(repo / "manifests")

    first = agentctl("apply", manifests, *k8s, "--ready-timeout", "0")
    assert first.code == 0, first.err
    assert "waiting for support-bot v1 to become available" in first.out
    deployment = kube.objects(ns, "Deployment")["support-bot-v1"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/agents/support-bot:1"
    assert "models:/support-bot/1" in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "agentctl"
    assert set(kube.objects(ns, "Service")) == {"support-bot-v1"}
    assert kube.objects(ns, "HTTPRoute") == {}, "no traffic to a Deployment not Available"

    waiting = agentctl("plan", manifests, *k8s, "--detailed-exitcode")
    assert waiting.code == 2, waiting.err
    assert (
        "waiting for support-bot v1 to become available "
        "(its controller has not yet observed generation 1)"
    ) in waiting.out

    kube.mark_available(ns)
    second = agentctl("apply", manifests, *k8s, "--ready-timeout", "0")
    assert second.code == 0, second.err
    route = kube.objects(ns, "HTTPRoute")["support-bot"]
    rule = route["spec"]["rules"][0]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "support-bot-v1", "port": 80, "weight": 100}
    ]
    assert route["spec"]["parentRefs"][0]["name"] == "agentctl"

    before = writes(kube)
    again = agentctl("apply", manifests, *k8s, "--ready-timeout", "0")
    assert again.code == 0, again.err
    assert "No changes" in again.out
    assert writes(kube) == before, "a second apply issues no API writes"
    clean = agentctl("plan", manifests, *k8s, "--detailed-exitcode")
    assert clean.code == 0, clean.out + clean.err

    # A change of settings is planned as a server-side dry-run diff of the Deployment.
    (repo / "manifests" / "support-bot.yaml").write_text(
        SUPPORT_BOT.replace("replicas: 2", "replicas: 3")
    )
    diff = agentctl("plan", manifests, *k8s, "--detailed-exitcode")
    assert diff.code == 2, diff.err
    assert f"dry-run Deployment {ns}/support-bot-v1" in diff.out
    assert '-    "replicas": 2,' in diff.out and '+    "replicas": 3,' in diff.out
    assert writes(kube) == before, "plan writes nothing (dry runs are not writes)"


def test_cli_errors_name_the_agent_and_the_object_and_apply_nothing(
    kube: ApiServer, ns: str, repo: Path, agentctl: Any, client: Any
) -> None:
    k8s = ["--target", "kubernetes", "--kubeconfig", kube.kubeconfig(), "--namespace", ns]
    manifests = str(repo / "manifests")
    before = writes(kube)

    missing = agentctl("apply", manifests, *k8s[:-1], "no-such-namespace")
    assert missing.code == 1
    assert "namespace 'no-such-namespace' does not exist" in missing.err

    (repo / "manifests" / "support-bot.yaml").write_text(
        SUPPORT_BOT.replace("    kubernetes:\n", "    kubernetes:\n      gateway: {name: gone}\n")
    )
    no_gateway = agentctl("apply", manifests, *k8s)
    assert no_gateway.code == 1
    assert f"agent support-bot: HTTPRoute {ns}/support-bot: Gateway {ns}/gone does not exist" in (
        no_gateway.err
    )

    limited = ["--kubeconfig", kube.kubeconfig(LIMITED_TOKEN), "--namespace", ns]
    _grant(kube, ns, ["get", "list"])
    (repo / "manifests" / "support-bot.yaml").write_text(SUPPORT_BOT)
    forbidden = agentctl("apply", manifests, "--target", "kubernetes", *limited)
    assert forbidden.code == 1
    assert f"agent support-bot: Deployment {ns}/support-bot-v" in forbidden.err
    assert "forbidden" in forbidden.err

    assert writes(kube) == before, "nothing was written to the cluster"
    assert client.search_registered_models() == [], "nor to the registry"

    down = ["--kubeconfig", _dead_kubeconfig(kube), "--namespace", ns]
    unreachable = agentctl(
        "plan", manifests, "--target", "kubernetes", *down,
        env={"AGENTCTL_RETRY_ATTEMPTS": "2", "AGENTCTL_RETRY_DEADLINE": "3"},
    )  # fmt: skip
    assert unreachable.code == 1
    assert "did not answer" in unreachable.err and "Gave up after retrying" in unreachable.err


def _grant(kube: ApiServer, ns: str, verbs: list[str]) -> None:
    """Let the ``limited`` user do only ``verbs`` to agentctl's kinds in ``ns`` (and read the
    namespace itself)."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    user = [{"kind": "User", "name": "limited", "apiGroup": "rbac.authorization.k8s.io"}]
    kube.request(
        "POST",
        f"{rbac}/namespaces/{ns}/roles",
        {
            "metadata": {"name": "limited"},
            "rules": [
                {
                    "apiGroups": ["", "apps", "gateway.networking.k8s.io"],
                    "resources": ["deployments", "services", "httproutes", "gateways"],
                    "verbs": verbs,
                }
            ],
        },
    )
    kube.request(
        "POST",
        f"{rbac}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "limited"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "limited"},
            "subjects": user,
        },
    )
    kube.request(
        "POST",
        f"{rbac}/clusterroles",
        {
            "metadata": {"name": f"limited-{ns}"},
            "rules": [
                {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [ns],
                 "verbs": ["get"]}
            ],
        },
    )  # fmt: skip
    kube.request(
        "POST",
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": f"limited-{ns}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"limited-{ns}",
            },
            "subjects": user,
        },
    )


def _dead_kubeconfig(kube: ApiServer) -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = Path(kube.kubeconfig())
    dead = path.with_name("kubeconfig-dead")
    dead.write_text(path.read_text().replace(kube.url, f"https://127.0.0.1:{port}"))
    return str(dead)


# -- the cluster side, through reconcile --------------------------------------------------------

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
""",
)


def _routed_bot(kube: ApiServer, ns: str, tmp_path: Path) -> tuple[Path, FakeRegistry]:
    """Agent ``bot`` (GOOD) served: v1 started, made Available, then routed."""
    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    run(root, reg, serving(kube, ns, root))
    kube.mark_available(ns)
    run(root, reg, serving(kube, ns, root))
    assert set(kube.objects(ns, "HTTPRoute")) == {"bot"}
    return root, reg


def test_a_canary_is_a_weighted_route_with_a_mirror_and_prune_removes_what_is_not_declared(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    root, reg = _routed_bot(kube, ns, tmp_path)

    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(CANARY)
    waiting = run(root, reg, serving(kube, ns, root))
    assert waiting.changeset.waiting
    rule = kube.objects(ns, "HTTPRoute")["bot"]["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("bot-v1", 100)]

    kube.mark_available(ns)
    done = run(root, reg, serving(kube, ns, root))
    assert not done.changeset.waiting
    rule = kube.objects(ns, "HTTPRoute")["bot"]["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [
        ("bot-v1", 80),
        ("bot-v2", 20),
    ]
    mirror = [f for f in rule["filters"] if f["type"] == "RequestMirror"]
    assert mirror == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "bot-v2", "port": 80},
                "percent": 10,
            },
        }
    ]
    before = writes(kube)
    assert run(root, reg, serving(kube, ns, root)).plan.changes == ()
    assert writes(kube) == before

    # The shadow goes: the mirror filter goes with it (server-side apply drops what agentctl
    # no longer sets); traffic returns to v1, and v2 stops only after traffic left it.
    (root / "bot.yaml").write_text(GOOD.replace("champion: current", "champion: 1").replace(
        "versions: [current]", "versions: [1]"))  # fmt: skip
    run(root, reg, serving(kube, ns, root))
    rule = kube.objects(ns, "HTTPRoute")["bot"]["spec"]["rules"][0]
    assert [f["type"] for f in rule["filters"]] == ["URLRewrite"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("bot-v1", 100)]
    assert set(kube.objects(ns, "Deployment")) == {"bot-v1"}
    assert set(kube.objects(ns, "Service")) == {"bot-v1"}


def test_objects_without_agentctl_s_labels_are_never_touched(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    foreign = {
        "metadata": {"name": "bot-v1", "labels": {"team": "someone-else"}},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "theirs:1"}]},
            },
        },
    }
    kube.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", foreign)
    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    desired, _ = load(root)
    reconcile(desired, reg, apply=True, policy=NO_WAIT)  # registry only: v1 exists
    before = writes(kube)
    with pytest.raises(BackendError) as info:
        run(root, reg, serving(kube, ns, root), apply=False)
    assert f"agent bot: Deployment {ns}/bot-v1 exists and is not managed by agentctl" in str(
        info.value
    )
    assert writes(kube) == before
    theirs = kube.objects(ns, "Deployment")["bot-v1"]
    assert theirs["spec"]["template"]["spec"]["containers"][0]["image"] == "theirs:1"
    assert "agentctl.io/agent" not in theirs["metadata"]["labels"]


def test_start_version_waits_for_availability_up_to_its_limit(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    root = write_repo(tmp_path, GOOD)
    srv = serving(kube, ns, root)
    srv.observe()
    srv.wait, srv.poll = 0.3, 0.1
    with pytest.raises(NotReady, match=r"waiting for bot v7 to become available \(its controller"):
        srv.start_version("bot", "bot", 7)
    kube.mark_available(ns)
    assert srv.start_version("bot", "bot", 7) == f"http://bot-v7.{ns}.svc:80"
    desired, _ = load(root)
    observed = mark_outdated(srv.observe(), settings_of(desired)).agents["bot"].versions[7]
    assert observed.ready and observed.outdated == ""


def test_observation_is_one_list_per_kind(kube: ApiServer, ns: str, tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    reg = FakeRegistry()
    run(root, reg, serving(kube, ns, root))
    kube.mark_available(ns)
    run(root, reg, serving(kube, ns, root))
    srv = serving(kube, ns, root)
    srv.api.requests = 0
    snapshot = srv.observe()
    assert snapshot.agents["bot"].weights == {1: 100}
    # The namespace, then Deployments, Services and HTTPRoutes: one request each.
    assert srv.api.requests == 4


def test_observing_reads_what_is_live_and_the_core_says_what_is_outdated(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    root, _ = _routed_bot(kube, ns, tmp_path)
    api, _ = connect(kube.kubeconfig())

    def refuse(agent: str) -> Any:
        raise AssertionError(f"the settings of {agent} were asked for while observing")

    snapshot = KubernetesServing(api, ns, refuse).observe()
    assert snapshot.cluster is not None and snapshot.cluster.gateway_api
    live = snapshot.cluster.agents["bot"]
    dep = kube.objects(ns, "Deployment")["bot-v1"]
    assert live.deployments[1].digest == dep["metadata"]["annotations"]["agentctl.io/spec-digest"]
    assert live.http_route is not None and live.http_route.weights == {1: 100}
    assert snapshot.agents["bot"].weights == {1: 100}
    desired, _ = load(root)
    assert mark_outdated(snapshot, settings_of(desired)).agents["bot"].versions[1].outdated == ""

    # Replicas changed by hand: the adapter reports them, the core finds them outdated.
    kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/bot-v1",
        {"spec": {"replicas": 7}},
        content_type="application/merge-patch+json",
    )
    again = KubernetesServing(api, ns, refuse).observe()
    assert again.agents["bot"].versions[1].outdated == ""  # the adapter does not judge
    marked = mark_outdated(again, settings_of(desired)).agents["bot"].versions[1]
    assert marked.outdated == "its Deployment was changed outside agentctl (replicas 7, want 1)"


@pytest.mark.parametrize("router", ["gateway", "service"])
def test_verify_weight_reads_the_route_back(
    kube: ApiServer, ns: str, tmp_path: Path, router: str
) -> None:
    root = write_repo(tmp_path, GOOD + f"    kubernetes:\n      router: {router}\n")
    reg = FakeRegistry()
    for _ in range(3):  # start v1, (router service: scale it up, waiting for it,) route to it
        run(root, reg, serving(kube, ns, root))
        kube.mark_available(ns)
    srv = serving(kube, ns, root)
    assert run(root, reg, srv).plan.changes == ()
    assert srv.verify_weight("bot", {1: 100})
    assert not srv.verify_weight("bot", {1: 50})
    assert not srv.verify_weight("bot", {1: 90, 2: 10})
    if router == "gateway":  # someone edits the HTTPRoute's weights
        route = kube.objects(ns, "HTTPRoute")["bot"]
        route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 40
        kube.request(
            "PUT", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/bot", route
        )
    else:  # someone scales the version by hand
        kube.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{ns}/deployments/bot-v1",
            {"spec": {"replicas": 3}},
            content_type="application/merge-patch+json",
        )
    assert not srv.verify_weight("bot", {1: 100})
    srv.observe()  # as every apply does, before it writes
    srv.set_weights("bot", "bot", {1: 100})
    assert srv.verify_weight("bot", {1: 100})


def test_a_saved_plan_applies_on_the_cluster_or_is_stale_after_a_hand_edit(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    root, reg = _routed_bot(kube, ns, tmp_path)
    (root / "bot.yaml").write_text(CANARY)  # v2 (the source changes too): started, 80/20
    (root / "config.yaml").write_text("greeting: hello\n")

    def saved_now() -> SavedPlan:
        result = run(root, reg, serving(kube, ns, root), apply=False)
        assert result.plan.changes and result.made is not None and result.made.served is not None
        return save(result.plan, result.made, path=root, allow_empty=False, target="kubernetes",
                    owner="agentctl", prune=False, tracking_uri="fake")  # fmt: skip

    saved = saved_now()
    assert saved.namespace == ns and saved.serving is not None
    # Someone edits the HTTPRoute by hand: the plan was not made from that.
    route = kube.objects(ns, "HTTPRoute")["bot"]
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 50
    kube.request("PUT", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/bot", route)
    before = writes(kube)
    desired, _ = load(root)
    with pytest.raises(StalePlan, match="what the kubernetes serving target runs changed"):
        apply_saved(saved, desired, reg, file="plan.json", serving=serving(kube, ns, root),
                    policy=NO_WAIT)  # fmt: skip
    assert writes(kube) == before and len(reg.models["bot"].versions) == 1

    saved = saved_now()  # planned again: applied exactly, across two observations of the cluster
    done = apply_saved(saved, desired, reg, file="plan.json", serving=serving(kube, ns, root),
                       policy=NO_WAIT)  # fmt: skip
    assert [e.address for e in done.entries] == [c.address for c in saved.plan.changes]
    assert set(kube.objects(ns, "Deployment")) == {"bot-v1", "bot-v2"}


def test_an_unreachable_api_server_is_a_temporary_error(kube: ApiServer) -> None:
    api, _ = connect(_dead_kubeconfig(kube))
    with pytest.raises(TemporaryBackendError, match="did not answer"):
        KubernetesServing(api, "default").observe()


# -- router service: one Service over the versions, the split approximated by replicas --------

NO_SHADOW = CANARY.replace("    shadow:\n      alias: challenger\n      percent: 10\n", "")


@pytest.fixture(scope="module")
def bare() -> Iterator[ApiServer]:
    """An API server without the Gateway API."""
    with api_server(gateway_api=False) as server:
        yield server


def _split(kube: ApiServer, ns: str) -> tuple[dict[str, int], str, dict[str, str]]:
    """Each Deployment's replicas, the agent Service's weights annotation and selector."""
    replicas = {n: d["spec"]["replicas"] for n, d in kube.objects(ns, "Deployment").items()}
    svc = kube.objects(ns, "Service")["bot-svc"]
    return replicas, svc["metadata"]["annotations"]["agentctl.io/weights"], svc["spec"]["selector"]


def test_without_gateway_api_the_split_is_replica_counts_and_the_plan_says_so(
    bare: ApiServer, tmp_path: Path
) -> None:
    ns = "bare1"
    bare.create_namespace(ns, gateway=None)
    root = write_repo(tmp_path, GOOD)
    # replicas 5: with router service, the agent's total
    (root / "defaults.yaml").write_text(DEFAULTS.replace("replicas: 3", "replicas: 5"))
    reg = FakeRegistry()
    for _ in range(3):  # start v1, scale it up (waiting for it), then route to it
        run(root, reg, serving(bare, ns, root))
        bare.mark_available(ns)
    run(root, reg, serving(bare, ns, root))
    assert _split(bare, ns) == ({"bot-v1": 5}, "1=100", {"agentctl.io/agent": "bot"})
    deployment = bare.objects(ns, "Deployment")["bot-v1"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "team/agents:1"

    # A canary: v2 starts with no replicas (it has no traffic yet), as the plan says...
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(NO_SHADOW)
    first = run(root, reg, serving(bare, ns, root), apply=False)
    created = [p.after for p in first.previews if p.kind == "Deployment"]
    assert [(d or {})["spec"]["replicas"] for d in created] == [0]
    assert run(root, reg, serving(bare, ns, root)).changeset.waiting
    bare.mark_available(ns)
    assert bare.objects(ns, "Deployment")["bot-v2"]["spec"]["replicas"] == 0
    plan = run(root, reg, serving(bare, ns, root), apply=False)
    notes = [p.note for p in plan.previews if p.kind == "Service" and p.name == "bot-svc"]
    assert notes == [
        "router service (no Gateway API): one Service over the versions, the split approximated "
        "by replica ratio: v1 80% -> 4 of 5 replicas (~80%), v2 20% -> 1 of 5 replicas (~20%); "
        "a pod takes traffic once it is Ready"
    ]
    scaled = {(p.kind, p.name): (p.after or {}).get("spec", {}).get("replicas")
              for p in plan.previews if p.kind == "Deployment"}  # fmt: skip
    assert scaled == {("Deployment", "bot-v1"): 4, ("Deployment", "bot-v2"): 1}

    # ...then v2 is scaled up first; v1 keeps its replicas until v2 is Available.
    assert run(root, reg, serving(bare, ns, root)).changeset.waiting
    assert _split(bare, ns)[:2] == ({"bot-v1": 5, "bot-v2": 1}, "1=100")
    bare.mark_available(ns)
    done = run(root, reg, serving(bare, ns, root))
    assert not done.changeset.waiting
    assert _split(bare, ns)[:2] == ({"bot-v1": 4, "bot-v2": 1}, "1=80,2=20")
    bare.mark_available(ns)

    before = writes(bare)
    assert run(root, reg, serving(bare, ns, root)).plan.changes == ()
    assert writes(bare) == before

    # Someone scales v2 by hand: the split is put back.
    bare.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/bot-v2",
        {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    bare.mark_available(ns)
    drift = run(root, reg, serving(bare, ns, root), apply=False)
    assert [c.reason for c in drift.plan.changes] == [
        "the route: v2 has 3 replicas; its share of the split is 1"
    ]
    run(root, reg, serving(bare, ns, root))
    assert _split(bare, ns)[0] == {"bot-v1": 4, "bot-v2": 1}

    # A shadow cannot be served here: a clear error naming agent and object, nothing written.
    (root / "bot.yaml").write_text(CANARY)
    before = writes(bare)
    with pytest.raises(BackendError) as info:
        run(root, reg, serving(bare, ns, root), apply=False)
    assert str(info.value).startswith(
        f"agent bot: Service {ns}/bot-svc: the cluster serves no Gateway API, and a Service cannot "
        "mirror traffic"
    )
    assert writes(bare) == before


def test_a_route_moves_from_gateway_to_service_when_the_manifest_says_so(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    root, reg = _routed_bot(kube, ns, tmp_path)

    (root / "bot.yaml").write_text(GOOD + "    kubernetes:\n      router: service\n")
    plan = run(root, reg, serving(kube, ns, root), apply=False)
    assert [c.reason for c in plan.plan.changes] == [
        "the route: the router is now service: a Service replaces its HTTPRoute"
    ]
    assert {(p.kind, p.action) for p in plan.previews} == {
        ("Service", "create"),
        ("HTTPRoute", "delete"),
    }
    run(root, reg, serving(kube, ns, root))
    assert kube.objects(ns, "HTTPRoute") == {}
    assert _split(kube, ns) == ({"bot-v1": 1}, "1=100", {"agentctl.io/agent": "bot"})
    assert run(root, reg, serving(kube, ns, root)).plan.changes == ()


# -- a rollout on Kubernetes: the HTTPRoute's weights walk the steps ----------------------------


class PromQL:
    """A stand-in for Prometheus' HTTP query API (``GET /api/v1/query``, its documented JSON):
    answers every query with ``value``, and keeps the queries it was asked."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading
        import urllib.parse

        self.value = "0"
        self.queries: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                outer.queries += urllib.parse.parse_qs(url.query).get("query", [])
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {}, "value": [0, outer.value]}]}}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


ROLLOUT_K8S = """\
  rollout:
    canary: {alias: champion}
    promoteAlias: champion
    scaleDownDelay: 5s
    steps:
      - {weight: 30, pause: 10s}
      - {weight: 100}
    analysis:
      interval: 1s
      gates:
        - name: errors
          metric: errorRate
          source: prometheus
          query: sum(rate(errors{version="{{version}}"}[1m])) / sum(rate(requests{version="{{version}}"}[1m]))
          max: 0.05
"""


def test_a_rollout_walks_the_httproute_weights_and_a_failing_gate_rolls_back(
    kube: ApiServer, ns: str, tmp_path: Path
) -> None:
    from controller.adapters.gates.prometheus import PrometheusMetrics
    from controller.core.rollout.codec import RolloutState

    root, reg = _routed_bot(kube, ns, tmp_path)
    prom = PromQL()
    now = [1_000_000.0]

    def step(dt: float = 0.0) -> Any:
        now[0] += dt
        desired, _ = load(root)
        return reconcile(
            desired, reg, apply=True, policy=NO_WAIT, serving=serving(kube, ns, root),
            providers={"prometheus": PrometheusMetrics(prom.url)}, wall=lambda: now[0],
        )  # fmt: skip

    def backends() -> list[tuple[str, int]]:
        rule = kube.objects(ns, "HTTPRoute")["bot"]["spec"]["rules"][0]
        return [(b["name"], b["weight"]) for b in rule["backendRefs"]]

    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(GOOD + ROLLOUT_K8S)
    step()  # v2 registered, its Deployment created; traffic stays on v1
    assert backends() == [("bot-v1", 100)] and reg.models["bot"].aliases["champion"] == 1
    kube.mark_available(ns)
    step(1)  # v2 is Available: the rollout starts
    assert backends() == [("bot-v1", 70), ("bot-v2", 30)]
    assert prom.queries == []  # not before the canary has had traffic for an interval
    step(11)  # the pause is over and the gate passed: promoted
    assert len(prom.queries) == 1 and prom.queries[0].count('version="2"') == 2
    assert reg.models["bot"].aliases["champion"] == 2
    assert backends() == [("bot-v1", 0), ("bot-v2", 100)]
    assert set(kube.objects(ns, "Deployment")) == {"bot-v1", "bot-v2"}
    step(6)  # the scale-down delay is over
    assert backends() == [("bot-v2", 100)] and set(kube.objects(ns, "Deployment")) == {"bot-v2"}
    assert not step(1).plan.has_changes

    # v3 fails its gate: back to v2, and it stays there.
    (root / "config.yaml").write_text("greeting: howdy\n")
    prom.value = "0.5"
    step()
    kube.mark_available(ns)
    step(1)
    assert backends() == [("bot-v2", 70), ("bot-v3", 30)]
    failed = step(1.5)
    state = RolloutState.from_storage(reg.models["bot"].tags)
    assert state is not None and state.phase.value == "Failed", failed.progress
    assert backends() == [("bot-v2", 100)] and reg.models["bot"].aliases["champion"] == 2
    assert set(kube.objects(ns, "Deployment")) == {"bot-v2"}
    assert not step(30).plan.has_changes


# -- header routes and affinity: HTTPRoute header matches and sessionPersistence ---------------

ROUTED_BOT = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: support-bot
spec:
  source:
    code: ../agents/support_bot/agent.py
    config: ../agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions:
    - version: stable
      source:
        config: ../agents/support_bot/config-stable.yaml
    - current
  aliases:
    champion: stable
    challenger: current
  serving:
    traffic:
      - {alias: champion, percent: 90}
      - {alias: challenger, percent: 10}
    shadow: {alias: challenger, percent: 5}
    routes:
      - {header: X-Agent-Version, value: canary, alias: challenger}
      - {header: x-tester, value: alice, alias: champion}
    affinity: {header: x-session-id}
    kubernetes:
      image: registry.example/agents/support-bot:1
"""


def _rules(kube: ApiServer, ns: str, name: str) -> list[tuple[Any, ...]]:
    """An HTTPRoute's rules, each as (header matches, backends, filter types, sessionPersistence)."""
    out = []
    for rule in kube.objects(ns, "HTTPRoute")[name]["spec"]["rules"]:
        [match] = rule["matches"]
        assert match["path"] == {"type": "PathPrefix", "value": f"/agents/{name}"}
        out.append(
            (
                [(h["type"], h["name"], h["value"]) for h in match.get("headers", [])],
                [(b["name"], b["weight"]) for b in rule["backendRefs"]],
                [f["type"] for f in rule.get("filters", [])],
                rule.get("sessionPersistence"),
            )
        )
    return out


def test_cli_header_routes_and_affinity_are_httproute_rules_and_a_second_plan_is_empty(
    kube: ApiServer, ns: str, tmp_path: Path, agentctl: Any
) -> None:
    root = repo_with(tmp_path, ROUTED_BOT, "support-bot.yaml")
    bot = root / "agents" / "support_bot"
    (bot / "config-stable.yaml").write_text(
        (bot / "config.yaml").read_text().replace("Hi, this", "Hello, this")
    )
    k8s = ["--target", "kubernetes", "--kubeconfig", kube.kubeconfig(), "--namespace", ns]
    manifests = str(root / "manifests")
    first = agentctl("apply", manifests, *k8s, "--ready-timeout", "0")
    assert first.code == 0, first.err
    kube.mark_available(ns)

    # The standard channel's CRD has no sessionPersistence: the plan says so, and still applies.
    planned = agentctl("plan", manifests, *k8s)
    assert planned.code == 0, planned.err
    assert (
        "affinity not enforced: the cluster's HTTPRoute CRD has no sessionPersistence"
    ) in planned.out
    second = agentctl("apply", manifests, *k8s, "--ready-timeout", "0")
    assert second.code == 0, second.err
    canary = [("Exact", "x-agent-version", "canary")]
    alice = [("Exact", "x-tester", "alice")]
    assert _rules(kube, ns, "support-bot") == [
        (canary, [("support-bot-v2", 1)], ["URLRewrite"], None),
        (alice, [("support-bot-v1", 1)], ["URLRewrite"], None),
        (
            [],
            [("support-bot-v1", 90), ("support-bot-v2", 10)],
            ["URLRewrite", "RequestMirror"],
            None,
        ),
    ]
    route = kube.objects(ns, "HTTPRoute")["support-bot"]
    assert route["metadata"]["annotations"]["agentctl.io/affinity"] == "header=x-session-id,cookie="
    clean = agentctl("plan", manifests, *k8s, "--detailed-exitcode")
    assert clean.code == 0, clean.out + clean.err

    # A hand edit of a header rule is drift: planned, and put back by the next apply.
    route["spec"]["rules"][1]["matches"][0]["headers"][0]["value"] = "mallory"
    kube.request(
        "PUT", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/support-bot", route
    )
    drift = agentctl("plan", manifests, *k8s, "--detailed-exitcode")
    assert drift.code == 2, drift.out + drift.err
    assert "the header routes or affinity differ" in drift.out
    fixed = agentctl("apply", manifests, *k8s, "--ready-timeout", "0")
    assert fixed.code == 0, fixed.err
    assert _rules(kube, ns, "support-bot")[1][0] == alice
    again = agentctl("plan", manifests, *k8s, "--detailed-exitcode")
    assert again.code == 0, again.out + again.err


@pytest.fixture(scope="module")
def experimental() -> Iterator[ApiServer]:
    """An API server with Gateway API's experimental channel CRDs (HTTPRoute rules have
    sessionPersistence there), from the same module as the standard ones."""
    from tests.support.kube_apiserver import install_crds, tool

    with api_server(gateway_api=False) as server:
        standard = Path(tool("gateway-crds", "AGENTCTL_GATEWAY_CRDS"))
        install_crds(server, str(standard.parent / "experimental"))
        yield server


def test_affinity_is_session_persistence_where_the_crd_has_it(
    experimental: ApiServer, tmp_path: Path
) -> None:
    kube, ns = experimental, f"x{next(_names)}"
    kube.create_namespace(ns)
    root, reg = _routed_bot(kube, ns, tmp_path)
    routed = CANARY + (
        "    routes:\n      - {header: x-agent-version, value: canary, alias: challenger}\n"
        "    affinity: {header: x-session-id, cookie: sid}\n"
    )
    (root / "config.yaml").write_text("greeting: hello\n")
    (root / "bot.yaml").write_text(routed)
    run(root, reg, serving(kube, ns, root))
    kube.mark_available(ns)
    done = run(root, reg, serving(kube, ns, root))
    assert not done.changeset.waiting
    sticky = {"sessionName": "x-session-id", "type": "Header"}
    assert _rules(kube, ns, "bot") == [
        ([("Exact", "x-agent-version", "canary")], [("bot-v2", 1)], ["URLRewrite"], None),
        ([], [("bot-v1", 80), ("bot-v2", 20)], ["URLRewrite", "RequestMirror"], sticky),
    ]
    srv = serving(kube, ns, root)
    assert srv.verify_weight("bot", {1: 80, 2: 20})
    assert run(root, reg, srv, apply=False).plan.changes == ()

    # sessionPersistence removed by hand: drift, put back.
    route = kube.objects(ns, "HTTPRoute")["bot"]
    del route["spec"]["rules"][-1]["sessionPersistence"]
    kube.request("PUT", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/bot", route)
    drift = run(root, reg, serving(kube, ns, root), apply=False)
    assert [c.reason for c in drift.plan.changes] == [
        "the route: its HTTPRoute's sessionPersistence is not what its affinity asks for"
    ]
    [preview] = drift.previews
    assert preview.note == (
        "affinity: sessionPersistence by header x-session-id; cookie sid is not used (an "
        "HTTPRoute rule has one sessionPersistence)"
    )
    run(root, reg, serving(kube, ns, root))
    assert _rules(kube, ns, "bot")[-1][3] == sticky
    assert run(root, reg, serving(kube, ns, root), apply=False).plan.changes == ()

    # Affinity and header routes go: the route is one rule again.
    (root / "bot.yaml").write_text(CANARY)
    run(root, reg, serving(kube, ns, root))
    assert [r[0] for r in _rules(kube, ns, "bot")] == [[]]
    assert _rules(kube, ns, "bot")[0][3] is None
    assert run(root, reg, serving(kube, ns, root), apply=False).plan.changes == ()
