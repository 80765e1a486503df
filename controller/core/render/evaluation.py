"""Render what ``agentctl eval`` found (:class:`~controller.core.evaluation.report.EvalReport`)
as text (a terminal), markdown (a pull-request comment, beside the plan) or JSON. Pure: returns
strings; what looks like a secret (a judge's error quoting a URL) is redacted in every format.

The JSON document's keys are stable::

    {"passed": bool,
     "agents": [{"agent", "model", "dataset", "scope",
                 "candidate": {"label", "run_id"},
                 "champion": null | {"version", "why", "run_id", "figures"},
                 "passed", "reason",
                 "checks": [{"scorer", "candidate", "champion", "threshold", "result",
                             "rows", "errors", "note"}]}],
     "skipped": [{"agent", "reason"}]}

``figures`` says where the champion's figures come from: ``recorded`` (on the version, for the
same evaluation), ``evaluated`` (in this run) or ``same source`` (the candidate's own: its source
is the champion's). ``result`` is ``pass``, ``fail``, ``skipped`` (a maxDrop with no champion
figure) or null (a scorer without a threshold).
"""

from __future__ import annotations

from controller.core.evaluation.report import (
    FAIL,
    NO_EVALUATION,
    PASS,
    SKIPPED,
    AgentEvaluation,
    EvalReport,
)
from controller.core.render.formats import md_cell, render_json
from controller.core.secrets import redact_text

__all__ = ["EVAL_MARKER", "render_eval", "summary"]

#: The first line of the markdown: lets a CI job find the evaluation in its comment.
EVAL_MARKER = "<!-- agentctl-eval -->"
_MD_RESULT = {PASS: ":white_check_mark: pass", FAIL: ":x: fail", SKIPPED: "skipped", "": "—"}


def render_eval(report: EvalReport, fmt: str = "text") -> str:
    if fmt == "json":
        return render_json(report.to_dict())
    if fmt == "markdown":
        return _markdown(report)
    return _text(report)


def summary(report: EvalReport) -> str:
    """``Evaluated 2 agents: 1 passed, 1 failed.``; or why there was nothing to evaluate: no
    agent in scope, none in scope with spec.evaluation, or none that could be evaluated (each
    not evaluated is listed with why)."""
    if not report.evaluated:
        n = len(report.skipped)
        if n == 0:
            return "Nothing to evaluate: no agent is in scope."
        if all(why == NO_EVALUATION for _, why in report.skipped):
            return "Nothing to evaluate: no agent in scope has spec.evaluation."
        if n == 1:
            return "Nothing to evaluate: the one agent in scope was not evaluated (why is listed)."
        return (
            f"Nothing to evaluate: none of the {n} agents in scope was evaluated (why is listed)."
        )
    n, failed = len(report.evaluated), len(report.failed)
    return f"Evaluated {n} agent{'' if n == 1 else 's'}: {n - failed} passed, {failed} failed."


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _champion_line(a: AgentEvaluation) -> str:
    if a.champion is None:
        return "none (nothing registered to compare with: maxDrop is skipped)"
    where = {
        "recorded": f"figures recorded on the version (run {a.champion_run})",
        "evaluated": f"evaluated now (run {a.champion_run})",
        "same source": "the candidate's own figures: same source",
    }.get(a.champion_from, a.champion_from)
    return f"{a.champion.label}, {where}"


def _text(report: EvalReport) -> str:
    out: list[str] = []
    for a in report.evaluated:
        out.append(f"{a.agent}: {a.verdict.word} on {a.dataset}")
        if a.scope:
            out.append(f"  evaluated because {a.scope}")
        out.append(f"  candidate: {a.candidate} (run {a.candidate_run or '?'})")
        out.append(f"  champion:  {_champion_line(a)}")
        rows = [("scorer", "candidate", "champion", "threshold", "result")]
        rows += [
            (c.scorer, _figure(c.candidate), _figure(c.champion), c.threshold or "—",
             c.result.upper() if c.result == FAIL else c.result or "—")
            for c in a.checks
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            out.append(
                "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            )
        if not a.passed:
            out.append(f"  => {redact_text(a.verdict.reason)}")
        out.append("")
    for agent, why in report.skipped:
        out.append(f"{agent}: not evaluated ({why})")
    if report.skipped:
        out.append("")
    out.append(summary(report))
    return "\n".join(out)


def _md(text: str) -> str:
    """Text safe in a markdown table cell, secrets redacted (the plan comment's own escaping)."""
    return md_cell(redact_text(text))


def _code(text: str) -> str:
    return f"<code>{_md(text)}</code>"


def _markdown(report: EvalReport) -> str:
    out = [EVAL_MARKER, "### agentctl eval", "", f"**{summary(report)}**"]
    for a in report.evaluated:
        mark = ":white_check_mark: passed" if a.passed else ":x: failed"
        out += ["", f"#### {_md(a.agent)}: {mark}", ""]
        out.append(f"Dataset: {_md(a.dataset)}<br>")
        run = f" (run {_code(a.candidate_run)})" if a.candidate_run else ""
        out.append(f"Candidate: {_md(a.candidate)}{run}<br>")
        out.append(f"Champion: {_md(_champion_line(a))}" + ("<br>" if a.scope else ""))
        if a.scope:
            out.append(f"<i>Evaluated because {_md(a.scope)}.</i>")
        out += [
            "",
            "| scorer | candidate | champion | threshold | result |",
            "|---|---|---|---|---|",
        ]
        for c in a.checks:
            out.append(
                f"| {_code(c.scorer)} | {_figure(c.candidate)} | {_figure(c.champion)} | "
                f"{_md(c.threshold) or '—'} | {_MD_RESULT[c.result]} |"
            )
        if not a.passed:
            out += [""] + [f"- {_md(m.message)}" for m in a.verdict.misses]
    if report.skipped:
        out += ["", "Not evaluated: " + ", ".join(
            f"{_code(agent)} ({_md(why)})" for agent, why in report.skipped) + "."]  # fmt: skip
    return "\n".join(out)
