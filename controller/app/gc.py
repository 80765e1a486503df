"""``agentctl gc``: list (and with ``--yes`` delete) the runs and logged models agentctl logged for
this owner that no registered version references (:mod:`controller.engine.gc`).

A cleanup of its own rather than a step of apply: an apply's job is the desired state, and
deleting what an apply of another machine may be about to register is safe only past an age,
which a command can be asked for and an apply would have to guess.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from controller.app import wiring
from controller.app.options import Options

if TYPE_CHECKING:
    from controller.core.plan.orphans import Orphan

__all__ = ["gc"]


def _line(o: Orphan) -> str:
    what = "logged-model" if o.kind == "logged_model" else "run"
    return (
        f"  {what} {o.id} of {o.model} (agent {o.agent or '?'}, source {o.digest[:19]}…, "
        f"{_age(o.age_s)} old)"
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def gc(
    yes: Annotated[bool, typer.Option("--yes", help="Delete them (default: only list).")] = False,
    min_age: Annotated[
        float,
        typer.Option(
            "--min-age",
            min=0,
            help="Seconds a run or logged model must have existed: one younger may belong to "
            "an apply that has not registered it yet.",
        ),
    ] = 3600.0,
    *,
    opts: Options,
) -> None:
    """Find the runs and logged models agentctl logged for --owner that no registered version
    references (left by applies that stopped between logging and registering) and list them;
    --yes deletes them. Nothing another owner logged, and nothing a version uses, is touched."""
    from controller.engine.gc import collect
    from controller.engine.retry import RetryPolicy

    registry = wiring.registry(opts.tracking_uri)
    found = collect(
        registry, opts.owner, now_ms=int(time.time() * 1000), min_age_s=min_age, delete=False,
        policy=RetryPolicy.from_env(),
    )  # fmt: skip
    if not found:
        typer.echo(f"Nothing to collect: no run or logged model of owner '{opts.owner}' older "
                   f"than {_age(min_age)} is without a registered version.")  # fmt: skip
        return
    if not yes:
        typer.echo(f"Would delete ({len(found)}; --yes deletes):")
        for o in found:
            typer.echo(_line(o))
        return
    typer.echo("Deleting:")
    done = collect(
        registry, opts.owner, now_ms=int(time.time() * 1000), min_age_s=min_age, delete=True,
        policy=RetryPolicy.from_env(), on_deleted=lambda o: typer.echo(_line(o)),
    )  # fmt: skip
    typer.echo(f"Deleted {len(done)}.")
