"""Running ``agentctl controller`` as a process in integration tests: a repository with the
example agent, the process with its log, and polling until something holds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The agentctl command of the interpreter running the tests (the checkout, installed editable).
AGENTCTL = str(Path(sys.executable).with_name("agentctl"))
REPO = Path(__file__).resolve().parents[2]
#: The example manifests of the repository.
EXAMPLES = REPO / "manifests"

AGENT = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: {name}
spec:
  description: {description}
  source:
    code: ../agents/support_bot/agent.py
    config: ../agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [current]
  aliases:
    champion: current
"""

SERVED = (
    AGENT
    + """\
  serving:
    traffic:
      - alias: champion
        percent: 100
"""
)


def repo_with(tmp_path: Path, manifest: str, name: str = "agent.yaml") -> Path:
    """A repository with the example support bot's source and one manifest."""
    examples = Path(__file__).resolve().parents[2] / "manifests" / "agents" / "support_bot"
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "agents" / "support_bot").mkdir(parents=True)
    for f in ("agent.py", "config.yaml"):
        (root / "agents" / "support_bot" / f).write_text((examples / f).read_text())
    (root / "manifests").mkdir()
    (root / "manifests" / name).write_text(manifest)
    return root


class Proc:
    """One ``agentctl controller`` process, its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.log, self.port = log, port
        with open(log, "wb") as out:
            self.p = subprocess.Popen(
                [AGENTCTL, "controller", *args, "--listen", f"127.0.0.1:{port}"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def applied(self) -> list[str]:
        """The actions this process applied, as logged: 'agent X: <address> <verb> <detail>'."""
        return re.findall(r"INFO agentctl\.controller: (agent \S+: \S+ \S+.*)", self.text())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)
        return self.p.wait(timeout)


def until(
    what: str, condition: Callable[[], Any], timeout: float = 60, procs: tuple[Proc, ...] = ()
) -> Any:
    """Poll ``condition`` until it is truthy; an exception it raises counts as not yet."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:
            value, last = None, repr(exc)
        if value:
            return value
        time.sleep(0.1)
    logs = "\n".join(p.text()[-3000:] for p in procs)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})\n{logs}")


def one_source(examples: Path) -> None:
    """Make the example summarizer (a champion and a challenger from two sources) an agent of
    one source, both aliases on `current`, and the example support bot one without an
    evaluation: for tests that count what one apply logs and writes (an evaluation's run,
    traces and assessments are tested in test_quality_gate and test_evaluator)."""
    manifest = examples / "summarizer.yaml"
    text = manifest.read_text()
    start, end = text.index("    # The champion"), text.index("    - current")
    manifest.write_text(text[:start] + text[end:].replace("champion: stable", "champion: current"))
    without_evaluation(examples)


def without_evaluation(examples: Path) -> None:
    """The example support bot without its spec.evaluation (the last block of its manifest)."""
    manifest = examples / "support-bot.yaml"
    if manifest.exists():  # (a test may have removed the agent)
        text = manifest.read_text()
        manifest.write_text(text[: text.index("  # A quality gate")])
