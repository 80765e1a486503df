"""The run directory is private to its user (directories 0700, files 0600, whatever the umask,
and an older, looser one is tightened), and a log that a process appends to is rotated."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.adapters.local.rundir import RunDir, private_open, rotate


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: nothing is private unless agentctl makes it so."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_run_directory_and_its_files_are_private(tmp_path: Path, open_umask: None) -> None:
    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    RunDir.write(run_dir.state_file, {"agents": {}})
    with private_open(run_dir.daemon_log) as log:
        log.write(b"started\n")
    with private_open(run_dir.lock_file, "a+") as lock:
        lock.write("")
    assert _mode(run_dir.path) == _mode(run_dir.logs) == 0o700
    for f in (
        run_dir.state_file,
        run_dir.daemon_log,
        run_dir.lock_file,
        run_dir.path / ".gitignore",
    ):
        assert _mode(f) == 0o600, f


def test_a_world_readable_run_directory_from_before_is_tightened(
    tmp_path: Path, open_umask: None
) -> None:
    run_dir = RunDir(tmp_path / "run")
    run_dir.logs.mkdir(parents=True, mode=0o755)
    os.chmod(run_dir.path, 0o755)
    for f in (run_dir.state_file, run_dir.server_log("bot", 1)):
        f.write_text("{}")
        os.chmod(f, 0o644)
    run_dir.prepare()
    assert _mode(run_dir.path) == _mode(run_dir.logs) == 0o700
    assert _mode(run_dir.state_file) == _mode(run_dir.server_log("bot", 1)) == 0o600
    with private_open(run_dir.server_log("bot", 1)) as log:  # an existing file, opened again
        log.write(b"more\n")
    assert _mode(run_dir.server_log("bot", 1)) == 0o600


def test_a_log_that_a_process_appends_to_stays_bounded_and_keeps_its_latest_lines(
    tmp_path: Path, open_umask: None
) -> None:
    log = tmp_path / "bot-v1.log"
    limit = 64 << 10
    writer = (
        "import sys, time\n"
        "for i in range(4000):\n"
        "    sys.stdout.write(f'line {i:05d} ' + 'x' * 100 + '\\n'); sys.stdout.flush()\n"
        "    time.sleep(0.0005)\n"
    )
    with private_open(log) as out:
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=out)
    rotations = 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        rotations += rotate(log, limit)
        time.sleep(0.05)
    proc.wait(5)
    rotations += rotate(log, limit)
    assert rotations >= 3  # about 440 KB went through a 64 KiB log
    backup = log.with_name("bot-v1.log.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot-v1.log", "bot-v1.log.1"]
    assert backup.stat().st_size <= 2 * limit and log.stat().st_size <= limit
    assert _mode(backup) == 0o600
    text = log.read_bytes()
    # The writer kept appending at the end of the truncated file: no hole of NUL bytes, and the
    # last line it wrote is there.
    assert b"\0" not in text and b"line 03999 " in backup.read_bytes() + text


def test_a_small_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 10)
    assert not rotate(log, 10) and not rotate(tmp_path / "missing.log", 10)
    assert log.read_bytes() == b"x" * 10
