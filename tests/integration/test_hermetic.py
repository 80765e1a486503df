"""The suite is hermetic: a caller's own agentctl, MLflow and Kubernetes settings (a run
directory, a router port, a tracking server, a kubeconfig...) change nothing in it, and it starts
nothing where they point. Proved by running a real serving test in a pytest of its own with all
of them exported to unrelated values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest

from tests.support.controller import REPO
from tests.support.local import processes_of

pytestmark = pytest.mark.integration

SERVING_TEST = (
    "tests/integration/test_working_directory.py::"
    "test_apply_from_a_repository_with_its_own_controller_package"
)


def test_a_serving_test_passes_with_the_callers_settings_pointing_elsewhere(
    tmp_path: Path,
) -> None:
    decoy_run_dir = tmp_path / "my-own-run-dir"
    # (the inner test's run directory must fit a Unix socket's path: a short base directory)
    with socket.socket() as held, socket.socket() as closed, TemporaryDirectory() as inner:
        held.bind(("127.0.0.1", 0))
        held.listen()  # the caller's router port, in use
        closed.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {**os.environ}
        env.update(
            AGENTCTL_RUN_DIR=str(decoy_run_dir),
            AGENTCTL_ROUTER_PORT=str(held.getsockname()[1]),
            AGENTCTL_TARGET="kubernetes",
            AGENTCTL_OWNER="someone-else",
            AGENTCTL_RETRY_ATTEMPTS="1",
            MLFLOW_TRACKING_URI=nowhere,
            MLFLOW_REGISTRY_URI=nowhere,
            KUBECONFIG=str(tmp_path / "no-such-kubeconfig"),
        )
        result = subprocess.run(
            [
                sys.executable, "-m", "pytest", SERVING_TEST, "-q", "-p", "no:cacheprovider",
                "--basetemp", inner,
            ],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
    assert not decoy_run_dir.exists(), "something was started in the caller's run directory"
    assert processes_of(decoy_run_dir) == []
