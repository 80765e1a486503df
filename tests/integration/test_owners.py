"""Two owners, one agent name, one real MLflow server: the rollout commands and ``status`` act on
and show only the models of the owner they run as (``--owner`` / ``AGENTCTL_OWNER``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.core.rollout.codec import STATE_TAG, Phase, RolloutState
from controller.core.rollout.commands import COMMAND_TAG
from tests.support.manifests import write_repo
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

SHARED = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: shared
spec:
  registeredModel: shared-{team}
"""


def _apply_as(team: str, tmp_path: Path, agentctl: Any, client: Any) -> str:
    """Apply the agent 'shared' as owner ``team`` (model shared-<team>), mid-rollout."""
    repo = write_repo(tmp_path / team, SHARED.format(team=team), "shared.yaml")
    applied = agentctl("apply", str(repo), env={"AGENTCTL_OWNER": team})
    assert applied.code == 0, applied.err + applied.out
    name = f"shared-{team}"
    state = RolloutState(canary=2, stable=1, digest="d", phase=Phase.PAUSED, message="waiting")
    client.set_registered_model_tag(name, STATE_TAG, state.to_storage()[STATE_TAG])
    return name


def test_an_owner_acts_on_and_sees_only_its_own_model_of_a_shared_agent_name(
    tmp_path: Path, agentctl: Any, client: Any, proxy: CountingProxy
) -> None:
    team_a = _apply_as("teama", tmp_path, agentctl, client)

    # teamb has no model for 'shared': its commands are refused, nothing is written.
    proxy.reset()
    for args in (("abort", "shared"), ("rollout", "promote", "shared"), ("rollback", "shared")):
        refused = agentctl(*args, env={"AGENTCTL_OWNER": "teamb"})
        assert refused.code == 1, refused.out
        assert "no registered model owned by 'teamb' belongs to agent 'shared'" in refused.err
        assert "'shared-teama' is managed by 'teama'" in refused.err
    assert proxy.writes() == []
    assert COMMAND_TAG not in client.get_registered_model(team_a).tags
    hidden = agentctl("status", "shared", env={"AGENTCTL_OWNER": "teamb"})
    assert hidden.code == 1 and "no agent 'shared' of owner 'teamb'" in hidden.err
    assert "No agents" in agentctl("status", env={"AGENTCTL_OWNER": "teamb"}).out

    # Once teamb has its own, its abort writes there and only there (the flag as the env var).
    team_b = _apply_as("teamb", tmp_path, agentctl, client)
    aborted = agentctl("abort", "shared", "--owner", "teamb")
    assert aborted.code == 0, aborted.err
    assert client.get_registered_model(team_b).tags[COMMAND_TAG].startswith("abort")
    assert COMMAND_TAG not in client.get_registered_model(team_a).tags

    for team, model in (("teama", team_a), ("teamb", team_b)):
        shown = agentctl("status", "-f", "json", env={"AGENTCTL_OWNER": team})
        assert shown.code == 0, shown.err
        assert json.loads(shown.out)["agents"]["shared"]["model"] == model
