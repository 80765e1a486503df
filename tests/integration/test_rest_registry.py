"""The controller's REST registry adapter against the real MLflow server, side by side with the
MLflow-client adapter the CLI uses: each primitive behaves the same (idempotent deletes, a create
retried after success, a model of another owner refused), and both observe the same snapshot of
the same server state, whichever wrote it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.mlflow.client import MlflowRegistry
from controller.adapters.mlflow.rest import RestRegistry, usable
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.state.observed import DIGEST_TAG, OWNER_TAG
from controller.engine.loader import load
from controller.ports import Registry, VersionSource
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

ADAPTERS: dict[str, Callable[[str], Registry]] = {
    "rest": RestRegistry,
    "client": lambda url: MlflowRegistry(url),
}


def summarizer(examples: Path) -> VersionSource:
    desired, _ = load(examples)
    (agent,) = [a for a in desired.agents if a.name == "summarizer"]
    assert agent.source is not None
    s = agent.source
    return VersionSource("summarizer", s.code_path, s.config_path, s.pip_requirements, s.digest)


@pytest.mark.parametrize("writer", sorted(ADAPTERS))
def test_primitives_behave_alike_and_both_adapters_observe_the_same(
    writer: str, mlflow_server: MlflowServer, client: Any, examples: Path
) -> None:
    reg = ADAPTERS[writer](mlflow_server.url)
    owned = {OWNER_TAG: "agentctl", "team": "care"}
    reg.create_model("m", "first", owned)
    reg.create_model("m", "first", owned)  # a create retried after it succeeded
    with pytest.raises(PermanentBackendError, match="created by someone else"):
        reg.create_model("m", "first", {OWNER_TAG: "someone-else"})
    reg.set_model_tag("m", "tier", "1")
    reg.delete_model_tag("m", "team")
    reg.delete_model_tag("m", "team")  # already gone: fine
    reg.set_model_description("m", "second")

    src = summarizer(examples)
    assert reg.log_version("m", src, {DIGEST_TAG: src.digest, "channel": "web"}, "v one") == 1
    assert reg.find_version("m", src.digest) == 1
    assert reg.find_version("m", "sha256:" + "0" * 64) is None
    assert reg.find_version("other", src.digest) is None
    reg.set_version_tag("m", 1, "stage", "canary")
    reg.delete_version_tag("m", 1, "channel")
    reg.delete_version_tag("m", 1, "channel")
    reg.set_version_description("m", 1, "version one")
    reg.set_alias("m", "champion", 1)
    reg.set_alias("m", "challenger", 1)
    reg.delete_alias("m", "challenger")
    reg.delete_alias("m", "challenger")

    rm = client.get_registered_model("m")
    assert rm.description == "second" and rm.aliases == {"champion": "1"}
    assert rm.tags == {OWNER_TAG: "agentctl", "tier": "1"}
    mv = client.get_model_version("m", "1")
    assert mv.description == "version one"
    assert mv.tags == {DIGEST_TAG: src.digest, "stage": "canary"}
    assert mv.source.startswith("models:/") and mv.status == "READY"

    snapshots = {name: make(mlflow_server.url).observe() for name, make in ADAPTERS.items()}
    assert snapshots["rest"] == snapshots["client"]
    assert snapshots["rest"].models["m"].versions[1].tags["stage"] == "canary"

    with pytest.raises(PermanentBackendError, match=r"set alias nope@x: .*RESOURCE_DOES_NOT_EXIST"):
        RestRegistry(mlflow_server.url).set_alias("nope", "x", 1)
    reg.delete_model("m")
    reg.delete_model("m")
    assert "m" not in reg.observe().models


def test_a_server_that_does_not_answer_is_temporary() -> None:
    dead = RestRegistry(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TemporaryBackendError, match="did not answer \\(connection refused\\)"):
        dead.observe()


def test_only_tracking_servers_use_the_rest_adapter() -> None:
    assert usable("http://127.0.0.1:5000") and usable("https://mlflow.example.com")
    assert not usable("sqlite:///mlflow.db") and not usable("databricks")


def test_both_adapters_read_the_same_traces_of_one_logged_model(
    mlflow_server: MlflowServer, client: Any
) -> None:
    """Traces as a served version writes them (metadata ``mlflow.modelId``), read back for a
    gate: state and duration of each, after a time, and only that model's."""
    import time

    import mlflow

    from controller.adapters.mlflow.client import experiment_name

    mlflow.set_tracking_uri(mlflow_server.url)
    exp = mlflow.set_experiment(experiment_name("traced"))
    ours = mlflow.initialize_logged_model(name="agent", experiment_id=exp.experiment_id)
    other = mlflow.initialize_logged_model(name="agent", experiment_id=exp.experiment_id)

    @mlflow.trace
    def answer(fail: bool) -> str:
        time.sleep(0.01)
        if fail:
            raise RuntimeError("injected")
        return "ok"

    def traced(model_id: str, fails: list[bool]) -> None:
        mlflow.set_active_model(model_id=model_id)
        for fail in fails:
            with contextlib.suppress(RuntimeError):
                answer(fail)
        mlflow.flush_trace_async_logging()

    before = int(time.time() * 1000) - 1
    traced(ours.model_id, [False, False, True, False])
    traced(other.model_id, [True, True])
    later = int(time.time() * 1000) + 1000
    for name in sorted(ADAPTERS):
        reg: Any = ADAPTERS[name](mlflow_server.url)
        seen = reg.traces("traced", ours.model_id, before, 100)
        assert sorted(s for s, _ in seen) == ["ERROR", "OK", "OK", "OK"], (name, seen)
        assert all(ms >= 10 for _, ms in seen), (name, seen)
        assert reg.traces("traced", ours.model_id, later, 100) == []
        assert len(reg.traces("traced", ours.model_id, before, 2)) == 2  # a limit, paged
        assert reg.traces("no-such-model", ours.model_id, before, 100) == []
