"""An apply SIGKILLed at every write of a whole first apply of the example manifests (once the
server has answered that write, before agentctl hears it); a re-apply then converges."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import chaos
from tests.support.controller import one_source
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration


def _reset(client: Any) -> None:
    for rm in client.search_registered_models(max_results=1000):
        client.delete_registered_model(rm.name)


# Every write of a first apply, each a kill, a re-apply and a plan (about 30 s a round on 2
# cores): past the suite's 600 s per test; each subprocess has its own limit.
@pytest.mark.timeout(1800)
def test_a_crash_at_any_write_is_finished_by_the_next_apply(
    examples: Path, proxy: CountingProxy, client: Any, workdir: Path
) -> None:
    one_source(examples)  # one source: the crash points of one version per agent
    env = chaos.env_for(proxy.url)
    # How many writes a whole first apply makes (the logging children's included), from the
    # state every round starts from (the experiments of a first apply stay: no models).
    assert chaos.run(["apply", str(examples)], env, workdir)[0] == 0
    _reset(client)
    proxy.reset()
    code, text = chaos.run(["apply", str(examples)], env, workdir)
    assert code == 0, text
    total = len(proxy.writes())
    started = time.monotonic()
    for n in range(1, total + 1):
        _reset(client)
        proxy.reset()
        apply = chaos.start(["apply", str(examples)], env, workdir)
        proxy.kill_at_write(apply.pid, n)
        apply.communicate(timeout=600)
        assert proxy.killed, f"write {n} of {total}: the apply ended before it"
        assert chaos.wait_gone(apply.pid) == [], f"write {n}: orphaned processes"
        proxy.reset()
        code, text = chaos.run(["apply", str(examples)], env, workdir)
        assert code == 0, f"re-apply after a kill at write {n}: {text}"
        assert chaos.duplicates(client) == {}, f"write {n}"
        code, text = chaos.run(["plan", str(examples), "--detailed-exitcode"], env, workdir)
        assert code == 0, f"write {n}: {text}"
    elapsed = time.monotonic() - started
    print(f"\nchaos: killed at each of {total} writes of a first apply and re-applied, in "
          f"{elapsed:.0f} s: all converged, 0 duplicates, 0 orphaned processes")  # fmt: skip
