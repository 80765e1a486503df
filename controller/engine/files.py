"""Reading a file of the desired state: a regular file only, up to a size, never blocking.

A FIFO named ``agent.yaml`` would block ``open`` until a writer came, and a symlink to
``/dev/zero`` would read forever: the loader reads manifests and sources only through
:func:`read_regular`, which looks at what the path is before opening it (``os.stat``), opens it
without blocking (``O_NONBLOCK``: a FIFO swapped in after the look opens at once and is refused
by ``fstat``), and reads at most ``limit`` bytes (a file that grows meanwhile is refused, not read
without bound).
"""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_MANIFEST_BYTES", "MAX_SOURCE_BYTES", "Unreadable", "read_regular", "shown_path"]

#: The most a manifest file may hold (a desired state is text a person writes and reviews).
MAX_MANIFEST_BYTES = 1024 * 1024
#: The most an agent's code, config or requirements file may hold.
MAX_SOURCE_BYTES = 10 * 1024 * 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


class Unreadable(Exception):
    """The path is not a regular file, is larger than allowed, or cannot be opened; ``reason``
    says which, in words that never quote the file's content."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path`` (symlinks followed), if it is a regular file of at most ``limit``
    bytes; else :class:`Unreadable`."""
    try:
        before = os.stat(path)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(before.st_mode):
        raise Unreadable(f"not a regular file ({_kind(before.st_mode)}): not read")
    if before.st_size > limit:
        raise Unreadable(
            f"{before.st_size} bytes, more than the {_mib(limit)} a file may hold here: not read"
        )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise Unreadable(f"not a regular file ({_kind(mode)}): not read")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise Unreadable(f"more than the {_mib(limit)} a file may hold here: not read")
    return data


def shown_path(file: str | os.PathLike[str]) -> str:
    """How a file is named in a diagnostic: relative to the working directory."""
    try:
        return os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)
