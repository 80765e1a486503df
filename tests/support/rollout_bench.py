"""A rollout bench for integration tests: version 1 of the example support bot served with all
traffic by `agentctl apply` (local target, real model servers, the real MLflow server behind
the counting proxy), callers that send requests while a rollout runs, and the registry's and
the router's view of where the rollout stands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.core.rollout.codec import RolloutState
from tests.support.controller import AGENTCTL
from tests.support.local import LOCAL, QUESTION, processes_of
from tests.support.proxy import CountingProxy

__all__ = ["MANIFEST", "Bench", "Calls", "bench", "new_version", "rollout", "until"]

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: support-bot
spec:
  source:
    code: agents/support_bot/agent.py
    config: agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
  serving:
    traffic:
      - alias: champion
        percent: 100
"""


def rollout(steps: str, gates: str = "", delay: str = "3s", interval: str = "3s") -> str:
    text = f"""\
  rollout:
    canary:
      alias: champion
    promoteAlias: champion
    scaleDownDelay: {delay}
    steps:
{steps}"""
    if gates:
        text += f"""\
    analysis:
      interval: {interval}
      gates:
{gates}"""
    return text


@dataclass
class Calls:
    """Requests sent while a rollout runs: when, which version answered, and the status."""

    seen: list[tuple[float, str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def errors(self) -> int:
        return sum(1 for _, _, code in self.seen if code != 200)

    def by_version(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, v, _ in self.seen:
            out[v] = out.get(v, 0) + 1
        return out


@dataclass
class Bench:
    root: Path
    run_dir: Path
    agentctl: Any
    client: Any
    env: dict[str, str]
    tmp: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        return self.root / "support-bot.yaml"

    @property
    def config(self) -> Path:
        return self.root / "agents" / "support_bot" / "config.yaml"

    @property
    def router(self) -> str:
        return str(json.loads((self.run_dir / "daemon.json").read_text())["router"])

    def apply(self, *args: str) -> Any:
        return self.agentctl("apply", str(self.root), *args, env=LOCAL)

    def apply_wait(self, name: str) -> subprocess.Popen[str]:
        """`agentctl apply --wait` in the background, its output in a file."""
        log = open(self.tmp / f"apply-{name}.log", "w")  # noqa: SIM115 (closed with the process)
        p = subprocess.Popen(
            [AGENTCTL, "apply", str(self.root), "--wait", "--timeout", "600"],
            env=self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        return (self.tmp / f"apply-{name}.log").read_text()

    def state(self) -> RolloutState | None:
        tags = self.client.get_registered_model("support-bot").tags
        return RolloutState.from_storage(tags)

    def champion(self) -> int:
        return int(self.client.get_model_version_by_alias("support-bot", "champion").version)

    def weights(self) -> dict[int, int]:
        state = json.loads((self.run_dir / "state.json").read_text())
        agent = state["agents"].get("support-bot") or {}
        return {int(v): int(p) for v, p in (agent.get("weights") or {}).items()}

    def call_while(self, calls: Calls, threads: int = 3) -> list[threading.Thread]:
        def caller() -> None:
            with requests.Session() as http:
                while not calls.stop.is_set():
                    try:
                        r = http.post(
                            f"{self.router}/agents/support-bot/invocations", json=QUESTION,
                            timeout=30,
                        )  # fmt: skip
                        calls.seen.append(
                            (time.time(), r.headers.get("X-Agentctl-Version", "?"), r.status_code)
                        )
                    except requests.RequestException:
                        calls.seen.append((time.time(), "?", 0))
                    time.sleep(0.02)

        started = [threading.Thread(target=caller, daemon=True) for _ in range(threads)]
        for t in started:
            t.start()
        return started


def until(what: Callable[[], Any], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {why}")


@pytest.fixture
def bench(
    examples: Path, agentctl: Any, client: Any, proxy: CountingProxy, tmp_path: Path
) -> Iterator[Bench]:
    """Version 1 of the support bot, served with all traffic by `agentctl apply`."""
    root = examples  # the manifests, with the example agents' sources under agents/
    for f in examples.glob("*.yaml"):
        f.unlink()
    (examples / "support-bot.yaml").write_text(MANIFEST)
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=proxy.url, AGENTCTL_RETRY_ATTEMPTS="3", AGENTCTL_RETRY_DEADLINE="20",
        AGENTCTL_RUN_DIR=str(tmp_path / ".agentctl"), **LOCAL,
    )  # fmt: skip
    b = Bench(root, tmp_path / ".agentctl", agentctl, client, env, tmp_path)
    first = b.apply()
    assert first.code == 0, first.out + first.err
    assert b.weights() == {1: 100}
    try:
        yield b
    finally:
        for p in b.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        down = agentctl("down", env=LOCAL)
        assert down.code == 0, down.err
        deadline = time.monotonic() + 15
        while processes_of(b.run_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(b.run_dir) == [], "agentctl down left processes behind"


def new_version(b: Bench, greeting: str, extra: str = "") -> None:
    text = b.config.read_text().replace("Hi, this is the support bot.", greeting)
    b.config.write_text(text + extra)
