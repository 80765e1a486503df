"""read_regular: a regular file's bytes up to a limit; anything else refused without blocking."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from controller.engine.files import Unreadable, read_regular


def test_a_regular_file_up_to_the_limit_is_read(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_bytes(b"x" * 10)
    assert read_regular(f, 10) == b"x" * 10
    with pytest.raises(Unreadable, match="10 bytes, more than"):
        read_regular(f, 9)


@pytest.mark.timeout(30)
def test_special_files_are_refused_by_kind(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for path, kind in (
            (tmp_path / "fifo", "a FIFO"),
            (tmp_path / "sock", "a socket"),
            ("/dev/null", "a character device"),
            (tmp_path, "a directory"),
        ):
            with pytest.raises(Unreadable) as info:
                read_regular(path, 1024)
            assert info.value.reason == f"not a regular file ({kind}): not read"


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(Unreadable, match="cannot read: No such file"):
        read_regular(tmp_path / "nope.yaml", 1024)
