"""The chaos suite's servers: one ``mlflow server`` (sqlite, 127.0.0.1) for the session, a clean
registry and a fault-injecting proxy per test (tests/support/servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import servers

# The suite's own MLflow server, a clean registry and a proxy (one server per suite).
mlflow_server = servers.mlflow_server
client = servers.client
proxy = servers.proxy


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
