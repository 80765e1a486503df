"""A local daemon that fails to start is reported with the lines of this start only (not the
daemon log's whole history) and the log's path."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.adapters.local.client import LocalServing
from controller.adapters.local.rundir import RunDir, tail
from controller.core.errors import PermanentBackendError


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_failed_start_shows_only_what_this_start_wrote(tmp_path: Path, held_port: int) -> None:
    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    run_dir.daemon_log.write_text("".join(f"an earlier start, line {i}\n" for i in range(50)))
    serving = LocalServing(
        run_dir.path, "sqlite:///mlflow.db", experiment_of=lambda m: "", router_port=held_port
    )
    with pytest.raises(PermanentBackendError) as raised:
        serving.ensure_daemon()
    message = str(raised.value)
    assert str(run_dir.daemon_log) in message
    assert "an earlier start" not in message
    assert "Address already in use" in message, message
    assert "an earlier start, line 49" in run_dir.daemon_log.read_text()  # the log itself kept


def test_tail_reads_from_an_offset_and_says_when_nothing_was_written(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("old 1\nold 2\n")
    start = log.stat().st_size
    with log.open("a") as fh:
        fh.write("new 1\nnew 2\nnew 3\n")
    assert tail(log, since=start) == "new 1\nnew 2\nnew 3"
    assert tail(log, lines=2, since=start) == "new 2\nnew 3"
    assert tail(log) == "old 1\nold 2\nnew 1\nnew 2\nnew 3"
    assert tail(log, since=log.stat().st_size) == "(nothing written)"
    assert tail(tmp_path / "missing.log") == "(no log)"
