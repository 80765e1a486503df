"""`agentctl up` re-plans on manifest and source edits, not on what apply and serving write."""

from __future__ import annotations

from pathlib import Path

import pytest
import watchfiles

from controller.app.manager import watch_filter


@pytest.mark.parametrize(
    ("path", "seen"),
    [
        ("repo/manifests/bot.yaml", True),
        ("repo/manifests/agents/bot/agent.py", True),
        ("repo/manifests/agents/bot/config.yaml", True),
        ("repo/mlflow.db", False),
        ("repo/mlflow.db-journal", False),
        ("repo/mlruns/0/meta.yaml", False),
        ("repo/mlartifacts/1/model/MLmodel", False),
        ("repo/.agentctl/state.json", False),
        ("elsewhere/run/state.json", False),  # the --run-dir, wherever it is
        ("repo/.git/index", False),
    ],
)
def test_up_watches_sources_not_its_own_writes(tmp_path: Path, path: str, seen: bool) -> None:
    accept = watch_filter(tmp_path / "elsewhere" / "run")
    assert accept(watchfiles.Change.modified, str(tmp_path / path)) is seen
