"""What the CLI prints, all through :mod:`controller.core.render`; and its one error handler.

Plans and results go to stdout; diagnostics and errors to stderr. Inside GitHub Actions each
diagnostic is also printed as a workflow command (an annotation on the pull request's diff).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer

from controller.app.options import Format
from controller.core.diagnostics import Diagnostic
from controller.core.errors import (
    AgentctlError,
    ApplyFailed,
    InvalidInput,
    PlanRejected,
    TemporaryBackendError,
)
from controller.core.evaluation.report import EvalReport
from controller.core.plan.changes import Plan
from controller.core.plan.changeset import ChangeSet, Entry
from controller.core.secrets import redact_text

__all__ = [
    "annotate",
    "configure_logging",
    "consent_to_delete",
    "deleted_models",
    "err",
    "fail",
    "handled",
    "show_endpoint",
    "show_entry",
    "show_eval",
    "show_plan",
]

F = TypeVar("F", bound=Callable[..., Any])


def err(text: str) -> None:
    """A message on stderr, what looks like a secret redacted (an error may quote a URI)."""
    from controller.core.secrets import redact_lines

    typer.echo(redact_lines(text), err=True)


class _Redacting(logging.Formatter):
    """Each log line, its traceback included, with what looks like a secret redacted: a library
    that logs a request's URL (with its user info) says nothing more than agentctl's messages."""

    def format(self, record: logging.LogRecord) -> str:
        from controller.core.secrets import redact_lines

        return redact_lines(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    """The long-running commands' log on stderr: a time, a level, the logger, the message."""
    logging.basicConfig(level=level)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def annotate(diagnostics: Iterable[Diagnostic]) -> None:
    """Inside GitHub Actions, also print each diagnostic as a workflow command. GitHub matches
    paths relative to the repository root, so each file is made relative to the git work tree
    that holds it; a file in none keeps the path as given, relative to the working directory
    when it lies under it."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from controller.core.render.annotations import workflow_commands
    from controller.engine.loader import git_work_tree

    def repo_path(file: str) -> str:
        path = Path(file).resolve()
        top = git_work_tree(path) or Path.cwd().resolve()
        return path.relative_to(top).as_posix() if path.is_relative_to(top) else file

    for line in workflow_commands(diagnostics, repo_path):
        typer.echo(line)


def fail(exc: AgentctlError, fmt: Format = Format.text) -> typer.Exit:
    """Say what went wrong and what was (not) applied; the command exits 1."""
    from controller.core.render.formats import (
        apply_failed_document,
        render_apply_failed,
        render_diagnostics,
        render_json,
    )

    if isinstance(exc, InvalidInput | PlanRejected):
        if fmt is Format.text:
            annotate(exc.diagnostics)
        if fmt is Format.json:
            diags = [d.to_dict() for d in exc.diagnostics]
            typer.echo(render_json({"valid": False, "diagnostics": diags}))
        err(render_diagnostics(exc.diagnostics))
    elif isinstance(exc, ApplyFailed):
        if fmt is Format.json:
            typer.echo(render_json(apply_failed_document(exc)))
        err(render_apply_failed(exc.changeset, str(exc)))
    elif isinstance(exc, TemporaryBackendError):
        err(f"Error: {exc}")
        err(
            "Gave up after retrying with backoff (AGENTCTL_RETRY_ATTEMPTS, AGENTCTL_RETRY_DEADLINE)."
        )
    else:
        err(f"Error: {exc}")
    return typer.Exit(1)


def handled(fn: F, *, json_errors: bool = True) -> F:
    """The one error handler: an AgentctlError a command raises is said once and exits 1; with
    ``json_errors``, bad input is also a JSON object on stdout when ``--format json`` was asked
    for (validate, plan, apply)."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgentctlError as exc:
            fmt = kwargs.get("format", Format.text)
            json_asked = json_errors and fmt is Format.json
            raise fail(exc, Format.json if json_asked else Format.text) from None

    return command  # type: ignore[return-value]


def show_plan(plan: Plan, fmt: Format) -> None:
    """The plan on stdout; in text, diagnostics go to stderr and a plan with errors shows only
    them."""
    from controller.core.render.formats import render_diagnostics, render_plan

    if fmt is not Format.text:
        typer.echo(render_plan(plan, fmt.value))
    elif not plan.has_errors:
        typer.echo(render_plan(plan, "text"))
    if fmt is Format.text and len(plan.diagnostics):
        annotate(plan.diagnostics)
        err(("\n" if not plan.has_errors else "") + render_diagnostics(plan.diagnostics))


def render_plan_md(plan: Plan) -> str:
    from controller.core.render.formats import render_plan

    return render_plan(plan, "markdown")


def show_eval(report: EvalReport, fmt: Format) -> None:
    """What ``agentctl eval`` found, on stdout; in text, the thresholds missed also on stderr."""
    from controller.core.render.evaluation import render_eval

    typer.echo(render_eval(report, fmt.value))
    if fmt is Format.text:
        for a in report.failed:
            err(f"Error: {a.agent}: the candidate failed its evaluation: {a.verdict.reason}")


def deleted_models(plan: Plan) -> list[str]:
    """The registered models a plan deletes (``--prune``), sorted."""
    from controller.core.plan.changes import Action, Kind

    return sorted({c.model for c in plan.changes
                   if c.kind is Kind.REGISTERED_MODEL and c.action is Action.DELETE})  # fmt: skip


def consent_to_delete(plan: Plan, yes: bool) -> None:
    """A plan that deletes registered models (``--prune``) is applied only with consent: asked
    on a terminal, ``--yes`` otherwise. Without it, exit 1 before anything is applied."""
    import sys

    doomed = deleted_models(plan)
    if not doomed or yes:
        return
    names = ", ".join(f"'{m}'" for m in doomed)
    what = f"registered model{'s' if len(doomed) > 1 else ''} {names}, with every version"
    if sys.stdin.isatty():
        if typer.confirm(f"\nDelete {what}?", default=False, err=True):
            return
        err("Apply cancelled: nothing was applied.")
        raise typer.Exit(1)
    err(f"Error: --prune would delete {what}; not on a terminal to ask, so pass --yes (or "
        "--auto-approve) to confirm. Nothing was applied.")  # fmt: skip
    raise typer.Exit(1)


def failed_evaluations(plan: Plan, done: ChangeSet) -> bool:
    """Say, on stderr, each version that failed its evaluation (in this apply, or recorded
    before and still withheld); True if there is any (``apply`` then exits 1)."""
    said = False
    for e in done.failed_evaluations:
        agent = e.address.split(".", 1)[0]
        err(f"Error: {agent}: {redact_text(e.detail)}; it gets no alias and no traffic")
        said = True
    now = {e.address.split(".", 1)[0] for e in done.failed_evaluations}
    for g in plan.gated:
        if g.agent not in now:
            err(f"Error: {g.agent}: {redact_text(g.message)}")
            said = True
    return said


def show_entry(e: Entry) -> None:
    typer.echo(f"{e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else ""))


def show_endpoint(run_dir: Path) -> None:
    from controller.adapters.local.rundir import RunDir

    info = RunDir.read(RunDir(run_dir).daemon_file)
    if info is not None:
        typer.echo(f"Serving at {info['router']}/agents/<agent>/invocations")
