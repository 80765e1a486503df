"""A real Kubernetes API server for tests, envtest style: etcd and kube-apiserver on 127.0.0.1.

The binaries come from ``hack/tools.sh kube-assets`` (built from the Go module proxy into a cache
outside the checkout, or ``$KUBEBUILDER_ASSETS`` when set); the Gateway API CRDs from
``hack/tools.sh gateway-crds`` (the sigs.k8s.io/gateway-api module's own standard files). No
controller-manager or kubelet runs: a Deployment's status is whatever a test writes.

Two users authenticate with static tokens: ``admin`` (system:masters) and ``limited`` (no
permissions until a test grants some with RBAC).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "agentctl-test-admin-token"
LIMITED_TOKEN = "agentctl-test-limited-token"


def tool(what: str, env_var: str) -> str:
    """The path ``hack/tools.sh <what>`` prints (building it on first use), or ``$env_var``."""
    given = os.environ.get(env_var)
    if given:
        return given
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "tools.sh"), what],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiServer:
    url: str
    ca_file: str
    workdir: Path

    def kubeconfig(self, token: str = ADMIN_TOKEN, namespace: str = "default") -> str:
        """Write a kubeconfig for the user with ``token``; return its path."""
        name = "admin" if token == ADMIN_TOKEN else "user"
        path = self.workdir / f"kubeconfig-{name}-{namespace}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.url, "certificate-authority": self.ca_file},
                }
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "test",
                    "context": {"cluster": "test", "user": name, "namespace": namespace},
                }
            ],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        return str(path)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str = ADMIN_TOKEN,
        content_type: str = "application/json",
    ) -> Any:
        """One HTTP request as ``token``'s user; the decoded JSON answer (raises HTTPError)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            raw = resp.read()
        if path.startswith("/metrics"):
            return raw.decode()
        return json.loads(raw) if raw else None

    def writes(self) -> dict[tuple[str, str, str], int]:
        """The API server's own count of write requests so far, by (verb, resource, subresource),
        from its ``apiserver_request_total`` metric."""
        counts: dict[tuple[str, str, str], int] = {}
        for line in self.request("GET", "/metrics").splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
            labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
            labels = {k: v.strip('"') for k, v in labels.items()}
            verb = labels.get("verb", "")
            if verb not in ("POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"):
                continue
            if labels.get("dry_run", "") not in ("", "none"):
                continue
            key = (verb, labels.get("resource", ""), labels.get("subresource", ""))
            counts[key] = counts.get(key, 0) + int(float(value))
        return counts

    def create_namespace(self, name: str, gateway: str | None = "agentctl") -> None:
        """A namespace, with a Gateway of that name in it (agentctl's default) unless None."""
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        if gateway is None:
            return
        self.request(
            "POST",
            f"/apis/gateway.networking.k8s.io/v1/namespaces/{name}/gateways",
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": gateway},
                "spec": {
                    "gatewayClassName": "test",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                },
            },
        )

    def objects(self, ns: str, kind: str) -> dict[str, dict[str, Any]]:
        """The Deployments, Services or HTTPRoutes in ``ns``, by name."""
        path = {
            "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
            "Service": f"/api/v1/namespaces/{ns}/services",
            "HTTPRoute": f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
        }[kind]
        return {o["metadata"]["name"]: o for o in self.request("GET", path)["items"]}

    def mark_available(self, ns: str) -> int:
        """Do what the Deployment controller and kubelets would: every replica of every
        Deployment in ``ns`` up and Available (a status write). Returns how many."""
        deployments = self.objects(ns, "Deployment")
        for name, dep in deployments.items():
            replicas = dep["spec"].get("replicas", 1)
            status = {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
                ],
            }
            self.request(
                "PATCH",
                f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/status",
                {"status": status},
                content_type="application/merge-patch+json",
            )
        return len(deployments)


def _wait_ready(url: str, ca_file: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited {proc.returncode}:\n{_tail(log)}")
        if os.path.exists(ca_file):
            ctx = ssl.create_default_context(cafile=ca_file)
            req = urllib.request.Request(url + "/readyz")
            req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
                last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"kube-apiserver not ready in 60 s ({last}):\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def install_crds(server: ApiServer, directory: str) -> list[str]:
    """Create every CRD in ``directory``'s YAML files and wait until each is Established."""
    names = []
    for file in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            server.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
            names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + 30
    for name in names:
        while True:
            crd = server.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = crd.get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} not Established in 30 s")
            time.sleep(0.1)
    return names


@contextmanager
def api_server(gateway_api: bool = True) -> Iterator[ApiServer]:
    """Start etcd and kube-apiserver (and install the Gateway API CRDs); stop them after."""
    assets = tool("kube-assets", "AGENTCTL_KUBE_ASSETS")
    workdir = Path(tempfile.mkdtemp(prefix="agentctl-kube-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        etcd_log = workdir / "etcd.log"
        with open(etcd_log, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        f"{assets}/etcd",
                        f"--data-dir={workdir / 'etcd'}",
                        f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                        f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                        f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                        "--unsafe-no-fsync",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (workdir / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        (workdir / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (workdir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n{LIMITED_TOKEN},limited,limited-uid\n'
        )
        cert_dir = workdir / "certs"
        api_log = workdir / "kube-apiserver.log"
        with open(api_log, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        f"{assets}/kube-apiserver",
                        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                        f"--cert-dir={cert_dir}",
                        "--bind-address=127.0.0.1",
                        "--advertise-address=127.0.0.1",
                        f"--secure-port={api_port}",
                        "--service-cluster-ip-range=10.96.0.0/16",  # room for 1,000s of Services
                        f"--token-auth-file={workdir / 'tokens.csv'}",
                        "--authorization-mode=RBAC",
                        "--service-account-issuer=https://kubernetes.default.svc",
                        f"--service-account-key-file={workdir / 'sa.pub'}",
                        f"--service-account-signing-key-file={workdir / 'sa.key'}",
                        "--allow-privileged=true",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        url = f"https://127.0.0.1:{api_port}"
        ca_file = str(cert_dir / "apiserver.crt")
        _wait_ready(url, ca_file, procs[-1], api_log)
        server = ApiServer(url, ca_file, workdir)
        if gateway_api:
            install_crds(server, tool("gateway-crds", "AGENTCTL_GATEWAY_CRDS"))
        yield server
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
