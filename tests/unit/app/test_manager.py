"""The controller process: an address it cannot listen on is said plainly, and nothing starts."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support.controller import AGENTCTL


def _hermetic_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENTCTL_", "MLFLOW_")) and k != "KUBECONFIG"
    }


def test_an_occupied_listen_port_exits_1_with_a_clear_message_and_no_traceback(
    examples: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                AGENTCTL, "controller", "--manifests", str(examples), "--target", "local",
                "--tracking-uri", "http://127.0.0.1:9", "--run-dir", str(tmp_path / "run"),
                "--listen", f"127.0.0.1:{port}",
            ],
            env=_hermetic_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"--listen: cannot listen on 127.0.0.1:{port} (Address already in use)" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
