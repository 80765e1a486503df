"""``agentctl controller`` as a process, against the real MLflow server and a real kube-apiserver:
it converges on a manifest change, reverts drift made by hand in the registry and in the
cluster (with Events), serves health, readiness and metrics, wakes on a signed MLflow webhook,
stops cleanly on SIGTERM, and two replicas elect one leader on a Lease, the standby taking over
within the lease duration once the leader is killed, with no action applied twice.

No Deployment controller runs: a thread here marks Deployments Available, as one would.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.controller import AGENT, SERVED, Proc, repo_with, until
from tests.support.kube_apiserver import ApiServer
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

_names = itertools.count(1)
LEASE = ["--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5"]


@pytest.fixture
def ns(kube: ApiServer) -> str:
    name = f"c{next(_names)}"
    kube.create_namespace(name)
    return name


def _route_weights(kube: ApiServer, ns: str, agent: str) -> list[tuple[str, int]]:
    routes = kube.objects(ns, "HTTPRoute")
    if agent not in routes:
        return []
    rule = routes[agent]["spec"]["rules"][0]
    return [(b["name"], b["weight"]) for b in rule["backendRefs"]]


def _holder(kube: ApiServer, ns: str) -> str:
    """Who holds the controller's Lease ("" if nobody, or there is none yet)."""
    try:
        lease = kube.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/agentctl-controller"
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return ""
        raise
    return str(lease["spec"].get("holderIdentity") or "")


