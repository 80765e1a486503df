"""charts/agentctl: ``helm lint`` passes, ``helm template`` output is accepted by the real API
server (server-side dry run), and the chart's RBAC is enough and no wider: the controller runs
with the arguments the chart gives it and its ServiceAccount's own token, converges, records
Events and holds its Lease, while SubjectAccessReviews show what that account may not do.

helm is built from the Go module proxy by ``hack/tools.sh helm`` (``$AGENTCTL_HELM`` when set).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.controller import SERVED, Proc, repo_with, until
from tests.support.kube_apiserver import ApiServer, tool
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "agentctl"
KUBE_VERSION = "1.34.4"
_PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


@pytest.fixture(scope="module")
def helm() -> str:
    return tool("helm", "AGENTCTL_HELM")


@pytest.fixture
def ns(kube: ApiServer) -> str:
    name = f"h{os.getpid() % 1000}{len(kube.request('GET', '/api/v1/namespaces')['items'])}"
    kube.create_namespace(name)
    return name


def render(helm: str, ns: str, *values: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "agents", str(CHART), "--namespace", ns,
         "--kube-version", KUBE_VERSION, *(a for v in values for a in ("--set", v))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def server_side_apply(kube: ApiServer, doc: dict[str, Any], dry_run: bool) -> Any:
    ns = doc["metadata"].get("namespace", "")
    path = _PATHS[doc["kind"]].format(ns=ns) + "/" + doc["metadata"]["name"]
    query = "?fieldManager=helm-test&fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
    return kube.request("PATCH", path + query, doc, content_type="application/apply-patch+yaml")


@pytest.mark.parametrize(
    "values",
    [
        ["manifests.gitSync.repo=https://git.invalid/agents.git"],
        ["manifests.source=configMap", "manifests.configMap.name=agents", "replicaCount=1"],
        [
            "manifests.source=volume",
            "manifests.volume.persistentVolumeClaim.claimName=agents",
            "leaderElection.enabled=false",
            "replicaCount=1",
            "gatewayNamespaces={gateways}",
            "webhook.secretName=mlflow-webhook",
            "mlflow.credentialsSecret=mlflow-credentials",
        ],
    ],
    ids=["git-sync", "configmap", "volume"],
)
def test_lint_and_template_are_accepted_by_the_api_server(
    kube: ApiServer, helm: str, ns: str, values: list[str]
) -> None:
    sets = [a for v in values for a in ("--set", v)]
    lint = subprocess.run(
        [helm, "lint", str(CHART), "--kube-version", KUBE_VERSION, *sets, "--strict"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    existing = {n["metadata"]["name"] for n in kube.request("GET", "/api/v1/namespaces")["items"]}
    if "gatewayNamespaces={gateways}" in values and "gateways" not in existing:
        kube.create_namespace("gateways", gateway=None)
    docs = render(helm, ns, *values)
    for doc in docs:
        server_side_apply(kube, doc, dry_run=True)  # raises on anything the server refuses
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    controller = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert controller["securityContext"]["readOnlyRootFilesystem"] is True
    assert controller["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert controller["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert controller["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert controller["image"] == f"ghcr.io/agentctl/agentctl:{_app_version()}"
    assert {"name": "tmp", "mountPath": "/tmp"} in controller["volumeMounts"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "manifests.gitSync.repo is required when manifests.source is gitSync"),
        (
            [
                "manifests.source=configMap",
                "manifests.configMap.name=x",
                "leaderElection.enabled=false",
            ],
            "replicaCount > 1 needs leaderElection.enabled",
        ),
    ],
    ids=["no source", "two replicas without a leader"],
)
def test_the_chart_refuses_values_that_cannot_work(
    helm: str, values: list[str], message: str
) -> None:
    sets = [a for v in values for a in ("--set", v)]
    out = subprocess.run(
        [helm, "template", "agents", str(CHART), "--kube-version", KUBE_VERSION, *sets],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert message in out.stderr


def _app_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (CHART.parents[1] / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in pyproject, "appVersion = the package version"
    return str(chart["appVersion"])


def _can(kube: ApiServer, user: str, verb: str, resource: str, ns: str = "", **more: str) -> bool:
    group, _, plural = resource.rpartition("/")
    attrs = {"verb": verb, "resource": plural, "group": group, **more}
    if ns:
        attrs["namespace"] = ns
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts"], "resourceAttributes": attrs},
    }
    answer = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def test_the_controller_runs_with_the_chart_s_rbac_and_no_more(
    kube: ApiServer,
    helm: str,
    ns: str,
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    available: None,
    tmp_path: Path,
) -> None:
    docs = render(helm, ns, "manifests.source=configMap", "manifests.configMap.name=agents")
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Service"):  # no kubelet here: the pod never runs
            server_side_apply(kube, doc, dry_run=False)
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]

    # The chart's own arguments, with paths and the listening address of this machine.
    root = repo_with(tmp_path, SERVED.format(name="rbac", description="first"))
    args = []
    for arg in deployment["spec"]["template"]["spec"]["containers"][0]["args"][1:]:
        if arg.startswith("--listen="):
            continue
        arg = arg.replace("--manifests=/manifests/", f"--manifests={root}/")
        arg = arg.replace("--root=/manifests", f"--root={root}")
        arg = "--resync=2" if arg.startswith("--resync=") else arg
        args.append(arg)
    ctl = controllers(
        *args, "--kubeconfig", kube.kubeconfig(token, ns),
        env={"MLFLOW_TRACKING_URI": mlflow_server.url, "POD_NAME": "agents-pod-1"},
    )  # fmt: skip
    until(
        "the route",
        lambda: kube.objects(ns, "HTTPRoute").get("rbac", {}).get("spec", {}).get("rules"),
        120,
        (ctl,),
    )
    client.set_registered_model_alias("rbac", "champion", "1")  # no-op: not drift
    kube.request(
        "DELETE", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/rbac"
    )  # drift: the route deleted by hand
    until("the route back", lambda: "rbac" in kube.objects(ns, "HTTPRoute"), 30, (ctl,))
    lease = kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/agentctl-controller"
    )
    assert lease["spec"]["holderIdentity"] == "agents-pod-1"
    events = kube.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
    assert {e["reason"] for e in events} >= {"Applied", "DriftDetected"}
    assert "403" not in ctl.text(), ctl.text()[-3000:]
    assert ctl.stop(signal.SIGTERM) == 0

    user = f"system:serviceaccount:{ns}:{sa}"
    assert _can(kube, user, "patch", "apps/deployments", ns)
    assert _can(kube, user, "get", "namespaces", name=ns)
    not_allowed = [
        ("list", "secrets", ns, {}),
        ("get", "secrets", ns, {}),
        ("create", "pods", ns, {}),
        ("get", "namespaces", "", {"name": "kube-system"}),
        ("list", "namespaces", "", {}),
        ("patch", "apps/deployments", "default", {}),
        ("delete", "coordination.k8s.io/leases", ns, {"name": "agentctl-controller"}),
        ("update", "coordination.k8s.io/leases", ns, {"name": "someone-else"}),
        ("update", "apps/deployments", ns, {}),
        ("create", "rbac.authorization.k8s.io/roles", ns, {}),
    ]
    wider = [(v, r, n, m) for v, r, n, m in not_allowed if _can(kube, user, v, r, n, **m)]
    assert wider == [], f"the chart's RBAC allows more than agentctl needs: {wider}"
