"""``agentctl eval``: evaluate the working tree's candidates for a pull request, without
registering anything (:mod:`controller.engine.candidates`), and print each agent's table of
figures, candidate beside champion, with every threshold passed or failed.

Exit codes: 0 every gate passed (or there was nothing to evaluate); 1 an error (bad manifests, an
evaluation that could not be made, a tracking server that failed), through the one error
handler; 3 a gate failed (:data:`GATE_FAILED`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.app import output, sources, wiring
from controller.app.options import Format, FormatOpt, Options, PathArg

__all__ = ["GATE_FAILED", "evaluate"]

#: The exit code of an evaluation a candidate failed (1 is an error, 2 plan's pending changes).
GATE_FAILED = 3


def evaluate(
    path: PathArg,
    format: FormatOpt = Format.text,
    changed_since: Annotated[
        str | None,
        typer.Option(
            "--changed-since",
            metavar="GIT_REF",
            help="Evaluate only agents whose manifest, source or evaluation files (dataset, "
            "code scorers) changed since GIT_REF, and those whose source is not registered yet "
            "(as plan --changed-since).",
        ),
    ] = None,
    *,
    opts: Options,
) -> None:
    """Evaluate each agent's working-tree version (spec.source) on its spec.evaluation dataset
    with its scorers, without registering it: the agent's code runs in a child process,
    loaded from source, and the evaluation runs are logged to MLflow. Beside it, the champion
    (the registered version it would replace: the rollout's promote alias, else the alias with
    the most traffic, else the first alias) is evaluated too, unless its figures for the same
    evaluation are recorded on it. Prints, per agent, each scorer's figure for both and each
    threshold passed or failed; --format markdown is a pull-request comment.

    Exit codes: 0 every threshold passed, or nothing to evaluate; 1 an error (invalid
    manifests, an evaluation that could not be made: a dataset, a scorer, a judge, the tracking
    server); 3 a candidate failed a threshold."""
    from controller.core.plan.scope import select
    from controller.core.prompt.resolve import bind_prompts
    from controller.engine.candidates import evaluate_candidates
    from controller.engine.retry import RetryPolicy

    desired, _ = sources.load(path, opts)  # bad manifests stop here: exit 1, nothing run
    changed = None
    if changed_since is not None:
        changed, _ = sources.changes_since(path, Path(desired.root), changed_since)
    registry = wiring.registry(opts.tracking_uri)
    observed = RetryPolicy.from_env().call(registry.observe)
    desired, _ = bind_prompts(desired, observed)  # (a binding in error: `plan` says why)
    scope = select(desired, changed, observed) if changed is not None else None
    report = evaluate_candidates(
        desired, observed, lambda: wiring.evaluator(opts.tracking_uri), owner=opts.owner, scope=scope,
        written_by=wiring.written_by(),
    )  # fmt: skip
    output.show_eval(report, format)
    if not report.passed:
        raise typer.Exit(GATE_FAILED)
