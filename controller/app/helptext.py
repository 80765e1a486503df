"""How ``--help`` reads: click's plain layout, in which no word is ever cut.

typer's rich panels give each option a table row of five columns; at 80 columns they cut option
names, environment variables and defaults short with "…" and break a value list mid-word. Here
each option is one entry, ``--name METAVAR`` then its help, wrapped at spaces only (never inside a
word or at a hyphen) and followed by its ``[env var: …] [default: …]`` on lines of their own; a
flag has no metavar; the usage line names arguments as ``PATH``; a group lists each command with
the first sentence of its help. Commands and groups are built with :class:`HelpCommand` and
:class:`HelpGroup` (``cls=``), in typer's plain mode (``rich_markup_mode=None``).
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["HelpCommand", "HelpGroup", "first_sentence", "metavar"]

#: the first column's widest term; a longer one puts its help on the next line
_TERM_MAX = 30
_GAP = 2


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken at spaces only; paragraphs (blank-line
    separated) stay apart."""
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        if lines:
            lines.append("")
        lines += textwrap.wrap(
            " ".join(paragraph.split()), width, break_long_words=False, break_on_hyphens=False
        )
    return lines


def first_sentence(text: str) -> str:
    """The first sentence of ``text``'s first paragraph (up to a full stop and a space)."""
    paragraph = " ".join(text.split("\n\n")[0].split())
    found = re.match(r"(.+?[.!?])(?:\s|$)", paragraph)
    return found.group(1) if found else paragraph


#: typer's names of value types (``display_type`` without its ``<>``) as click spells them
_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT"}


def metavar(param: TyperOption | TyperArgument, ctx: Any) -> str:
    """The placeholder of an option's value, or of an argument: its own metavar, else for an
    argument its name in capitals, for an option the choices as ``[a|b]`` or its type's name in
    capitals (``TEXT``, ``INTEGER``, ``PATH``)."""
    if param.metavar:
        return param.metavar
    if isinstance(param, TyperArgument):
        return (param.name or "").upper()
    label = param.display_type(ctx).removeprefix("<").removesuffix(">").removesuffix(" range")
    if label.startswith("list[") and label.endswith("]"):  # repeated: the metavar of one value
        label = label.removeprefix("list[").removesuffix("]")
    if param.type_descriptor.is_choice:
        return f"[{label}]"
    return _TYPE_NAMES.get(label, label.upper())


def _term(param: TyperOption | TyperArgument, ctx: Any) -> str:
    if isinstance(param, TyperArgument):
        return metavar(param, ctx)
    names = ", ".join(sorted(param.opts, key=len))
    if param.secondary_opts:
        names += " / " + ", ".join(sorted(param.secondary_opts, key=len))
    return names if param.is_flag or param.count else f"{names} {metavar(param, ctx)}"


def _entry(param: TyperOption | TyperArgument, ctx: Any) -> tuple[str, str, list[str]]:
    """``(term, help, extras)``: the extras (env var, default, range, required) are what typer
    appends to the help in its record, as ``[a; b]``; here each is an item ``[a]`` of its own."""
    record = param.get_help_record(ctx)
    shown = record[1] if record else ""
    prose = param.help or ""
    extras = shown.removeprefix(prose).strip().removeprefix("[").removesuffix("]")
    return _term(param, ctx), prose, [f"[{e}]" for e in extras.split("; ") if e]


def _pack(items: list[str], width: int) -> list[str]:
    """``items`` side by side, as many to a line as fit; an item is split (at spaces) only when
    it does not fit a line of its own."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 1 + len(item) <= width:
            lines[-1] += " " + item
        else:
            lines += wrap(item, width)
    return lines


def _write_entries(formatter: Any, rows: list[tuple[str, str, list[str]]]) -> None:
    indent = " " * formatter.current_indent
    column = min(max(len(term) for term, _, _ in rows), _TERM_MAX) + _GAP
    width = max(formatter.width - formatter.current_indent - column, 20)
    for term, prose, extras in rows:
        lines = wrap(prose, width) + _pack(extras, width)
        if lines and len(term) + _GAP <= column:
            formatter.write(f"{indent}{term:<{column}}{lines.pop(0)}\n")
        else:
            formatter.write(f"{indent}{term}\n")
        for line in lines:
            formatter.write(f"{indent}{' ' * column}{line}\n" if line else "\n")


class _Help:
    """The plain help of a command or a group."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):  # type: ignore[attr-defined]
            if isinstance(param, TyperArgument):
                name = metavar(param, ctx) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        if isinstance(self, TyperGroup):
            pieces.append(self.subcommand_metavar)
        return pieces

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        text = getattr(self, "help", None)
        if not text:
            return
        formatter.write_paragraph()
        with formatter.indentation():
            indent = " " * formatter.current_indent
            for line in wrap(text, formatter.width - formatter.current_indent):
                formatter.write(f"{indent}{line}\n" if line else "\n")

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = [p for p in self.get_params(ctx) if not getattr(p, "hidden", False)]  # type: ignore[attr-defined]
        for title, kind in (("Arguments", TyperArgument), ("Options", TyperOption)):
            rows = [_entry(p, ctx) for p in params if isinstance(p, kind)]
            if rows:
                with formatter.section(title):
                    _write_entries(formatter, rows)
        if isinstance(self, TyperGroup):
            self.format_commands(ctx, formatter)


class HelpCommand(_Help, TyperCommand):
    """A typer command whose ``--help`` cuts no word."""


class HelpGroup(_Help, TyperGroup):
    """A typer group whose ``--help`` cuts no word, and lists each command by its first
    sentence."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows: list[tuple[str, str, list[str]]] = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, first_sentence(cmd.help or cmd.short_help or ""), []))
        if rows:
            with formatter.section("Commands"):
                _write_entries(formatter, rows)
