"""What the parent of a logging process says and gives it (no child is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.adapters.mlflow.logger import child_uri, exit_status


def test_a_relative_sqlite_file_is_made_absolute_for_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert child_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert child_uri("sqlite:///db/m.db?timeout=5") == f"sqlite:///{tmp_path / 'db/m.db'}?timeout=5"
    for same in (
        "sqlite:////abs/m.db",
        "sqlite:///:memory:",
        "http://127.0.0.1:5000",
        "databricks",
    ):
        assert child_uri(same) == same
    assert os.path.isabs(child_uri("sqlite:///mlflow.db")[len("sqlite:///") :])


@pytest.mark.parametrize(
    ("code", "said"),
    [(0, "exited 0"), (1, "exited 1"), (-9, "was killed by SIGKILL"), (-2, "was killed by SIGINT"),
     (-200, "was killed by signal 200")],
)  # fmt: skip
def test_the_exit_status_says_exited_or_killed(code: int, said: str) -> None:
    assert exit_status(code) == said
