"""``agentctl status`` as a view: built from the snapshots alone, rendered as a table or JSON."""

from __future__ import annotations

import json
from dataclasses import replace

from controller.core.evaluation.record import Recorded
from controller.core.render.status import known_agents, status_view
from controller.core.rollout.codec import Phase, RolloutState
from controller.core.rollout.gates import Verdict
from controller.core.state.observed import (
    AGENT_TAG,
    AgentServing,
    ObservedModel,
    ServedVersion,
    ServingSnapshot,
)
from tests.support.builders import model, snapshot


def test_versions_aliases_weights_servers_and_the_rollout_line() -> None:
    state = RolloutState(
        canary=2, stable=1, digest="d", phase=Phase.PAUSED, step=1, message="waiting",
        failures={"errors": 1}, verdicts={"errors": Verdict.FAILED},
    )  # fmt: skip
    bot = model("bot", aliases={"champion": 1}, versions={1: None, 2: None},
                tags=state.to_storage())  # fmt: skip
    failed = Recorded("sha256:e", False, "run-1", {"pii_detection": 0.5}, "pii_detection 0.5")
    bot.versions[2] = replace(bot.versions[2], tags=failed.tags())
    reg = snapshot(bot)
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
        "EVAL",
        "ROLLOUT",
    ]
    assert lines[1].split() == ["bot", "bot", "1", "champion", "90%", "ready", "stable"]
    assert lines[2].split() == ["2", "10%", "shadow", "5%", "not", "ready", "failed", "canary"]
    assert "Serving at http://127.0.0.1:8765" in lines
    assert lines[-1] == (
        "bot: rollout v2 over v1: Paused, step 2: waiting; gates: errors Failed (1 failed)"
    )
    data = json.loads(view.render("json"))
    assert data["agents"]["bot"]["versions"]["2"] == {
        "aliases": [], "weight": 10, "server": "not ready", "shadow": 5, "evaluation": "failed",
    }  # fmt: skip
    assert data["agents"]["bot"]["versions"]["1"]["evaluation"] is None
    assert data["agents"]["bot"]["rollout"]["step"] == 2


def test_unmanaged_models_are_not_agents_and_nothing_says_so() -> None:
    reg = snapshot(model("theirs", owner=None))
    assert known_agents(reg, ServingSnapshot()) == set()
    assert status_view(reg, ServingSnapshot()).render() == "No agents in the registry or served."
    assert known_agents(None, ServingSnapshot()) == set()


def _shared(name: str, owner: str) -> ObservedModel:
    """A model ``owner`` manages for the agent 'shared' (each owner names its model apart)."""
    m = model(name, owner=owner, versions={1: None}, aliases={"champion": 1})
    return replace(m, tags={**m.tags, AGENT_TAG: "shared"})


def test_only_the_owners_models_and_what_serves_them_are_shown() -> None:
    reg = snapshot(_shared("shared-teama", "teamA"), _shared("shared-teamb", "teamB"))
    served = ServingSnapshot({
        "shared": AgentServing("shared", "shared-teama", {1: ServedVersion(1, "shared-teama")},
                               {1: 100}),
        "other": AgentServing("other", "other", {1: ServedVersion(1, "other")}, {1: 100}),
    })  # fmt: skip

    view = status_view(reg, served, owner="teamB").to_dict()["agents"]
    assert set(view) == {"shared", "other"}  # 'other': a model the registry does not hold
    assert view["shared"]["model"] == "shared-teamb"
    assert view["shared"]["versions"]["1"]["weight"] is None  # teamA's route is not teamB's

    assert known_agents(reg, ServingSnapshot(), "teamC") == set()
    mine = status_view(reg, ServingSnapshot(), owner="teamA").to_dict()["agents"]
    assert mine["shared"]["model"] == "shared-teama"


def test_the_version_of_agentctl_is_shown_in_text_and_json() -> None:
    view = status_view(snapshot(), ServingSnapshot(), version="9.9.9")
    assert view.render().splitlines() == ["No agents in the registry or served.", "agentctl 9.9.9"]
    assert json.loads(view.render("json"))["agentctl"] == "9.9.9"


def test_header_routes_and_affinity_are_shown() -> None:
    served = ServingSnapshot(
        {
            "bot": AgentServing(
                "bot", "bot", {1: ServedVersion(1, "bot"), 2: ServedVersion(2, "bot")},
                {1: 100, 2: 0}, None, "", (("x-agent-version", "canary", 2),),
                ("x-session-id", None),
            )
        },
        "http://127.0.0.1:8765",
    )  # fmt: skip
    view = status_view(snapshot(model("bot", versions={1: None, 2: None})), served)
    assert (
        "bot: routes: x-agent-version: canary -> v2; conversations kept on one version "
        "(context.conversation_id, header x-session-id)"
    ) in view.render().splitlines()
    data = json.loads(view.render("json"))["agents"]["bot"]
    assert data["routes"] == [{"header": "x-agent-version", "value": "canary", "version": 2}]
    assert data["affinity"] == {"header": "x-session-id", "cookie": None}
