"""Where an agent's code failed, read from a model server's log: the last Python traceback that
passes through the agent's code, said as its exception line and the agent's frames
(``a.py:9: in connect: ConnectionError: ... (called from a.py:15 in __init__)``).

A model server that cannot load its model logs the agent's traceback first and then ~150 lines
of MLflow's, click's and uvicorn's; the tail of the log shows only those. A frame is the agent's
when its file is not part of the Python installation that runs the server (the standard library,
site-packages, ``<frozen ...>``): MLflow loads the agent's file from the model's directory.
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["agent_failure", "library_dirs"]

#: How many of the agent's frames a message names (the innermost first).
LIMIT = 3

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$')


@dataclass(frozen=True, slots=True)
class _Frame:
    file: str
    line: int
    function: str


def library_dirs() -> tuple[str, ...]:
    """The directories of this Python installation's own code and installed packages."""
    paths = sysconfig.get_paths()
    kinds = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")  # scripts: bin/uvicorn
    found = {paths[k] for k in kinds if k in paths}
    return tuple(sorted(os.path.realpath(p) for p in found))


def _tracebacks(lines: Sequence[str]) -> list[tuple[list[_Frame], str]]:
    """Each traceback in ``lines``: its frames and its exception's first line."""
    out: list[tuple[list[_Frame], str]] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            continue
        frames: list[_Frame] = []
        i += 1
        while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
            match = _FRAME.match(lines[i])
            if match:
                frames.append(_Frame(match["file"], int(match["line"]), match["function"]))
            i += 1
        if i < len(lines):
            out.append((frames, lines[i].strip()))
    return out


def agent_failure(log: str, libraries: Sequence[str] | None = None) -> str | None:
    """The last traceback in ``log`` with a frame outside ``libraries`` (default: this Python's,
    :func:`library_dirs`): its exception and those frames; None if there is none."""
    dirs = tuple(libraries) if libraries is not None else library_dirs()

    def own(frame: _Frame) -> bool:
        if frame.file.startswith("<"):
            return False
        real = os.path.realpath(frame.file)
        return not any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)

    for frames, error in reversed(_tracebacks(log.splitlines())):
        mine = [f for f in frames if own(f)]
        if mine:
            inner, *outer = reversed(mine[-LIMIT:])
            name = os.path.basename
            text = f"{name(inner.file)}:{inner.line}: in {inner.function}: {error}"
            if outer:
                text += " (called from "
                text += ", ".join(f"{name(f.file)}:{f.line} in {f.function}" for f in outer) + ")"
            return text
    return None
