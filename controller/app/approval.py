"""``agentctl approve | reject AGENT --env NAME [--version N]``: record a person's decision on the
version that would be promoted into an environment; ``agentctl history AGENT``: the trail.

The decision is written on that version, in the registered model of the environment before
(:mod:`controller.core.environment.record`: ``agentctl.io/approval.<env>`` = ``Approved`` or
``Rejected``, with who and when beside it), so it is auditable in MLflow and holds for that
version only: a newer candidate needs its own. The controller wakes on MLflow's
``model_version_tag.set`` webhook and promotes at its next reconcile; ``agentctl apply --env``
does once.
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Annotated

import typer

from controller.app import output, sources, wiring
from controller.app.options import Options
from controller.core.errors import InvalidInput

__all__ = ["approve", "history_cmd", "reject"]

AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="The agent (metadata.name).")]
PathArg = Annotated[
    Path, typer.Argument(metavar="PATH", help="The manifests (a file or a directory).")
]
VersionOpt = Annotated[
    int | None,
    typer.Option(
        "--version",
        metavar="N",
        min=1,
        help="The version (of the agent's model in the environment before) to decide on. "
        "Default: the one waiting to be promoted.",
    ),
]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", metavar="WHO", help="Who decides. Default: the user running this."),
]


def approve(
    agent: AgentArg, path: PathArg, version: VersionOpt = None, by: ByOpt = None, *, opts: Options
) -> None:
    """Approve AGENT's version for promotion into --env (a promotion with approval: true)."""
    _decide(agent, path, version, by, opts, approved=True)


def reject(
    agent: AgentArg, path: PathArg, version: VersionOpt = None, by: ByOpt = None, *, opts: Options
) -> None:
    """Reject AGENT's version for --env: it is not promoted there (a newer version may be)."""
    _decide(agent, path, version, by, opts, approved=False)


def _decide(
    agent: str, path: Path, version: int | None, by: str | None, opts: Options, *, approved: bool
) -> None:
    from controller.core.environment.overlay import environment_named
    from controller.core.environment.record import approval_tags, model_uri
    from controller.core.manifest.schema_environment import Promotion
    from controller.engine.retry import RetryPolicy

    if opts.environment is None:
        raise InvalidInput.of("name the environment the version is to enter", field="--env")
    desired, _ = sources.load(path, opts)
    env = environment_named(desired, opts.environment)
    names = ", ".join(e.name for e in desired.environments) or "none"
    if env is None:
        raise InvalidInput.of(
            f"no environment '{opts.environment}' (declared: {names})", field="--env"
        )
    if env.manifest.spec.after is None:
        raise InvalidInput.of(
            f"'{env.name}' is a first environment: it logs versions from source, nothing is "
            "promoted into it",
            field="--env",
        )
    if agent not in {a.name for a in desired.agents}:
        known = ", ".join(a.name for a in desired.agents) or "none"
        raise InvalidInput.of(f"no Agent manifest declares '{agent}' (agents: {known})",
                              field="AGENT")  # fmt: skip
    previous = environment_named(desired, env.manifest.spec.after)
    assert previous is not None
    source_model = previous.manifest.model_of(agent)
    rules = env.manifest.spec.promotion or Promotion()
    # The approval is recorded on the version, where the environment before lives.
    registry = wiring.registry_in(*sources.location_of(desired, previous.name, opts))
    policy = RetryPolicy.from_env()
    model = policy.call(registry.observe).models.get(source_model)
    if model is None:
        raise InvalidInput.of(f"registered model '{source_model}' ({previous.name}) does not "
                              "exist yet", field="AGENT")  # fmt: skip
    number = version if version is not None else model.aliases.get(rules.from_)
    if number is None:
        raise InvalidInput.of(f"'{source_model}' has no alias '{rules.from_}': name the version "
                              "with --version", field="--version")  # fmt: skip
    if number not in model.versions:
        have = ", ".join(str(n) for n in sorted(model.versions)) or "none"
        raise InvalidInput.of(f"'{source_model}' has no version {number} (it has {have})",
                              field="--version")  # fmt: skip
    who = by or getpass.getuser()
    for key, value in approval_tags(env.name, approved, who, time.time()).items():
        policy.call(lambda k=key, v=value: registry.set_version_tag(source_model, number, k, v))  # type: ignore[misc]
    word = "approved" if approved else "rejected"
    typer.echo(
        f"{agent}: {model_uri(source_model, number)} {word} for {env.name} by {who}. A running "
        f"controller acts on it at its next reconcile; `agentctl apply --env {env.name}` does "
        "once."
    )
    if not rules.approval:
        output.err(
            f"note: the promotion into {env.name} does not ask for an approval "
            f"(spec.promotion.approval of environment '{env.name}' is not true): the decision is "
            "recorded, and gates nothing"
        )


def history_cmd(
    agent: AgentArg,
    path: PathArg,
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="text, markdown (for a review) or json."),
    ] = "text",
    *,
    opts: Options,
) -> None:
    """AGENT's audit trail: each version in each environment (or in --env), its commit, digest,
    evaluation verdict, where it was promoted from and who approved it; and a timeline of
    versions registered, aliases moved (as agentctl recorded them), approvals and rollouts."""
    from controller.core.environment.history import history
    from controller.core.render.history import render_history
    from controller.engine.retry import RetryPolicy

    if format not in ("text", "markdown", "json"):
        raise InvalidInput.of(f"unknown format {format!r} (text, markdown or json)",
                              field="--format")  # fmt: skip
    desired, _ = sources.load(path, opts)
    if agent not in {a.name for a in desired.agents}:
        known = ", ".join(a.name for a in desired.agents) or "none"
        raise InvalidInput.of(f"no Agent manifest declares '{agent}' (agents: {known})",
                              field="AGENT")  # fmt: skip
    names = [e.name for e in desired.environments]
    if opts.environment is not None and opts.environment not in names:
        raise InvalidInput.of(f"no environment '{opts.environment}' (declared: "
                              f"{', '.join(names) or 'none'})", field="--env")  # fmt: skip
    # Each environment read where it lives (each registry once).
    policy = RetryPolicy.from_env()
    where = {n: sources.location_of(desired, n, opts) for n in names}
    seen = {at: policy.call(wiring.registry_in(*at).observe) for at in sorted(
        set(where.values()), key=lambda at: (at[0], at[1] or "")
    )}  # fmt: skip
    observed = (
        seen[where[names[0]]] if names else policy.call(wiring.registry(opts.tracking_uri).observe)
    )
    by_env = {n: seen[at] for n, at in where.items()}
    typer.echo(render_history(history(desired, observed, agent, opts.environment, by_env),
                              format))  # fmt: skip
