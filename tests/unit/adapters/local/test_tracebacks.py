"""The agent's own failure, read from a model server's log: a real one (a model whose agent
raises in ``__init__`` when served), paths made neutral."""

from __future__ import annotations

from pathlib import Path

from controller.adapters.local.tracebacks import agent_failure, library_dirs

LOG = Path(__file__).with_name("model_server_failed.log")
VENV = ("/home/u/.venv/lib/python3.11/site-packages", "/home/u/.venv/bin", "/usr/lib/python3.11")


def test_the_agent_s_exception_and_frames_are_found_before_mlflow_s_and_uvicorn_s() -> None:
    text = LOG.read_text()
    assert "a.py" not in "\n".join(text.splitlines()[-15:])  # the tail alone would not say
    assert agent_failure(text, VENV) == (
        "a.py:9: in connect: ConnectionError: the vector store at 127.0.0.1:1 refused the "
        "connection (called from a.py:15 in __init__, a.py:21 in <module>)"
    )


def test_a_log_with_no_frame_outside_the_installation_gives_nothing() -> None:
    text = LOG.read_text()
    start = text.rindex("The above exception was the direct cause")
    assert agent_failure(text[start:], VENV) is None
    assert agent_failure("no traceback here\n", VENV) is None


def test_without_the_scripts_directory_uvicorn_s_own_script_would_be_taken_for_the_agent() -> None:
    text = LOG.read_text()
    said = agent_failure(text, VENV[:1] + VENV[2:])
    assert said is not None and said.startswith("uvicorn:6: in <module>")
    # This installation's scripts directory is among the library directories by default.
    import sysconfig

    assert any(d.endswith(sysconfig.get_paths()["scripts"].rstrip("/")) for d in library_dirs())
