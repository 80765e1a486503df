"""Local serving in integration tests: the environment that selects it, a question the example
agents answer, and the processes a run directory's serving started."""

from __future__ import annotations

import os
from pathlib import Path

from controller.adapters.local.rundir import ENV_MARKER

# Model servers inherit agentctl's environment: let them retry trace exports, as MLflow does by
# default (the suite turns MLflow's retries off for itself).
LOCAL = {
    "AGENTCTL_TARGET": "local",
    "AGENTCTL_ROUTER_PORT": "0",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
}
QUESTION = {"input": [{"role": "user", "content": "how do I get a refund?"}]}


def processes_of(run_dir: Path) -> list[int]:
    """Every live process that local serving of ``run_dir`` started (they carry its path)."""
    marker = f"{ENV_MARKER}={run_dir.resolve()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