def _events(kube: ApiServer, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.request(
        "GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events"
    )["items"]
    return items


def test_the_controller_converges_reverts_drift_and_stops_cleanly(
    kube: ApiServer,
    ns: str,
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    available: None,
    tmp_path: Path,
) -> None:
    root = repo_with(tmp_path, SERVED.format(name="bot", description="first"))
    ctl = controllers(
        "--manifests", str(root / "manifests"), "--target", "kubernetes",
        "--kubeconfig", kube.kubeconfig(), "--namespace", ns, "--resync", "2", *LEASE,
        env={"MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip
    until(
        "the route to v1", lambda: _route_weights(kube, ns, "bot") == [("bot-v1", 100)], 120, (ctl,)
    )
    assert client.get_model_version_by_alias("bot", "champion").version == "1"
    assert ctl.get("/healthz")[0] == 200
    until("ready", lambda: ctl.get("/readyz")[0] == 200, 10, (ctl,))
    status, metrics = ctl.get("/metrics")
    assert status == 200
    assert "agentctl_leader 1.0" in metrics
    assert re.search(r'agentctl_reconcile_duration_seconds_count\{trigger="start"\} 1\.0', metrics)
    assert re.search(r'agentctl_actions_total\{kind="traffic",result="created"\} 1\.0', metrics)
    assert "agentctl_last_successful_reconcile_timestamp_seconds" in metrics

    # A new version and an 80/20 canary, by editing the manifest: the watch picks it up.
    config = root / "agents" / "support_bot" / "config.yaml"
    config.write_text(config.read_text().replace("Hi, this", "Hello, this"))
    (root / "manifests" / "agent.yaml").write_text(
        SERVED.format(name="bot", description="first")
        .replace("versions: [current]", "versions: [1, current]")
        .replace("champion: current", "champion: 1\n    challenger: current")
        .replace("percent: 100", "percent: 80\n      - alias: challenger\n        percent: 20")
    )
    until(
        "the canary",
        lambda: _route_weights(kube, ns, "bot") == [("bot-v1", 80), ("bot-v2", 20)],
        120,
        (ctl,),
    )
    assert "manifests" in ctl.text()  # woken by the watch, not only by the resync

    # Drift by hand, in the cluster and in the registry: both reverted, each with an Event.
    kube.request(
        "PATCH",
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/bot",
        {"spec": {"rules": [{"backendRefs": [{"name": "bot-v1", "port": 80, "weight": 100}]}]}},
        content_type="application/merge-patch+json",
    )
    client.set_registered_model_alias("bot", "champion", "2")
    until(
        "the route reverted",
        lambda: _route_weights(kube, ns, "bot") == [("bot-v1", 80), ("bot-v2", 20)],
        30,
        (ctl,),
    )
    until(
        "the alias reverted",
        lambda: client.get_model_version_by_alias("bot", "champion").version == "1",
        30,
        (ctl,),
    )
    drift = [e for e in _events(kube, ns) if e["reason"] == "DriftDetected"]
    assert drift, ctl.text()[-3000:]
    assert all(e["regarding"]["kind"] == "HTTPRoute" and e["type"] == "Warning" for e in drift)
    assert any("bot.alias.champion" in e["note"] for e in drift)
    assert re.search(
        r'agentctl_drift_detected_total\{agent="bot",kind="alias"\} [1-9]', ctl.get("/metrics")[1]
    )

    # A manifest that fails validation: reported, the last good state stays, nothing pruned.
    (root / "manifests" / "broken.yaml").write_text(
        "apiVersion: agentctl.io/v1alpha1\nkind: Agent\nmetadata: {name: Bad_Name}\nspec: {}\n"
    )
    until(
        "the error reported",
        lambda: "manifests: " in ctl.text() and "broken.yaml" in ctl.text(),
        30,
        (ctl,),
    )
    assert "agentctl_desired_state_valid 0.0" in ctl.get("/metrics")[1]
    assert any(e["reason"] == "InvalidManifests" for e in _events(kube, ns))
    assert _route_weights(kube, ns, "bot") == [("bot-v1", 80), ("bot-v2", 20)]

    assert ctl.stop(signal.SIGTERM) == 0
    lease = kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/agentctl-controller"
    )
    assert lease["spec"]["holderIdentity"] == "", "released on a clean stop"
    assert "stopped" in ctl.text()


def test_two_controllers_elect_one_leader_and_the_standby_takes_over(
    kube: ApiServer,
    ns: str,
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    root = repo_with(tmp_path, AGENT.format(name="solo", description="first"))
    args = [
        "--manifests", str(root / "manifests"), "--target", "kubernetes",
        "--kubeconfig", kube.kubeconfig(), "--namespace", ns, "--resync", "1", *LEASE,
    ]  # fmt: skip
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url}
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/agentctl-controller"
    a = controllers(*args, "--identity", "a", name="a", env=env)
    until(
        "a leads",
        lambda: _holder(kube, ns) == "a",
        30,
        (a,),
    )
    until("a converges", lambda: "in sync" in a.text(), 120, (a,))
    assert client.get_model_version_by_alias("solo", "champion").version == "1"
    b = controllers(*args, "--identity", "b", name="b", env=env)
    until("b is up", lambda: b.get("/healthz")[0] == 200, 30, (b,))
    time.sleep(2)
    assert "agentctl_leader 0.0" in b.get("/metrics")[1]
    assert b.get("/readyz")[0] == 200, "a standby is ready"
    assert b.applied() == [], "a standby applies nothing"

    a.stop(signal.SIGKILL)  # no release: b must wait the lease out
    killed = time.monotonic()
    (root / "manifests" / "agent.yaml").write_text(AGENT.format(name="solo", description="second"))
    until(
        "b leads",
        lambda: _holder(kube, ns) == "b",
        30,
        (b,),
    )
    took = time.monotonic() - killed
    assert took <= 3 + 1.5, f"took over {took:.1f} s after the kill (lease 3 s, retry 0.5 s)"
    until(
        "b applies the change",
        lambda: client.get_registered_model("solo").description == "second",
        60,
        (b,),
    )
    lease = kube.request("GET", lease_path)["spec"]
    assert lease["leaseTransitions"] == 1
    assert a.applied() and b.applied()
    assert set(a.applied()).isdisjoint(b.applied()), "no action applied twice"
    assert [line.split(": ", 1)[1].split()[0] for line in b.applied()] == ["solo.registered_model"]
    assert b.stop() == 0


def test_a_signed_mlflow_webhook_wakes_the_controller(
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    root = repo_with(tmp_path, AGENT.format(name="hooked", description="first"))
    ctl = controllers(
        "--manifests", str(root / "manifests"), "--target", "registry", "--resync", "3600",
        env={"MLFLOW_TRACKING_URI": mlflow_server.url, "AGENTCTL_WEBHOOK_SECRET": "s3cret"},
    )  # fmt: skip
    until(
        "converged",
        lambda: client.get_model_version_by_alias("hooked", "champion").version == "1",
        120,
        (ctl,),
    )
    hook = client.create_webhook(
        name="agentctl-test",
        url=f"http://127.0.0.1:{ctl.port}/webhooks/mlflow",
        events=["model_version_alias.created", "model_version_alias.deleted"],
        secret="s3cret",
    )
    try:
        assert client.test_webhook(hook.webhook_id).response_status == 202, ctl.text()[-2000:]
        unsigned = urllib.request.Request(
            f"http://127.0.0.1:{ctl.port}/webhooks/mlflow", data=b"{}", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=5)
        assert refused.value.code == 401

        # An alias deleted by hand: the webhook, not the (hour-long) resync, brings it back.
        client.delete_registered_model_alias("hooked", "champion")
        until(
            "the alias restored",
            lambda: client.get_model_version_by_alias("hooked", "champion").version == "1",
            30,
            (ctl,),
        )
        assert "reconcile (webhook)" in ctl.text()
        assert "drift: hooked.alias.champion changed outside the manifests" in ctl.text()
    finally:
        client.delete_webhook(hook.webhook_id)
    assert ctl.stop() == 0


@pytest.mark.timeout(180)
def test_a_fifo_among_the_manifests_is_reported_and_the_controller_stays_up(
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    manifest = AGENT.format(name="piped", description="first").split("  source:")[0]
    root = repo_with(tmp_path, manifest)
    ctl = controllers(
        "--manifests", str(root / "manifests"), "--target", "registry", "--resync", "1",
        env={"MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip
    until("converged", lambda: client.get_registered_model("piped").description == "first", 60)
    os.mkfifo(root / "manifests" / "pipe.yaml")  # before, every load blocked in open()
    until(
        "the FIFO reported",
        lambda: re.search(r"manifests: .*pipe\.yaml.*not a regular file \(a FIFO\)", ctl.text()),
        30,
        (ctl,),
    )
    assert ctl.get("/healthz")[0] == 200
    until("reported invalid", lambda: "agentctl_desired_state_valid 0.0" in ctl.get("/metrics")[1])
    (root / "manifests" / "pipe.yaml").unlink()
    (root / "manifests" / "agent.yaml").write_text(manifest.replace("first", "second"))
    until("converged again", lambda: client.get_registered_model("piped").description == "second")
    assert "manifests: valid again" in ctl.text()
    assert ctl.stop() == 0
