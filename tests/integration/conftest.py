"""Real servers for integration tests: one ``mlflow server`` (sqlite, 127.0.0.1, one worker)
for the session, a clean registry per test, and a counting proxy in front of it
(tests/support/servers); agentctl runs, controllers and a kube-apiserver."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import servers
from tests.support.controller import AGENTCTL, Proc
from tests.support.kube_apiserver import ApiServer, api_server
from tests.support.local import processes_of
from tests.support.mlflow_server import free_port
from tests.support.proxy import CountingProxy

# The suite's own MLflow server, a clean registry and a proxy (one server per suite).
mlflow_server = servers.mlflow_server
client = servers.client
proxy = servers.proxy


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def agentctl(proxy: CountingProxy, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the installed ``agentctl`` command against the proxied server, in ``tmp_path`` with
    its run directory pinned to ``tmp_path/.agentctl``. The registry target, unless ``env`` says
    ``AGENTCTL_TARGET=local``: model servers are for the serving tests."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
    ) -> Run:
        full_env = dict(os.environ)
        full_env.update(
            MLFLOW_TRACKING_URI=proxy.url,
            AGENTCTL_RETRY_ATTEMPTS="3",
            AGENTCTL_RETRY_DEADLINE="20",
            AGENTCTL_TARGET="registry",
            AGENTCTL_RUN_DIR=str(tmp_path / ".agentctl"),
        )
        full_env.update(env or {})
        p = subprocess.run(
            [AGENTCTL, *args], capture_output=True, text=True, env=full_env, cwd=cwd or tmp_path,
            timeout=timeout, check=False,
        )  # fmt: skip
        return Run(p.returncode, p.stdout, p.stderr)

    return run


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``agentctl controller`` processes, each with a run directory of its own under
    ``tmp_path``; after the test, kill them and stop any local serving they left there."""
    started: list[tuple[Proc, dict[str, str]]] = []

    def start(*args: str, name: str = "a", env: dict[str, str] | None = None) -> Proc:
        full = dict(
            os.environ, AGENTCTL_RETRY_ATTEMPTS="2", AGENTCTL_RETRY_DEADLINE="10",
            AGENTCTL_RUN_DIR=str(tmp_path / f"run-{name}"),
        )  # fmt: skip
        full.update(env or {})
        proc = Proc(list(args), full, tmp_path / f"controller-{name}.log", free_port())
        started.append((proc, full))
        return proc

    yield start
    for proc, full in started:
        if proc.p.poll() is None:
            proc.stop(signal.SIGKILL)
        run_dir = Path(full["AGENTCTL_RUN_DIR"])
        if (run_dir / "daemon.json").exists():
            subprocess.run(
                [AGENTCTL, "down"], env=full, capture_output=True, timeout=60, check=False
            )
        assert processes_of(run_dir) == [], f"processes left in {run_dir}"


@pytest.fixture
def available(kube: ApiServer, ns: str) -> Iterator[None]:
    """Mark Deployments Available as they appear, like a Deployment controller."""
    stop = threading.Event()

    def mark() -> None:
        while not stop.wait(0.3):
            try:
                kube.mark_available(ns)
            except urllib.error.HTTPError:  # a Deployment deleted meanwhile
                continue

    t = threading.Thread(target=mark, daemon=True)
    t.start()
    yield
    stop.set()
    t.join(5)


@pytest.fixture(scope="module")
def kube() -> Iterator[ApiServer]:
    """A kube-apiserver and etcd (with the Gateway API CRDs) for the module's tests."""
    with api_server() as server:
        yield server
