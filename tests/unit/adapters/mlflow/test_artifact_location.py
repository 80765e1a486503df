"""A sqlite registry's new experiments keep their artifacts beside the database file."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.adapters.mlflow.client import artifact_location


def test_a_sqlite_file_keeps_artifacts_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    beside = str(tmp_path / "mlartifacts" / "agentctl-bot")
    assert artifact_location("sqlite:///mlflow.db", "/agentctl/bot") == beside
    assert artifact_location(f"sqlite:///{tmp_path}/mlflow.db?mode=rw", "/agentctl/bot") == beside
    assert artifact_location("sqlite:////srv/reg/mlflow.db", "/agentctl/a.b") == (
        "/srv/reg/mlartifacts/agentctl-a.b"
    )


def test_a_model_named_dot_dot_stays_inside_mlartifacts() -> None:
    where = artifact_location("sqlite:////srv/reg/mlflow.db", "/agentctl/..")
    assert where is not None and Path(where).parent == Path("/srv/reg/mlartifacts")


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:5000", "sqlite://", "sqlite:///:memory:", "databricks"]
)
def test_other_registries_choose_for_themselves(uri: str) -> None:
    assert artifact_location(uri, "/agentctl/bot") is None
