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


# -- a version's bound prompts, merged into the model config it is logged with ----------------

PINS = {"system": "prompts:/support-system/7"}


def test_the_bound_prompts_are_merged_into_the_configs_own_keys() -> None:
    from controller.adapters.mlflow.logger import pinned_config

    config = {"llm": {"endpoint": "x"}, "prompts": {"system": "old", "greeting": "prompts:/g/1"}}
    assert pinned_config(config, PINS) == {
        "llm": {"endpoint": "x"},
        "prompts": {"system": "prompts:/support-system/7", "greeting": "prompts:/g/1"},
    }
    assert config["prompts"]["system"] == "old"  # the file's content is not changed in place
    assert pinned_config(None, PINS) == {"prompts": PINS}  # no config file
    assert pinned_config({"prompts": None}, PINS) == {"prompts": PINS}


@pytest.mark.parametrize(
    ("config", "why"),
    [(["a"], "model config is a list"), ({"prompts": "p"}, "'prompts' is a str")],
)
def test_a_config_the_prompts_cannot_be_merged_into_is_refused(config: object, why: str) -> None:
    from controller.adapters.mlflow.logger import pinned_config

    with pytest.raises(ValueError, match=why):
        pinned_config(config, PINS)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config.yaml", "llm:\n  temperature: 0.2\nprompts:\n  greeting: prompts:/g/1\n"),
        ("config.json", '{"llm": {"temperature": 0.2}, "n": [1, 2]}'),
        ("config.yml", ""),
    ],
)
def test_the_config_file_is_read_as_mlflow_reads_a_model_config_path(
    tmp_path: Path, name: str, text: str
) -> None:
    from mlflow.utils.model_utils import _validate_and_get_model_config_from_file

    from controller.adapters.mlflow.logger import _read_config

    path = tmp_path / name
    path.write_text(text)
    assert _read_config(str(path)) == _validate_and_get_model_config_from_file(str(path))
    assert _read_config(None) is None
