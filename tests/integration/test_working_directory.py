"""agentctl's children (the model logger, the local daemon, the model servers) cannot be hijacked
by the user's working directory: a repository with a ``controller/`` package of its own (a common
name) whose import fails is served like any other."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.controller import SERVED, repo_with
from tests.support.local import LOCAL, QUESTION, processes_of

pytestmark = pytest.mark.integration

HIJACK = "raise ImportError('the user repository\\'s own controller.adapters was imported')\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The example support bot in a repository that also has packages named like agentctl's."""
    root = repo_with(tmp_path, SERVED.format(name="support-bot", description="Answers."))
    (root / "controller" / "adapters").mkdir(parents=True)
    (root / "controller" / "__init__.py").write_text("")  # importable, but not agentctl's
    (root / "controller" / "adapters" / "__init__.py").write_text(HIJACK)
    return root


@pytest.fixture
def run_dir(tmp_path: Path, agentctl: Any) -> Iterator[Path]:
    path = tmp_path / "run"
    yield path
    down = agentctl("down", env={**LOCAL, "AGENTCTL_RUN_DIR": str(path)})
    assert down.code == 0, down.err
    deadline = time.monotonic() + 15
    while processes_of(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(path) == [], "agentctl down left processes behind"


def test_apply_from_a_repository_with_its_own_controller_package(
    repo: Path, run_dir: Path, agentctl: Any
) -> None:
    env = {**LOCAL, "AGENTCTL_RUN_DIR": str(run_dir)}
    applied = agentctl("apply", "manifests", env=env, cwd=repo)
    assert applied.code == 0, applied.out + applied.err
    status = agentctl("status", "--format", "json", env=env, cwd=repo)
    assert status.code == 0, status.err
    url = json.loads((run_dir / "daemon.json").read_text())["router"]
    answer = requests.post(f"{url}/agents/support-bot/invocations", json=QUESTION, timeout=60)
    assert answer.status_code == 200, answer.text
    assert "refund" in answer.text.lower()
