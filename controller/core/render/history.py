"""``agentctl history``'s forms: a table of versions and a timeline, as text or markdown (for a
review), or JSON. Pure: secret-looking values redacted."""

from __future__ import annotations

import json

from controller.core.environment.history import History
from controller.core.environment.record import iso
from controller.core.render.formats import md_cell
from controller.core.secrets import redact_text

__all__ = ["render_history"]

_COLUMNS = ("Environment", "Version", "Registered", "From", "Commit", "Digest", "Evaluation",
            "Approvals", "Aliases")  # fmt: skip


def render_history(h: History, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(h.to_dict(), indent=2)
    rows = [
        (
            v.env or "-",
            f"{v.model}/{v.version}",
            iso(v.created) if v.created is not None else "-",
            v.promoted_from or "-",
            v.commit[:12] or "-",
            v.digest[:19] or "-",  # sha256: and 12 hex digits
            v.verdict or "-",
            ", ".join(f"{d} for {e}" + (f" by {b}" if b else "") for e, d, b, _ in v.approvals)
            or "-",
            ", ".join(v.aliases) or "-",
        )
        for v in h.versions
    ]
    events = [(iso(e.at) if e.at is not None else "-", e.env or "-", e.text) for e in h.events]
    missing = [f"No registered model yet in: {', '.join(h.missing)}."] if h.missing else []
    if fmt == "markdown":
        out = [f"### History of {md_cell(h.agent)}", ""]
        out += ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        out += ["| " + " | ".join(md_cell(redact_text(c)) for c in r) + " |" for r in rows]
        out += ["", "#### Timeline", "", "| When | Environment | What |", "|---|---|---|"]
        out += [
            f"| {md_cell(a)} | {md_cell(b)} | {md_cell(redact_text(c))} |" for a, b, c in events
        ]
        return "\n".join(out + (["", *missing] if missing else []))
    widths = [max(len(str(x)) for x in col) for col in zip(_COLUMNS, *rows, strict=False)]
    table = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in (_COLUMNS, *rows)
    ]
    timeline = [f"{a}  {b}  {redact_text(c)}" for a, b, c in events]
    return "\n".join([f"History of {h.agent}", "", *table, "", "Timeline:", *timeline, *missing])
