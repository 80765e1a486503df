"""The syntax of a prompt template's text: ``{{variable}}`` placeholders as MLflow finds them
(:data:`~controller.core.prompt.content.VARIABLE`), where each is, and what does not parse. Pure:
the caller reads the file and turns an offset into its line and column.

MLflow formats a text with ``{{ name }}`` (or ``{{ a.b }}``) placeholders; a ``{{`` without its
``}}`` or with something else inside is left in the formatted text as it is, which is never what
a prompt's author meant. A template with Jinja2 blocks (``{% ... %}``) is formatted by MLflow with
Jinja2 instead; agentctl does not support those (their variables cannot be checked).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.prompt.content import VARIABLE

__all__ = ["Use", "line_column", "syntax_problems", "variable_uses"]

_OPEN, _CLOSE = "{{", "}}"
_SHOWN = 40  # the most of a placeholder a message quotes


@dataclass(frozen=True, slots=True)
class Use:
    """The first use of ``name`` in the text, at ``offset``; ``text`` as written there."""

    name: str
    offset: int
    text: str


def syntax_problems(text: str) -> list[tuple[int, str]]:
    """(offset, message) of each placeholder that does not parse and each Jinja2 block."""
    out: list[tuple[int, str]] = []
    at = text.find("{%")
    if at >= 0:
        out.append(
            (
                at,
                "a Jinja2 block ('{%'): agentctl supports {{variable}} templates only (MLflow "
                "would format this one with Jinja2, whose variables agentctl cannot check)",
            )
        )
    i = text.find(_OPEN)
    while i >= 0:
        end = text.find(_CLOSE, i + 2)
        if end < 0:
            out.append((i, "'{{' without its closing '}}'"))
            break
        # '{{{x}}}' and the like: the placeholder is the innermost '{{'
        while text.startswith(_OPEN, i + 1) and i + 1 < end:
            i += 1
        whole = text[i : end + 2]
        if VARIABLE.fullmatch(whole) is None:
            shown = whole if len(whole) <= _SHOWN else whole[: _SHOWN - 5] + "...}}"
            out.append(
                (
                    i,
                    f"{shown!r} is not a variable: a placeholder holds one name of letters, "
                    "digits and '_' (dotted names such as {{ user.name }} too)",
                )
            )
        i = text.find(_OPEN, end + 2)
    return out


def variable_uses(text: str) -> list[Use]:
    """The first use of each variable, in the order they first appear."""
    seen: dict[str, Use] = {}
    for match in VARIABLE.finditer(text):
        seen.setdefault(match.group(1), Use(match.group(1), match.start(), match.group(0)))
    return list(seen.values())


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    return line, offset - start + 1
