"""The README's runnable blocks: each fenced block right after a ``<!-- readme-test: WHAT -->``
comment, where WHAT is ``quickstart``, ``first-agent`` (shell to run), ``file PATH`` (a file's
whole text) or ``append PATH`` (text added to the end of a file)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_MARKED = re.compile(
    r"^<!-- readme-test: (?P<what>[^>]+?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    kind: str  # quickstart | first-agent | file | append
    path: str | None  # for file and append
    lang: str
    text: str
    line: int  # of the marker, 1-based

    def apply_to(self, root: Path) -> None:
        """Write (file) or append (append) this block's text under ``root``."""
        assert self.path is not None, f"README line {self.line}: {self.kind} names no path"
        target = root / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "file":
            target.write_text(self.text)
        else:
            with target.open("a") as f:
                f.write(self.text)


def blocks(markdown: str) -> list[Block]:
    """Every marked block, in order."""
    out = []
    for m in _MARKED.finditer(markdown):
        kind, _, path = m["what"].strip().partition(" ")
        if kind not in {"quickstart", "first-agent", "file", "append"}:
            line = markdown.count("\n", 0, m.start()) + 1
            raise ValueError(f"README line {line}: unknown readme-test block {kind!r}")
        out.append(
            Block(
                kind=kind,
                path=path.strip() or None,
                lang=m["lang"],
                text=m["body"],
                line=markdown.count("\n", 0, m.start()) + 1,
            )
        )
    return out
