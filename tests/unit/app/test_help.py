"""`--help` wraps at the terminal's width, never inside a sentence at a docstring's own line break.

Each command's help is rendered, as a user sees it, at two widths. A line of prose may end early
only where its paragraph ends: if the next line continues the same paragraph and its first word
would have fitted, the break was a hard one (rich keeps a docstring's newlines), and it fails.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from controller.app.cli import app

WIDTHS = (80, 120)


def _commands() -> list[tuple[str, ...]]:
    """Every command path: the root, groups and leaf commands."""
    out: list[tuple[str, ...]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        out.append(path)
        if hasattr(cmd, "commands"):  # a group (typer vendors click)
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out


def _help(path: tuple[str, ...], width: int) -> list[str]:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= width
    return lines


def _first_word(text: str) -> str:
    return text.split()[0] if text.split() else ""


def _hard_breaks(cells: list[str], width: int) -> list[str]:
    """Lines of one paragraph (``cells``: its lines, in a column ``width`` wide) that end before
    the column does although the next line's first word would have fitted."""
    bad = []
    for line, following in itertools.pairwise(cells):
        text, nxt = line.rstrip(), _first_word(following)
        if text and nxt and len(text) + 1 + len(nxt) <= width:
            bad.append(f"{text!r} | {nxt!r}")
    return bad


def _description(lines: list[str], width: int) -> list[str]:
    """The help text under Usage: from the line after it to the first panel, one space in."""
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
    bad: list[str] = []
    paragraph: list[str] = []
    for line in [*lines[start:end], ""]:
        if line.strip():
            paragraph.append(line[1:])
        else:
            bad += _hard_breaks(paragraph, width - 2)
            paragraph = []
    return bad


def _commands_panel(lines: list[str], width: int) -> list[str]:
    """Each command's one-paragraph description in the Commands panel."""
    try:
        top = next(i for i, line in enumerate(lines) if line.startswith("╭─ Commands"))
    except StopIteration:
        return []
    rows = []
    for line in lines[top + 1 :]:
        if line.startswith("╰"):
            break
        rows.append(line[2:-1])  # inside "│ " ... "│"
    first = rows[0]
    name_end = first.index(" ")
    column = name_end + (len(first[name_end:]) - len(first[name_end:].lstrip()))
    cell = len(first) - 1 - column  # one space of padding before the border
    bad: list[str] = []
    paragraph: list[str] = []
    for row in [*rows, "x"]:
        if row[:column].strip():  # a new command's row
            bad += _hard_breaks(paragraph, cell)
            paragraph = []
        paragraph.append(row[column:])
    return bad


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "agentctl")
def test_help_breaks_lines_only_at_the_terminal_width(path: tuple[str, ...], width: int) -> None:
    lines = _help(path, width)
    bad = _description(lines, width) + _commands_panel(lines, width)
    assert not bad, "\n".join(["lines broken inside a sentence:", *bad, "", *lines])


@pytest.mark.parametrize("path", [p for p in _commands() if p], ids=" ".join)
def test_each_paragraph_of_a_docstring_appears_whole(path: tuple[str, ...]) -> None:
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    callback = cmd.callback
    doc = inspect.getdoc(getattr(callback, "__wrapped__", callback)) or cmd.help or ""
    shown = " ".join(
        " ".join(line.strip(" │") for line in _help(path, 80)).split()
    )  # the words as shown, the box and wrapping taken out
    for paragraph in doc.split("\n\n"):
        assert " ".join(paragraph.split()) in shown
