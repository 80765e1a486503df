"""The real MLflow server fixtures that tests/integration and tests/chaos each use: one
``mlflow server`` (sqlite, 127.0.0.1, one worker) per suite for the session, a registry emptied
for each test, and a counting (fault-injecting) proxy in front of it. Each suite's conftest
imports them, so each suite has a server of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import CountingProxy

__all__ = ["PROMPTS", "client", "mlflow_server", "proxy"]

#: The search filter that finds prompts (a registered model tagged as one).
PROMPTS = "tags.`mlflow.prompt.is_prompt` = 'true'"

# MLflow's client retries a failed request 7 times with backoff (minutes). In the test process
# that only ever hides a bug, and a request still queued when the session's server stops (an
# async trace export) would hold up the interpreter's exit; fail fast instead.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(mlflow_server: MlflowServer):  # type: ignore[no-untyped-def]
    """An MlflowClient on a registry emptied for this test: its registered models, and its
    prompts (model searches leave those out unless the filter names their tag)."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    for rm in c.search_registered_models(max_results=1000):
        c.delete_registered_model(rm.name)
    for rm in c.search_registered_models(filter_string=PROMPTS, max_results=1000):
        c.delete_prompt(rm.name)  # delete_registered_model refuses a prompt
    return c


@pytest.fixture
def proxy(mlflow_server: MlflowServer, client: object) -> Iterator[CountingProxy]:
    with CountingProxy(mlflow_server.url) as p:
        yield p
