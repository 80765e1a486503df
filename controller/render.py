"""Render plans, change sets and diagnostics as text, markdown or JSON. Pure: returns strings.

Only the CLI calls these. Values are shown as they are in the plan; agentctl's own bookkeeping
tags (``agentctl.io/managed-*``) are left out of the human formats, kept in JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from controller.changeset import ChangeSet, Verb
from controller.diagnostics import Diagnostics, Severity
from controller.plan import Action, Change, Kind, Plan

__all__ = ["FORMATS", "render_changeset", "render_diagnostics", "render_plan"]

FORMATS = ("text", "markdown", "json")
_SYMBOL = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.REPLACE: "-/+",
    Action.NOOP: " ",
}
_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.DELETE: "will be deleted",
    Action.REPLACE: "will be replaced",
    Action.NOOP: "is unchanged",
}
_HIDDEN = ("agentctl.io/managed-tags", "agentctl.io/managed-aliases")


def render_plan(plan: Plan, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(plan.to_dict(), indent=2, sort_keys=False)
    if fmt == "markdown":
        return _markdown(plan)
    return _text(plan)


def _summary_line(plan: Plan) -> str:
    s = plan.summary()
    return f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if any(key.endswith(h) for h in _HIDDEN):
                continue
            out.update(_flatten(v, key))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is None:
        return "(known after apply)"
    return json.dumps(value)


def _attribute_lines(change: Change) -> list[tuple[str, str, str]]:
    """(symbol, key, text) per attribute that appears or differs."""
    before = _flatten(change.before or {})
    after = _flatten(change.after or {})
    if change.after and change.after.get("version", 0) is None and "digest" in change.after:
        after["version"] = None
        if change.kind is Kind.ALIAS:
            after.pop("digest")  # the version's own change shows it
    lines = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after:
            if before[key] != after[key]:
                lines.append(("~", key, f"{_show(before[key])} -> {_show(after[key])}"))
        elif key in after:
            lines.append(("+", key, _show(after[key])))
        else:
            lines.append(("-", key, _show(before[key])))
    return lines


def _title(change: Change) -> str:
    kind = change.kind.value.replace("_", " ")
    if change.kind.value == "registered_model":
        return f'{kind} "{change.model}"'
    if change.kind.value == "alias":
        return f'{kind} "{change.model}@{change.name}"'
    return f'{kind} "{change.model}" ({change.name})'


def _text(plan: Plan) -> str:
    """The changes; diagnostics are rendered apart (the CLI writes them to stderr)."""
    out: list[str] = []
    if not plan.changes:
        out.append("No changes. The registry matches the manifests.")
    else:
        out.append("agentctl will perform the following actions:")
        for change in plan.changes:
            out.append("")
            out.append(f"  # {change.address} {_VERB[change.action]}: {change.reason}")
            out.append(f"  {_SYMBOL[change.action]} {_title(change)}")
            for sym, key, text in _attribute_lines(change):
                out.append(f"      {sym} {key} = {text}")
        out.append("")
        out.append(_summary_line(plan))
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(plan: Plan) -> str:
    out = ["### agentctl plan", ""]
    if not plan.changes:
        out.append("**No changes.** The registry matches the manifests.")
    else:
        out.append(f"**{_summary_line(plan)}**")
    agents: dict[str, list[Change]] = {}
    for change in plan.changes:
        agents.setdefault(change.agent, []).append(change)
    for agent, changes in agents.items():
        counts = ", ".join(
            f"{sum(c.action is a for c in changes)} {a.value}"
            for a in Action
            if any(c.action is a for c in changes)
        )
        out += ["", "<details>", f"<summary><code>{agent}</code>: {counts}</summary>", ""]
        out += ["| | object | change | reason |", "|---|---|---|---|"]
        for c in changes:
            detail = "<br>".join(
                f"`{sym} {_md_escape(key)} = {_md_escape(text)}`"
                for sym, key, text in _attribute_lines(c)
            )
            out.append(
                f"| {_SYMBOL[c.action]} | `{_md_escape(_title(c))}` | {detail} | "
                f"{_md_escape(c.reason)} |"
            )
        out += ["", "</details>"]
    if len(plan.diagnostics):
        out += ["", "#### Diagnostics", ""]
        for d in plan.diagnostics:
            where = f"`{d.location}` " if d.location else ""
            field = f"`{_md_escape(d.field)}`: " if d.field else ""
            out.append(f"- **{d.severity.value}**: {where}{field}{_md_escape(d.message)}")
    return "\n".join(out)


def render_diagnostics(diags: Diagnostics | Iterable[Any]) -> str:
    lines = []
    for d in diags:
        label = "Error" if d.severity is Severity.ERROR else "Warning"
        where = f"{d.location}: " if d.location else ""
        field = f"{d.field}: " if d.field else ""
        lines.append(f"{label}: {where}{field}{d.message}")
    return "\n".join(lines)


def render_changeset(changeset: ChangeSet, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(changeset.to_dict(), indent=2)
    lines = [
        f"{e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else "")
        for e in changeset.entries
    ]
    done = ", ".join(f"{changeset.count(v)} {v.value}" for v in Verb if changeset.count(v))
    lines.append(f"Apply complete: {done or 'nothing to do'}.")
    return "\n".join(lines)
