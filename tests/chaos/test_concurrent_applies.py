"""Two ``agentctl apply --target registry`` of the same new source, started together, round
after round: with the registry lock (the second waits for the first), and without it
(``--no-lock``: they race, and the apply that made a duplicate deletes it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import chaos
from tests.support.controller import one_source
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

ROUNDS = 20


def test_two_applies_at_once_register_one_version_per_source(
    examples: Path, proxy: CountingProxy, client: Any, workdir: Path
) -> None:
    one_source(examples)  # one source: one version per round
    env = chaos.env_for(proxy.url)
    config = examples / "agents" / "summarizer" / "config.yaml"
    original = config.read_text()
    started = time.monotonic()
    for n in range(ROUNDS):
        config.write_text(original + f"\n# round {n}\n")  # a new source: a new digest
        lock = ["--lock-timeout", "300"] if n % 2 == 0 else ["--no-lock"]
        procs = [chaos.start(["apply", str(examples), *lock], env, workdir) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, f"round {n}: {out}\n{err}"
        assert chaos.duplicates(client) == {}, f"round {n}"
        code, text = chaos.run(["plan", str(examples), "--detailed-exitcode"], env, workdir)
        assert code == 0, f"round {n}: {text}"
    versions = client.search_model_versions("name = 'summarizer'", max_results=1000)
    assert len(versions) == ROUNDS
    elapsed = time.monotonic() - started
    removed = sum(r.path.startswith("/api/2.0/mlflow/model-versions/delete") for r in proxy.records)
    print(f"\nchaos: {ROUNDS} rounds of two applies at once in {elapsed:.0f} s: 0 duplicates left, "
          f"{removed} made by a race and deleted by the apply that made it")  # fmt: skip
