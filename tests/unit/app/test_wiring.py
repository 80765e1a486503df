"""The composition root: what it stamps on the records agentctl writes."""

from __future__ import annotations

from controller import __version__
from controller.app import wiring
from controller.app.options import Options
from controller.core.state.lock import lock_model
from controller.core.state.observed import WRITTEN_BY_TAG
from tests.support.fake_registry import FakeRegistry


def test_the_cli_s_registry_lock_says_which_agentctl_took_it() -> None:
    reg = FakeRegistry()
    make = wiring.lock(Options(owner="team"), reg)
    assert make is not None
    with make():
        tags = reg.models[lock_model("team")].tags
        assert tags[WRITTEN_BY_TAG] == f"agentctl {__version__}" == wiring.written_by()
    assert wiring.lock(Options(lock=False), reg) is None
