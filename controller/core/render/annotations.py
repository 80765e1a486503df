"""GitHub Actions workflow commands for diagnostics, so errors show inline in a PR. Pure data.

``::error file=F,line=L,col=C,title=T::message``, escaped as the actions toolkit does: in data,
``%``, CR and LF become ``%25``, ``%0D``, ``%0A``; properties also escape ``:`` and ``,``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.core.diagnostics import Diagnostic, Severity

__all__ = ["escape_data", "escape_property", "workflow_commands"]


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_commands(
    diagnostics: Iterable[Diagnostic], repo_path: Callable[[str], str | None] = str
) -> list[str]:
    """One command per diagnostic; ``repo_path`` turns a diagnostic's file into a path relative
    to the repository root (what GitHub matches against the diff), or None to leave it out."""
    lines = []
    for d in diagnostics:
        command = "error" if d.severity is Severity.ERROR else "warning"
        props = []
        file = repo_path(d.location.file) if d.location is not None else None
        if d.location is not None and file is not None:
            props += [
                f"file={escape_property(file)}",
                f"line={d.location.line}",
                f"col={d.location.column}",
            ]
        title = f"agentctl: {d.field}" if d.field else "agentctl"
        props.append(f"title={escape_property(title)}")
        message = f"{d.field}: {d.message}" if d.field else d.message
        lines.append(f"::{command} {','.join(props)}::{escape_data(message)}")
    return lines
