"""Read the markdown of `agentctl eval` by its structure (headings, tables), not as a string:
what a reviewer sees in the pull-request comment."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_TAG = re.compile(r"<[^>]+>")
_HEADING = re.compile(r"^#### (?P<agent>.+?): (?P<mark>.+)$")


def cell(text: str) -> str:
    """A table cell as a reader sees it: tags dropped, entities decoded, trimmed."""
    return html.unescape(_TAG.sub("", text)).strip()


@dataclass
class Section:
    agent: str
    verdict: str  # "passed" / "failed"
    lines: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)  # the table, header -> cell
    misses: list[str] = field(default_factory=list)  # the bullet list under the table


def sections(markdown: str) -> dict[str, Section]:
    """Agent -> its section: the heading's verdict, its table's rows, its misses."""
    out: dict[str, Section] = {}
    current: Section | None = None
    header: list[str] | None = None
    for line in markdown.splitlines():
        m = _HEADING.match(line)
        if m:
            verdict = "passed" if "passed" in m["mark"] else "failed"
            current = out[cell(m["agent"])] = Section(cell(m["agent"]), verdict)
            header = None
            continue
        if current is None:
            continue
        current.lines.append(line)
        if line.startswith("|"):
            cells = [cell(c) for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(set(c) <= {"-", ":"} for c in cells):
                assert len(cells) == len(header), line
                current.rows.append(dict(zip(header, cells, strict=True)))
        elif line.startswith("- "):
            current.misses.append(cell(line[2:]))
        elif line.startswith("Not evaluated"):
            current = None
    return out


def not_evaluated(markdown: str) -> str:
    """The "Not evaluated: ..." line, as read ("" when there is none)."""
    found = [cell(x) for x in markdown.splitlines() if x.startswith("Not evaluated")]
    return found[0] if found else ""
