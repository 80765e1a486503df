"""A create the server commits late: the proxy holds ``model-versions/create`` 8 s while the
client gives up after 3 s (``MLFLOW_HTTP_REQUEST_TIMEOUT``), so the apply retries, registers
again, and the held request commits after it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import chaos
from tests.support.controller import one_source
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

RUNS = 10
HOLD = 8.0
CLIENT_TIMEOUT = "3"


def test_a_create_committed_after_the_client_gave_up_leaves_one_version(
    examples: Path, proxy: CountingProxy, client: Any, workdir: Path
) -> None:
    one_source(examples)  # one source: one version per round
    env = chaos.env_for(proxy.url, MLFLOW_HTTP_REQUEST_TIMEOUT=CLIENT_TIMEOUT)
    assert chaos.run(["apply", str(examples)], env, workdir)[0] == 0
    config = examples / "agents" / "summarizer" / "config.yaml"
    original = config.read_text()
    started = time.monotonic()
    for n in range(RUNS):
        config.write_text(original + f"\n# run {n}\n")
        proxy.reset()
        proxy.hold("model-versions/create", HOLD)
        code, text = chaos.run(["apply", str(examples)], env, workdir)
        assert code == 0, f"run {n}: {text}"
        creates = [r for r in proxy.records if "model-versions/create" in r.path]
        assert len(creates) == 2, f"run {n}: the held create and the retry's: {creates}"
        assert chaos.duplicates(client) == {}, f"run {n}"
        code, text = chaos.run(["plan", str(examples), "--detailed-exitcode"], env, workdir)
        assert code == 0, f"run {n}: {text}"
    elapsed = time.monotonic() - started
    versions = client.search_model_versions("name = 'summarizer'", max_results=1000)
    assert len(versions) == RUNS + 1
    print(f"\nchaos: {RUNS} creates held {HOLD:g} s past a {CLIENT_TIMEOUT} s client timeout, "
          f"in {elapsed:.0f} s: each committed late, 0 duplicates left")  # fmt: skip
