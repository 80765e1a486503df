"""The registry lock and one version per digest, against a real MLflow server (REST adapter, in
the installed CLI) and a real sqlite registry (the MLflow client adapter)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.mlflow.client import MlflowRegistry
from controller.adapters.mlflow.rest import RestRegistry
from controller.core.state.lock import LOCK_PREFIX, lock_model
from controller.core.state.observed import DIGEST_TAG
from controller.engine.lock import RegistryLock
from controller.engine.retry import RetryPolicy
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration


def test_an_apply_is_refused_while_another_holds_the_lock_until_force_unlock(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    held = RegistryLock(RestRegistry(proxy.url), "agentctl", holder="ci-runner-7:4242")
    record = held.acquire()
    try:
        proxy.reset()
        refused = agentctl("apply", str(examples))
        assert refused.code == 1, refused.out + refused.err
        assert "held by ci-runner-7:4242 since" in refused.err
        assert f"agentctl force-unlock {record.lock_id}" in refused.err
        # Nothing applied: the one write was the refused create of the lock itself.
        assert [r.path.split("?")[0] for r in proxy.writes()] == [
            "/api/2.0/mlflow/registered-models/create"
        ]
        names = {m.name for m in client.search_registered_models()}
        assert names == {lock_model("agentctl")}

        wrong = agentctl("force-unlock", "not-the-id")
        assert wrong.code == 1 and "held by ci-runner-7:4242" in wrong.err
        unlocked = agentctl("force-unlock", record.lock_id)
        assert unlocked.code == 0, unlocked.err
        assert "held by ci-runner-7:4242" in unlocked.out
    finally:
        held.release()
    applied = agentctl("apply", str(examples))
    assert applied.code == 0, applied.err
    names = {m.name for m in client.search_registered_models()}
    assert names == {"support-bot", "summarizer"}  # released: the lock model is gone
    assert agentctl("plan", str(examples), "--detailed-exitcode").code == 0


def test_an_apply_waits_for_the_lock_with_lock_timeout(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    held = RegistryLock(RestRegistry(proxy.url), "agentctl", holder="elsewhere:1")
    held.acquire()
    timer = threading.Timer(3.0, held.release)
    timer.start()
    try:
        applied = agentctl("apply", str(examples), "--lock-timeout", "60")
    finally:
        timer.join()
    assert applied.code == 0, applied.err
    assert client.get_registered_model("summarizer").aliases == {"champion": "1", "challenger": "2"}


def test_the_client_adapter_locks_and_deletes_versions_as_the_rest_one(tmp_path: Path) -> None:
    reg = MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    name = LOCK_PREFIX + "t"
    assert reg.create_lock(name, {"a": "1"}) is True
    assert reg.create_lock(name, {"a": "2"}) is False
    assert reg.read_lock(name) == {"a": "1"}
    assert reg.create_lock(name + ".x", {}) is True
    assert reg.rename_lock(name, name + ".x") is False  # the target exists: exclusive
    assert reg.rename_lock(name, name + ".y") is True
    assert reg.rename_lock(name, name + ".z") is False  # gone
    assert reg.read_lock(name) is None
    lock = RegistryLock(reg, "t", policy=RetryPolicy(attempts=1))
    with lock:
        assert reg.read_lock(lock_model("t")) is not None
    assert reg.read_lock(lock_model("t")) is None


def test_the_client_adapter_finds_and_deletes_versions_by_digest(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    c.create_registered_model("m")
    for _ in range(3):
        c.create_model_version("m", "s3://bucket/model", tags={DIGEST_TAG: "sha256:ab"})
    reg = MlflowRegistry(uri)
    assert [v.number for v in reg.versions_with_digest("m", "sha256:ab")] == [1, 2, 3]
    reg.delete_version("m", 2)
    reg.delete_version("m", 2)  # already gone: fine
    assert [v.number for v in reg.versions_with_digest("m", "sha256:ab")] == [1, 3]
