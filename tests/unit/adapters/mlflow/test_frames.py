"""Where an agent's code failed: its own frames, by the repository's names, not MLflow's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from controller.adapters.mlflow.frames import (
    Frame,
    agent_failure,
    agent_frames,
    describe,
    rename_paths,
)


def _load(path: Path) -> None:
    """Import ``path`` as MLflow's models from code does, and wrap its error as MLflow does."""
    spec = importlib.util.spec_from_file_location("code_model_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise RuntimeError(f"Failed to run user code from {path}. Error: {e!s}") from e
    finally:
        sys.modules.pop("code_model_test", None)


def test_an_error_at_import_names_the_agent_file_and_line(tmp_path: Path) -> None:
    code = tmp_path / "snapshot" / "agent.py"
    code.parent.mkdir()
    code.write_text("import math\n\nx = 1 / 0\n")
    with pytest.raises(RuntimeError) as caught:
        _load(code)
    said = agent_failure(caught.value, {str(code): "agents/summarizer/agent.py"})
    assert said == "agents/summarizer/agent.py:3: in <module>: ZeroDivisionError: division by zero"


def test_nested_calls_name_the_innermost_first_then_the_callers(tmp_path: Path) -> None:
    code = tmp_path / "agent.py"
    code.write_text(
        "def inner():\n    raise ValueError('bad key')\n\ndef outer():\n    inner()\n\nouter()\n"
    )
    with pytest.raises(RuntimeError) as caught:
        _load(code)
    said = agent_failure(caught.value, {str(code): "a/agent.py"})
    assert said == (
        "a/agent.py:2: in inner: ValueError: bad key "
        "(called from a/agent.py:5 in outer, a/agent.py:7 in <module>)"
    )


def test_mlflow_s_copy_of_the_code_in_the_model_counts_as_the_agent_s(tmp_path: Path) -> None:
    copy = tmp_path / "model" / "code" / "agent.py"
    copy.parent.mkdir(parents=True)
    copy.write_text("def predict():\n    return {}['x']\n\npredict()\n")
    with pytest.raises(RuntimeError) as caught:
        _load(copy)
    found = agent_frames(caught.value, {"/elsewhere/agent.py": "agents/bot/agent.py"})
    assert found is not None
    raised, frames = found
    assert isinstance(raised, KeyError)
    assert frames[-1] == Frame("agents/bot/agent.py", 2, "predict")


def test_an_error_outside_the_agent_s_files_is_not_attributed_to_them(tmp_path: Path) -> None:
    try:
        raise ValueError("set_model was given an int")
    except ValueError as exc:
        assert agent_failure(exc, {str(tmp_path / "agent.py"): "agent.py"}) is None


def test_describe_keeps_only_the_last_frames() -> None:
    frames = tuple(Frame("a.py", n, f"f{n}") for n in range(1, 6))
    said = describe("E: x", frames)
    assert said == "a.py:5: in f5: E: x (called from a.py:4 in f4, a.py:3 in f3)"


def test_a_syntax_error_names_the_agent_file_and_the_line_the_parser_stopped_at(
    tmp_path: Path,
) -> None:
    code = tmp_path / "snapshot" / "code" / "bad.py"
    code.parent.mkdir(parents=True)
    code.write_text("import os\n\ndef f(:\n    pass\n")
    with pytest.raises(RuntimeError) as caught:
        _load(code)
    said = agent_failure(caught.value, {str(code): "m2/agents/bad.py"})
    assert said == "m2/agents/bad.py:3: in <module>: SyntaxError: invalid syntax"


def test_paths_of_the_snapshot_and_of_mlflow_s_copy_are_named_as_the_repository_names_them() -> (
    None
):
    files = {"/tmp/agentctl-source-ab12/code/bad.py": "m2/agents/bad.py"}
    text = (
        "Failed to run user code from /tmp/agentctl-source-ab12/code/bad.py. Error: x; "
        'File "/tmp/tmpq1/agent/code/bad.py", line 4, in <module>; bad.py.bak stays; '
        "/tmp/other/code/bad.pyc stays"
    )
    assert rename_paths(text, files) == (
        "Failed to run user code from m2/agents/bad.py. Error: x; "
        'File "m2/agents/bad.py", line 4, in <module>; bad.py.bak stays; '
        "/tmp/other/code/bad.pyc stays"
    )
