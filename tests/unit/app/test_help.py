"""`--help` as a user reads it, at 80 and 120 columns: prose wraps at the terminal's width (never
inside a sentence at a docstring's own line break, never inside a word), and nothing is cut:
every option name, metavar, environment variable and default appears whole; a flag shows no
metavar; the usage line names arguments in capitals.

Each command's help is rendered as a user sees it. A line of prose may end early only where its
paragraph ends: if the next line continues the same paragraph and its first word would have
fitted, the break was a hard one, and it fails.
"""

from __future__ import annotations

import inspect
import itertools
import re
from enum import Enum
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from controller.app.cli import app

WIDTHS = (80, 120)
SECTION = re.compile(r"^(Arguments|Options|Commands):$")


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


def _command(path: tuple[str, ...]) -> Any:
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


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


def _text_width(width: int) -> int:
    """The width help is laid out in: the terminal's, at most 80, less click's margin of 2."""
    return min(width, 80) - 2


def _description(lines: list[str], width: int) -> list[str]:
    """The help text under Usage: from the line after it to the first section, two spaces in."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Usage:")) + 1
    end = next((i for i, line in enumerate(lines) if SECTION.match(line)), len(lines))
    bad: list[str] = []
    paragraph: list[str] = []
    for line in [*lines[start:end], ""]:
        if line.strip():
            assert line.startswith("  "), line
            paragraph.append(line[2:])
        else:
            bad += _hard_breaks(paragraph, _text_width(width) - 2)
            paragraph = []
    return bad


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """Each section's lines, by its title."""
    out: dict[str, list[str]] = {}
    title = None
    for line in lines:
        if SECTION.match(line):
            title = line[:-1]
            out[title] = []
        elif title and line.strip():
            out[title].append(line)
    return out


def _column(section: list[str]) -> int:
    """Where a section's text column starts: after the terms with text beside them."""
    return min(
        len(line) - len(line[2:].split("  ", 1)[1].lstrip())
        for line in section
        if not line.startswith("   ") and "  " in line[2:].strip()
    )


def _entries(section: list[str]) -> list[tuple[str, list[str]]]:
    """``(term, text lines)`` of each entry of a section: a term starts two spaces in, its text
    is in a column of its own (beside the term, or below it when the term is too wide)."""
    column = _column(section)
    entries: list[tuple[str, list[str]]] = []
    for line in section:
        if not line.startswith("   "):  # a term
            term, _, text = line[2:].partition("  ")
            entries.append((term, [text.strip()] if text.strip() else []))
        else:
            assert line[:column].strip() == "", f"text outside its column: {line!r}"
            entries[-1][1].append(line[column:])
    return entries


def _entry_breaks(section: list[str], width: int) -> list[str]:
    """Hard breaks inside each entry's prose (its ``[...]`` items excepted)."""
    cell = _text_width(width) - _column(section)
    bad: list[str] = []
    for _, text in _entries(section):
        prose = list(itertools.takewhile(lambda t: not t.startswith("["), text))
        bad += _hard_breaks(prose, cell)
    return bad


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "agentctl")
def test_help_breaks_lines_only_at_the_terminal_width(path: tuple[str, ...], width: int) -> None:
    lines = _help(path, width)
    bad = _description(lines, width)
    for section in _sections(lines).values():
        bad += _entry_breaks(section, width)
    assert not bad, "\n".join(["lines broken inside a sentence:", *bad, "", *lines])


def _default(param: Any) -> str | None:
    """The default as help should show it (None: not shown)."""
    if param.default is None or (param.is_flag and not param.secondary_opts):
        return None
    if param.is_flag:
        return (param.opts if param.default else param.secondary_opts)[0].removeprefix("--")
    return str(param.default.value if isinstance(param.default, Enum) else param.default)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "agentctl")
def test_every_option_name_metavar_env_var_and_default_appears_whole(
    path: tuple[str, ...], width: int
) -> None:
    lines = _help(path, width)
    text = "\n".join(lines)
    assert "…" not in text
    assert "<bool>" not in text and "<" not in "".join(t for t, _ in _all_entries(lines))
    assert "..." not in text.replace("[ARGS]...", ""), text
    usage = next(line for line in lines if line.startswith("Usage:"))
    assert "{" not in usage and "<" not in usage, usage
    terms = {term: rest for term, rest in _all_entries(lines)}
    cmd = _command(path)
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            name = param.metavar or param.name.upper()
            assert re.search(rf" \[?{re.escape(name)}\b", usage), (name, usage)
            assert name in terms, (name, list(terms))
            continue
        term = next((t for t in terms if param.opts[0] in re.split(r"[ ,/]+", t)), None)
        assert term is not None, (param.opts, list(terms))
        words = re.split(r"[ ,/]+", term)
        for name in [*param.opts, *param.secondary_opts]:
            assert name in words, (name, term)
        extra = [w for w in words if not w.startswith("-") and w]
        if param.is_flag:
            assert not extra, f"a flag with a metavar: {term}"
        else:
            assert len(extra) == 1, f"one metavar: {term}"
            assert extra[0].isupper() or re.fullmatch(r"\[\w+(\|\w+)+\]", extra[0]), term
        shown = "\n".join(terms[term])  # an item may not span lines
        if param.envvar:
            assert f"[env var: {param.envvar}]" in shown, (term, shown)
        default = _default(param)
        if default is not None and param.show_default is not False:
            assert f"[default: {default}]" in shown, (term, default, shown)


def _all_entries(lines: list[str]) -> list[tuple[str, list[str]]]:
    return [e for section in _sections(lines).values() for e in _entries(section)]


@pytest.mark.parametrize("path", [p for p in _commands() if p], ids=" ".join)
def test_each_paragraph_of_a_docstring_appears_whole(path: tuple[str, ...]) -> None:
    cmd = _command(path)
    callback = cmd.callback
    doc = inspect.getdoc(getattr(callback, "__wrapped__", callback)) or cmd.help or ""
    shown = " ".join(" ".join(line.strip() for line in _help(path, 80)).split())
    for paragraph in doc.split("\n\n"):
        assert " ".join(paragraph.split()) in shown


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "path", [p for p in _commands() if hasattr(_command(p), "commands")], ids=" ".join
)
def test_a_group_lists_each_command_by_its_whole_first_sentence(
    path: tuple[str, ...], width: int
) -> None:
    entries = dict(_entries(_sections(_help(path, width))["Commands"]))
    for name, sub in _command(path).commands.items():
        listed = " ".join(entries[name])
        first = " ".join(sub.help.split())
        assert first.startswith(listed) and listed.endswith("."), (name, listed)
        assert len(listed) > 20, (name, listed)
