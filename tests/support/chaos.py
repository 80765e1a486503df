"""Pieces of the chaos suite (tests/chaos): agentctl started as a process of its own session
against a proxied MLflow server, versions counted per digest, the processes a session left."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from controller.core.state.observed import DIGEST_TAG
from tests.support.controller import AGENTCTL


def env_for(tracking_uri: str, **extra: str) -> dict[str, str]:
    """The caller's environment without its agentctl/MLflow settings, pointed at the server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENTCTL_", "MLFLOW_")) and k != "KUBECONFIG"
    }
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        AGENTCTL_TARGET="registry",
        AGENTCTL_RETRY_ATTEMPTS="4",
        AGENTCTL_RETRY_DEADLINE="60",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``agentctl ARGS`` in a session of its own (so that what it leaves behind can be found)."""
    return subprocess.Popen(
        [AGENTCTL, *args], env=env, cwd=cwd, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    p = subprocess.run(
        [AGENTCTL, *args], env=env, cwd=cwd, text=True, capture_output=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    return p.returncode, p.stdout + p.stderr


def duplicates(client: Any) -> dict[tuple[str, str], int]:
    """(model, digest) -> number of versions, for every digest registered more than once."""
    counts = Counter(
        (mv.name, mv.tags.get(DIGEST_TAG, ""))
        for mv in client.search_model_versions(max_results=10000)
        if mv.tags.get(DIGEST_TAG)
    )
    return {k: n for k, n in counts.items() if n > 1}


def session_members(sid: int) -> list[int]:
    """The live processes of session ``sid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


def wait_gone(sid: int, timeout: float = 10.0) -> list[int]:
    """Wait for session ``sid`` to have no live process; return those left."""
    deadline = time.monotonic() + timeout
    while (left := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
