"""`make run` reads and shows one registry and one router in every step: $MLFLOW_TRACKING_URI and
$AGENTCTL_ROUTER_PORT when exported, the embedded defaults otherwise (read from `make -n`, which
prints the recipe without running it)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REGISTRY_STEPS = ("apply", "plan", "status")


def recipe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AGENTCTL_"))}
    base.pop("TRACKING_URI", None)
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "run"],
        cwd=REPO, env={**base, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()


def tracking_uris(lines: list[str]) -> dict[str, str]:
    """The --tracking-uri of each agentctl step that talks to the registry."""
    found = {}
    for line in lines:
        words = shlex.split(line)
        if words and words[0].endswith("/agentctl") and words[1] in REGISTRY_STEPS:
            assert "--tracking-uri" in words, f"{words[1]} reads whatever the environment says"
            found[words[1]] = words[words.index("--tracking-uri") + 1]
    return found


@pytest.mark.parametrize(
    ("env", "uri", "port"),
    [
        ({}, "sqlite:///mlflow.db", "8765"),
        (
            {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5999", "AGENTCTL_ROUTER_PORT": "9911"},
            "http://127.0.0.1:5999",
            "9911",
        ),
    ],
)
def test_make_run_uses_one_tracking_uri_and_router_port(
    env: dict[str, str], uri: str, port: str
) -> None:
    lines = recipe(**env)
    assert tracking_uris(lines) == dict.fromkeys(REGISTRY_STEPS, uri)
    hint = next(line for line in lines if "curl" in line)
    assert f"localhost:{port}/agents/" in hint and "-w '\\n'" in hint, hint
