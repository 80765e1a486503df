"""Render plans, change sets and diagnostics as text, markdown or JSON. Pure: returns strings.

Only the CLI calls these. Values are shown as they are in the plan, except what looks like a
secret (:mod:`controller.core.secrets`), hidden alike in every format, JSON included;
agentctl's own bookkeeping tags (``agentctl.io/managed-*``) are left out of the human formats,
kept in JSON.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from controller.core.diagnostics import Diagnostics, Severity
from controller.core.errors import ApplyFailed
from controller.core.plan.changes import (
    PROMPT_KINDS,
    Action,
    AgentView,
    AliasTarget,
    Change,
    EvaluationRun,
    Kind,
    Plan,
    PromptVersionCreate,
)
from controller.core.plan.changeset import ChangeSet, Verb
from controller.core.plan.preview import ObjectPreview, display
from controller.core.secrets import REDACTED, redact, redact_prose, redact_text, redact_tree

__all__ = [
    "FORMATS",
    "MARKER",
    "REDACTED",
    "apply_failed_document",
    "attention",
    "headline",
    "md_cell",
    "redact",
    "render_apply_failed",
    "render_changeset",
    "render_diagnostics",
    "render_json",
    "render_plan",
    "render_previews",
]

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
        return render_json(plan.to_dict())
    if fmt == "markdown":
        return _markdown(plan)
    return _text(plan)


def _summary_line(plan: Plan) -> str:
    s = plan.summary()
    evaluate = f", {s['evaluate']} to evaluate" if s["evaluate"] else ""
    return f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy{evaluate}."


def attention(plan: Plan) -> list[tuple[str, str]]:
    """(agent, what) for each thing a reviewer must know that no change fixes: a rollout that
    failed, was aborted or waits for ``agentctl promote``, and each warning about an agent
    (still served, or still registered, though no manifest declares it)."""
    out = [(h.agent, h.message) for h in plan.held]
    out += [(g.agent, g.message) for g in plan.gated]
    out += [(d.agent, d.message) for d in plan.diagnostics.warnings if d.agent]
    out += [
        (s.agent, f"promotion into {s.env}: {s.summary()}")
        for s in plan.promotions
        if s.waits or (s.settled and s.open_gates)  # (a rejection after it came in)
    ]
    return out


def _rolling(plan: Plan) -> str:
    """The rollouts under way, in a few words: "1 rollout in progress (echo: step 1/2, ...)"."""
    n = len(plan.rolling)
    each = "; ".join(f"{h.agent}: {h.brief}" for h in plan.rolling)
    return f"{n} rollout{'' if n == 1 else 's'} in progress ({each})"


def headline(plan: Plan) -> str:
    """The plan's first word, the same in every format (and `apply`, `up`): never "No changes"
    while something is pending: a change, something that needs attention, or a rollout under
    way."""
    needs = attention(plan)
    n = len({agent for agent, _ in needs})
    who = f"{n} agent{' needs' if n == 1 else 's need'} attention"
    rolling = f"; {_rolling(plan)}" if plan.rolling else ""
    if plan.changes:
        tail = [who] if needs else []
        tail += [_rolling(plan)] if plan.rolling else []
        return _summary_line(plan) + (" " + "; ".join(tail) + "." if tail else "")
    if needs:
        return f"No changes to apply, but {who}{rolling}:"
    if plan.rolling:
        return f"No changes to apply now{rolling}."
    return "No changes. The registry and serving match the manifests."


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if any(key.endswith(h) for h in _HIDDEN):
                continue
            out.update(_flatten(v, key))
        return out
    return {prefix: redact(prefix, value)}


def _pending(key: str, value: Any) -> bool:
    """What only apply knows: the number of a version it creates (a null ``version``)."""
    return value is None and (key == "version" or key.endswith(".version"))


def _show(value: Any, key: str = "version") -> str:
    """A value as JSON (an absent one as ``null``), except what only apply knows (a version it
    creates, an attribute or in a list such as a traffic split's weights): ``(known after
    apply)``, as Terraform shows it."""
    return "(known after apply)" if _pending(key, value) else _nested(value)


def _nested(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    if isinstance(value, dict):
        pending = "version" in value and value["version"] is None
        shown = {k: v for k, v in value.items() if not (pending and k == "digest")}
        # (the new version's digest is shown by its own change)
        items = (f"{json.dumps(k)}: {_show(v) if k == 'version' else _nested(v)}"
                 for k, v in shown.items())  # fmt: skip
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


def _evaluation_lines(run: EvaluationRun) -> list[tuple[str, str, str]]:
    """An evaluation in a few lines (not its rows: the dataset file is in the repository)."""
    lines = [("+", "dataset", json.dumps(run.spec.dataset))]
    if run.spec.size is not None:
        lines.append(("+", "rows", str(run.spec.size)))
    lines.append(("+", "scorers", ", ".join(s.label for s in run.spec.scorers)))
    for t in run.spec.thresholds:
        bounds = [f"{k} {v:g}" for k, v in (("min", t.min), ("max", t.max),
                  ("maxDrop", t.max_drop)) if v is not None]  # fmt: skip
        lines.append(("+", f"threshold.{t.scorer}", ", ".join(bounds)))
    if run.champion is not None:
        figures = " (figures recorded)" if run.champion_figures is not None else ""
        lines.append(("+", "champion", f"version {run.champion}{figures}"))
    lines.append(("+", "digest", run.spec.digest))
    return lines


def prompt_diff(new: PromptVersionCreate, prompt: str) -> list[str]:
    """A new prompt version's template against the version it follows, as a unified diff
    (secret-looking values hidden); the whole template as added lines when it follows none."""
    base = new.base_content

    def diff(shown: Callable[[Any], Any], line: Callable[[str], str]) -> list[str]:
        before = base.text(shown).splitlines() if base is not None else []
        return [
            line(text)
            for text in difflib.unified_diff(
                before,
                new.content.text(shown).splitlines(),
                fromfile=f"{prompt} version {new.base}" if new.base is not None else "/dev/null",
                tofile=f"{prompt} ({new.template})",
                lineterm="",
                n=3,
            )
        ]

    lines = diff(redact_tree, redact_prose)
    if lines:
        return lines
    # Nothing shown differs: say what does (a diff of lines sees no line endings).
    if diff(lambda tree: tree, lambda text: text):
        return ["(only values hidden as secrets differ)"]
    return ["(the template differs only in line endings, its final newline or fields not shown)"]


def _prompt_lines(new: PromptVersionCreate) -> list[tuple[str, str, str]]:
    lines = [("+", "template", json.dumps(new.template)), ("+", "type", new.content.type)]
    lines += [("+", "digest", new.digest)]
    lines += [("+", f"tags.{k}", json.dumps(redact(k, v))) for k, v in new.tags.items()
              if not any(k.endswith(h) for h in _HIDDEN)]  # fmt: skip
    if new.description is not None:
        lines.append(("+", "description", json.dumps(new.description)))
    if new.base is not None:
        lines.append(("+", "follows", f"version {new.base}"))
    return lines


def _attribute_lines(change: Change) -> list[tuple[str, str, str]]:
    """(symbol, key, text) per attribute that appears or differs."""
    if isinstance(change.after, EvaluationRun):
        return _evaluation_lines(change.after)
    if isinstance(change.after, PromptVersionCreate):
        return _prompt_lines(change.after)
    before = _flatten(change.before.to_dict() if change.before is not None else {})
    after = _flatten(change.after.to_dict() if change.after is not None else {})
    if isinstance(change.after, AliasTarget) and change.after.pending:
        after.pop("digest")  # the version's own change shows it
    lines = []

    # An attribute without a value (a source without a config) is left out, as Terraform
    # leaves out null attributes; one that gains or loses a value shows ``null`` on that side.
    def valued(side: dict[str, Any], key: str) -> bool:
        return side.get(key) is not None or (key in side and _pending(key, side[key]))

    for key in sorted(set(before) | set(after)):
        if not valued(before, key) and not valued(after, key):
            continue
        if key in before and key in after:
            if before[key] != after[key]:
                lines.append(("~", key, f"{_show(before[key], key)} -> {_show(after[key], key)}"))
        elif key in after:
            lines.append(("+", key, _show(after[key], key)))
        else:  # gone: in an update it becomes null, as Terraform shows it
            gone = " -> null" if change.after is not None else ""
            lines.append(("-", key, _show(before[key], key) + gone))
    return lines


def _title(change: Change) -> str:
    if isinstance(change.after, EvaluationRun):
        return f'"{change.model}": {change.after.describe(change.name)}'
    kind = change.kind.value.replace("_", " ")
    if change.kind in (Kind.REGISTERED_MODEL, Kind.PROMPT):
        return f'{kind} "{change.model}"'
    if change.kind in (Kind.ALIAS, Kind.PROMPT_ALIAS):
        return f'{kind} "{change.model}@{change.name}"'
    if not change.name:  # traffic, shadow: one per agent
        return f'{kind} "{change.agent}"'
    return f'{kind} "{change.model}" ({change.name})'


def _text(plan: Plan) -> str:
    """The changes; diagnostics are rendered apart (the CLI writes them to stderr)."""
    out: list[str] = []
    needs = [f"  ! {agent}: {redact_text(what)}" for agent, what in attention(plan)]
    if not plan.changes:
        return "\n".join([headline(plan), *needs])
    out.append("agentctl will perform the following actions:")
    for change in plan.changes:
        out.append("")
        verb = "will be evaluated" if change.kind is Kind.EVALUATION else _VERB[change.action]
        out.append(f"  # {change.address} {verb}: {change.reason}")
        out.append(f"  {_SYMBOL[change.action]} {_title(change)}")
        for sym, key, text in _attribute_lines(change):
            out.append(f"      {sym} {key} = {text}")
        if isinstance(change.after, PromptVersionCreate):
            out += [f"        {line}" for line in prompt_diff(change.after, change.model)]
    out.append("")
    out.append(headline(plan))
    out += needs
    return "\n".join(out)


#: The first line of every markdown plan: lets a CI job find and update its one sticky comment.
MARKER = "<!-- agentctl-plan -->"


def md_cell(text: str) -> str:
    """Text safe in a markdown table cell: HTML escaped, no pipes, backticks or newlines, so no
    value (a tag, a description, a name) can end a cell, a code span or a <details> early."""
    return (
        escape(text, quote=True)
        .replace("|", "&#124;")
        .replace("`", "&#96;")
        .replace("\r", " ")
        .replace("\n", " ")
    )


_md = md_cell


def _code(text: str) -> str:
    return f"<code>{_md(text)}</code>"


def _markdown(plan: Plan) -> str:
    title = "### agentctl plan" + (f" ({_md(plan.environment)})" if plan.environment else "")
    out = [MARKER, title, "", f"**{headline(plan)}**"]
    needs = attention(plan)
    if needs:
        out += ["", "#### Needs attention", ""]
        out += [f"- :warning: {_code(agent)}: {_md(what)}" for agent, what in needs]
    views = {v.agent: v for v in plan.views}
    agents: dict[str, list[Change]] = {a: [] for a in plan.agents}
    for change in plan.changes:
        agents.setdefault(change.agent, []).append(change)
    if plan.promotions:
        out += ["", f"#### Promotions into {_md(plan.environment or '')}", ""]
        for step in plan.promotions:
            out.append(f"- {_code(step.agent)}: {_md(step.summary())}")
            out += [f"  - {'✅' if g.held else '⏳'} {_md(g.name)}: {_md(g.detail)}"
                    for g in step.gates]  # fmt: skip
    if plan.rolling:
        out += ["", "#### Rollouts in progress", ""]
        out += [f"- {_code(h.agent)}: {_md(h.message)}" for h in plan.rolling]
    # An agent listed above (a held or running rollout, a warning) is not "unchanged".
    pending = {agent for agent, _ in needs} | {h.agent for h in plan.rolling}
    quiet = []
    for agent, changes in agents.items():
        view = views.get(agent)
        if changes or (view is not None and _view_differs(view)):
            out += _md_agent(agent, changes, view)
        elif agent not in pending:
            quiet.append(agent)
    if quiet:
        out += ["", "No changes for: " + ", ".join(_code(a) for a in quiet) + "."]
    if len(plan.diagnostics):
        out += ["", "#### Diagnostics", ""]
        for d in plan.diagnostics:
            where = f"{_code(str(d.location))} " if d.location else ""
            field = f"{_code(d.field)}: " if d.field else ""
            out.append(f"- **{d.severity.value}**: {where}{field}{_md(d.message)}")
    return "\n".join(out)


def _view_differs(view: AgentView) -> bool:
    """Aliases, traffic or shadow that a reviewer should see move, even with no registry change."""
    if any(before != after for _, before, after in view.aliases):
        return True
    if view.traffic_before is not None and view.traffic_before != view.traffic_after:
        return True
    return view.traffic_before is not None and view.shadow_before != view.shadow_after


def _md_agent(agent: str, changes: list[Change], view: AgentView | None) -> list[str]:
    counts = (
        ", ".join(
            f"{sum(c.action is a for c in changes)} to {_MD_VERB[a]}"
            for a in Action
            if any(c.action is a for c in changes)
        )
        or "no registry changes"
    )
    model_name = changes[0].model if changes else (view.model if view else agent)
    what = "prompt" if changes and changes[0].kind in PROMPT_KINDS else "registered model"
    model = f" ({what} {_code(model_name)})"
    out = ["", "<details>", f"<summary><b>{_md(agent)}</b>{model}: {counts}</summary>", ""]
    if view is not None and view.scope:
        out += [f"<i>Planned because {_md(view.scope)}.</i>", ""]
    if view is not None and view.aliases:
        out += ["**Aliases**", "", "| alias | before | after |", "|---|---|---|"]
        for alias, before, after in view.aliases:
            out.append(f"| {_code(alias)} | {_version(before)} | {_version(after)} |")
        out.append("")
    if view is not None and (view.traffic_after or view.traffic_before):
        out += _md_traffic(view)
    if changes:
        out += ["**Changes**", "", "| | object | change | reason |", "|---|---|---|---|"]
        for c in changes:
            detail = "<br>".join(
                _code(f"{sym} {key} = {text}") for sym, key, text in _attribute_lines(c)
            )
            out.append(f"| {_SYMBOL[c.action]} | {_code(_title(c))} | {detail} | {_md(c.reason)} |")
        for c in changes:
            if isinstance(c.after, PromptVersionCreate):
                # A fence longer than any backtick run in the template: it cannot be closed early.
                diff = prompt_diff(c.after, c.model)
                fence = "`" * max(3, 1 + max((len(r) for d in diff
                                              for r in re.findall("`+", d)), default=0))  # fmt: skip
                out += ["", f"Template of {_code(_title(c))}:", "", f"{fence}diff", *diff, fence]
    out += ["", "</details>"]
    return out


def _md_traffic(view: AgentView) -> list[str]:
    known = view.traffic_before is not None
    rows: dict[str, list[str]] = {}
    for target, percent in view.traffic_before or ():
        rows.setdefault(target, ["—", "—"])[0] = f"{percent}%"
    for target, percent in view.traffic_after:
        rows.setdefault(target, ["—", "—"])[1] = f"{percent}%"
    for i, share in enumerate((view.shadow_before, view.shadow_after)):
        if share is not None:
            rows.setdefault(f"shadow: {share[0]}", ["—", "—"])[i] = f"{share[1]}% (copy)"
    if known:
        out = ["**Traffic** (as declared)", "", "| target | before | after |", "|---|---|---|"]
        out += [f"| {_md(t)} | {b} | {a} |" for t, (b, a) in rows.items()]
    else:
        out = ["**Traffic** (as declared)", "", "| target | share |", "|---|---|"]
        out += [f"| {_md(t)} | {a} |" for t, (_, a) in rows.items()]
    return [*out, ""]


def _version(value: int | str | None) -> str:
    if value is None:
        return "—"
    if value == "new":
        return "new version (known after apply)"
    return f"version {value}"


_MD_VERB = {
    Action.CREATE: "add",
    Action.UPDATE: "change",
    Action.DELETE: "destroy",
    Action.REPLACE: "replace",
    Action.NOOP: "keep",
}


def render_diagnostics(diags: Diagnostics | Iterable[Any]) -> str:
    lines = []
    for d in diags:
        label = "Error" if d.severity is Severity.ERROR else "Warning"
        where = f"{d.location}: " if d.location else ""
        field = f"{d.field}: " if d.field else ""
        lines.append(f"{label}: {where}{field}{redact_text(d.message)}")
    return "\n".join(lines)


def render_json(document: Any) -> str:
    """A JSON document (a plan's, a change set's, or one made of them) with what looks like a
    secret redacted, as the text and markdown formats do."""
    return json.dumps(redact_tree(document), indent=2)


def render_changeset(changeset: ChangeSet, fmt: str = "text") -> str:
    if fmt == "json":
        return render_json(changeset.to_dict())
    lines = [
        f"{e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else "")
        for e in changeset.entries
    ]
    done = ", ".join(f"{changeset.count(v)} {v.value}" for v in Verb if changeset.count(v))
    lines.append(f"Apply complete: {done or 'nothing to do'}.")
    return "\n".join(lines)


def render_apply_failed(changeset: ChangeSet, error: str) -> str:
    """An apply that stopped at a change: the error first, then what was done before it and
    what the next apply does. Never "Apply complete"."""
    made = (Verb.CREATED, Verb.CONFIGURED, Verb.DELETED)
    n = sum(e.verb in made for e in changeset.entries)
    lines = [f"Apply failed after {n} change{'' if n == 1 else 's'}: {redact_text(error)}"]
    if changeset.entries:
        lines.append("Done before the failure:")
        lines += [
            f"  {e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else "")
            for e in changeset.entries
        ]
        lines.append("Nothing after the failed change was applied; the next apply finishes the "
                     "work, reusing what was made.")  # fmt: skip
    else:
        lines.append("Nothing was applied.")
    return "\n".join(lines)


def apply_failed_document(exc: ApplyFailed) -> dict[str, Any]:
    """``apply --format json`` when apply stops at a change: the error, the change that failed
    and what was done before it (a document on stdout, as a successful apply prints one)."""
    return {
        "applied": False,
        "error": redact_text(str(exc)),
        "failed_change": exc.failed or None,
        "changeset": exc.changeset.to_dict(),
    }


def _redact_object(value: Any, key: str = "") -> Any:
    """An object with secret-looking values hidden; an env entry's value by its name."""
    if isinstance(value, dict):
        if isinstance(value.get("name"), str) and "value" in value:
            return {**value, "value": redact(value["name"], value["value"])}
        return {k: _redact_object(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_object(v, key) for v in value]
    return redact(key, value)


def _object_lines(obj: Any) -> list[str]:
    if obj is None:
        return []
    return json.dumps(_redact_object(display(obj)), indent=2, sort_keys=True).splitlines()


def render_previews(previews: Sequence[ObjectPreview], fmt: str = "text") -> str:
    """Each object a plan would write: the live object against the server-side dry run's result,
    as a unified diff (status and server-kept metadata left out, secrets redacted)."""
    if fmt == "json":
        return json.dumps([_redact_object(p.to_dict()) for p in previews], indent=2)
    out: list[str] = []
    if fmt == "markdown":
        out += ["", "#### Kubernetes objects (server-side dry run)", ""]
    else:
        out += ["", "Kubernetes objects (server-side dry run):"]
    for p in previews:
        head = f"{p.address} (agent {p.agent}): {p.action}"
        if p.note:
            head += f": {p.note}"
        diff = list(
            difflib.unified_diff(
                _object_lines(p.before),
                _object_lines(p.after)
                if p.after is not None or not p.note
                else _object_lines(p.before),
                fromfile=f"live {p.address}" if p.before is not None else "/dev/null",
                tofile=f"dry-run {p.address}" if p.after is not None else "/dev/null",
                lineterm="",
                n=3,
            )
        )
        if fmt == "markdown":
            out += [f"<details><summary>{_code(head)}</summary>", "", "```diff"]
            out += diff or ["(no difference)"]
            out += ["```", "</details>"]
        else:
            out += ["", f"  # {head}"]
            out += [f"    {line}" for line in diff] or ["    (no difference)"]
    return "\n".join(out)
