"""``agentctl status`` as a view: built from the snapshots alone, rendered as a table or JSON."""

from __future__ import annotations

import json

from controller.core.render.status import known_agents, status_view
from controller.core.rollout.codec import Phase, RolloutState
from controller.core.rollout.gates import Verdict
from controller.core.state.observed import AgentServing, ServedVersion, ServingSnapshot
from tests.support.builders import model, snapshot


def test_versions_aliases_weights_servers_and_the_rollout_line() -> None:
    state = RolloutState(
        canary=2, stable=1, digest="d", phase=Phase.PAUSED, step=1, message="waiting",
        failures={"errors": 1}, verdicts={"errors": Verdict.FAILED},
    )  # fmt: skip
    reg = snapshot(model("bot", aliases={"champion": 1}, versions={1: None, 2: None},
                         tags=state.to_storage()))  # fmt: skip
    served = ServingSnapshot(
        {"bot": AgentServing("bot", "bot", {1: ServedVersion(1, "bot", ready=True),
                                            2: ServedVersion(2, "bot", ready=False)},
                             {1: 90, 2: 10}, (2, 5))},
        "http://127.0.0.1:8765",
    )  # fmt: skip
    view = status_view(reg, served)
    lines = view.render().splitlines()
    assert lines[0].split() == [
        "AGENT",
        "MODEL",
        "VERSION",
        "ALIASES",
        "WEIGHT",
        "SERVER",
        "ROLLOUT",
    ]
    assert lines[1].split() == ["bot", "bot", "1", "champion", "90%", "ready", "stable"]
    assert lines[2].split() == ["2", "10%", "shadow", "5%", "not", "ready", "canary"]
    assert "Serving at http://127.0.0.1:8765" in lines
    assert lines[-1] == (
        "bot: rollout v2 over v1: Paused, step 2: waiting; gates: errors Failed (1 failed)"
    )
    data = json.loads(view.render("json"))
    assert data["agents"]["bot"]["versions"]["2"] == {
        "aliases": [], "weight": 10, "server": "not ready", "shadow": 5,
    }  # fmt: skip
    assert data["agents"]["bot"]["rollout"]["step"] == 2


def test_unmanaged_models_are_not_agents_and_nothing_says_so() -> None:
    reg = snapshot(model("theirs", owner=None))
    assert known_agents(reg, ServingSnapshot()) == set()
    assert status_view(reg, ServingSnapshot()).render() == "No agents in the registry or served."
    assert known_agents(None, ServingSnapshot()) == set()
