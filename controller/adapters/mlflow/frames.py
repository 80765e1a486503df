"""Where an agent's own code failed while MLflow logged it: the traceback frames that lie in the
agent's files, named as the repository names them, not MLflow's internals.

MLflow wraps what the agent's code raised (``Failed to run user code from ...``) in exceptions of
its own; the agent's frames are in the cause. :func:`agent_failure` walks the chain (causes and
contexts), keeps the last frames whose file is one of the agent's (``files`` maps each path the
code was loaded from to the name to show), and says them as ``agent.py:12: in <module>:
ZeroDivisionError: division by zero``. With no frame in the agent's files (``set_model`` given
something MLflow refuses), it is MLflow's own message, with the paths of the agent's files in
it named as the repository names them (:func:`rename_paths`). A :class:`SyntaxError` has no frame
in the agent's file (the file never ran): its ``filename`` and ``lineno`` say where.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Frame", "agent_failure", "agent_frames", "describe", "rename_paths"]

#: How many of the agent's frames a message names (the innermost first).
LIMIT = 3


@dataclass(frozen=True, slots=True)
class Frame:
    file: str  # as the repository names it
    line: int
    function: str


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


def _name(filename: str, files: Mapping[str, str]) -> str | None:
    """The repository's name of ``filename`` if it is one of the agent's files: the path it was
    loaded from, or MLflow's copy of it in the model's ``code`` directory."""
    real = os.path.realpath(filename)
    for path, name in files.items():
        if real == os.path.realpath(path):
            return name
        copy = os.path.join("code", os.path.basename(path))
        if real.endswith(os.sep + copy):
            return name
    return None


def agent_frames(
    exc: BaseException, files: Mapping[str, str]
) -> tuple[BaseException, tuple[Frame, ...]] | None:
    """The innermost exception of the chain whose traceback passes through the agent's files,
    with those frames (outermost first); None if no frame is the agent's."""
    found = None
    for link in _chain(exc):
        frames = tuple(
            Frame(name, fs.lineno or 0, fs.name)
            for fs in traceback.extract_tb(link.__traceback__)
            if (name := _name(fs.filename, files)) is not None
        )
        if isinstance(link, SyntaxError) and link.filename:
            name = _name(link.filename, files)
            if name is not None:  # where the parser stopped: after any frame that compiled it
                frames = (*frames, Frame(name, link.lineno or 0, "<module>"))
        if frames:
            found = (link, frames)
    return found


def describe(error: str, frames: tuple[Frame, ...]) -> str:
    """``file:line: in function: error``, at the innermost frame, then where it was called from
    (at most :data:`LIMIT` frames in all)."""
    inner, *outer = reversed(frames[-LIMIT:])
    text = f"{inner.file}:{inner.line}: in {inner.function}: {error}"
    if outer:
        text += " (called from " + ", ".join(f"{f.file}:{f.line} in {f.function}" for f in outer)
        text += ")"
    return text


def agent_failure(exc: BaseException, files: Mapping[str, str]) -> str | None:
    """What the agent's code raised, where, in its own files; None if it did not pass there."""
    found = agent_frames(exc, files)
    if found is None:
        return None
    raised, frames = found
    return describe(_error(raised), frames)


def rename_paths(text: str, files: Mapping[str, str]) -> str:
    """``text`` with each path of the agent's files in it (the path it was loaded from, or
    MLflow's copy in a ``code`` directory) replaced by the repository's name of the file."""
    for path, name in files.items():
        copy = re.escape(os.sep + os.path.join("code", os.path.basename(path)))
        pattern = rf"(?:{re.escape(path)}|[^\s'\"()]*{copy})(?!\w|\.\w)"
        text = re.sub(pattern, name.replace("\\", "\\\\"), text)
    return text


def _error(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.msg:  # its str() repeats the (snapshot's) file name
        return f"{type(exc).__name__}: {exc.msg}"
    text = str(getattr(exc, "message", exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
