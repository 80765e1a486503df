"""The chaos suite's servers: one ``mlflow server`` (sqlite, 127.0.0.1) for the session, a clean
registry and a fault-injecting proxy per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import CountingProxy

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-chaos")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(mlflow_server: MlflowServer):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    for rm in c.search_registered_models(max_results=1000):
        c.delete_registered_model(rm.name)
    return c


@pytest.fixture
def proxy(mlflow_server: MlflowServer, client: object) -> Iterator[CountingProxy]:
    with CountingProxy(mlflow_server.url) as p:
        yield p


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
