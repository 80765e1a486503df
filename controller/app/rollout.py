"""``agentctl rollout promote | abort | rollback``: ask the controller to act on a rollout.

A command is written to the agent's registered model as a tag that names the rollout (and step)
it is for; the next reconcile acts on it once (Argo Rollouts' explicit promote / abort flags).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from controller.app import wiring
from controller.app.options import Options
from controller.core.errors import InvalidInput

if TYPE_CHECKING:
    from controller.core.rollout.codec import RolloutState
    from controller.core.rollout.commands import Command
    from controller.core.state.observed import ObservedModel

__all__ = ["abort", "promote", "rollback"]

AgentArg = Annotated[str, typer.Argument(metavar="AGENT", help="The agent (metadata.name).")]

_ACTS = (
    "A running controller (or `agentctl apply --wait`) acts on it at its next reconcile; "
    "`agentctl apply` does once."
)


def _ask(
    opts: Options,
    agent: str,
    make: Callable[[RolloutState | None, ObservedModel], Command],
    check: Callable[[ObservedModel], None] = lambda model: None,
) -> None:
    """Write the rollout command ``make`` gives (from the agent's recorded rollout and its model)
    to the tags of the agent's model that ``opts.owner`` owns, once ``check`` passes on the
    model; say what was asked."""
    from controller.core.rollout import codec
    from controller.core.rollout.commands import COMMAND_TAG
    from controller.core.state.observed import AGENT_TAG
    from controller.engine.retry import RetryPolicy

    registry = wiring.registry(opts.tracking_uri)
    policy = RetryPolicy.from_env()
    observed = policy.call(registry.observe)
    model = observed.agents(opts.owner, opts.environment).get(agent)
    if model is None or model.tags.get(AGENT_TAG) != agent:
        others = observed.others(agent, opts.owner)
        why = "; ".join(f"'{m}' is managed by '{o}'" for m, o in others.items())
        known = ", ".join(sorted(observed.agents(opts.owner, opts.environment))) or "none"
        raise InvalidInput.of(
            f"no registered model owned by '{opts.owner}' belongs to agent '{agent}'"
            + (f" ({why}; models of other owners are never touched)" if why else "")
            + f". Agents of owner '{opts.owner}': {known}",
            field="AGENT",
        )
    # In the order a user fixes things: the agent, then its rollout record, then the request.
    cmd = make(codec.read(model.tags).state, model)
    check(model)
    policy.call(lambda: registry.set_model_tag(model.name, COMMAND_TAG, cmd.to_tag()))
    what = {"promote": "promote", "abort": "abort"}.get(cmd.kind, f"roll back to v{cmd.version}")
    typer.echo(f"{agent}: asked to {what} ({cmd.to_tag()}). {_ACTS}")


def _active(agent: str, state: RolloutState | None) -> RolloutState:
    if state is None or state.phase.done:
        where = "none is recorded" if state is None else f"the last one is {state.phase.value}"
        raise InvalidInput.of(f"agent '{agent}' has no rollout under way ({where})", field="AGENT")
    return state


def promote(agent: AgentArg, *, opts: Options) -> None:
    """Skip the current step's pause (or an inconclusive hold) of AGENT's rollout."""
    from controller.core.rollout.commands import Command

    def make(state: RolloutState | None, model: ObservedModel) -> Command:
        s = _active(agent, state)
        return Command("promote", s.canary, step=s.step)

    _ask(opts, agent, make)


def abort(agent: AgentArg, *, opts: Options) -> None:
    """Send all of AGENT's traffic back to the stable version now; the rollout stays aborted
    until its canary or spec.rollout changes."""
    from controller.core.rollout.commands import Command

    _ask(opts, agent, lambda state, model: Command("abort", _active(agent, state).canary))


def rollback(
    agent: AgentArg,
    to_version: Annotated[
        int | None,
        typer.Option(
            "--to-version",
            metavar="VERSION",
            min=1,
            help="Default: the version the last rollout replaced.",
        ),
    ] = None,
    *,
    opts: Options,
) -> None:
    """Send AGENT's traffic and promote alias back to the previously stable version (recorded by
    its last rollout), or to --to-version; it stays there until the canary or spec.rollout
    changes."""
    from controller.core.rollout.commands import Command

    def make(state: RolloutState | None, model: ObservedModel) -> Command:
        if state is None:
            # A rollback acts on a rollout spec.rollout started; without one, the manifest says
            # what serves (and an apply would put back anything a command moved).
            raise InvalidInput.of(
                f"{agent} has no recorded rollout to roll back (rollback undoes a rollout "
                f"that spec.rollout ran). To serve another version (versions: {_versions(model)}),"
                " point its aliases or spec.serving.traffic at it in its manifest and run "
                "`agentctl apply`",
                field="AGENT",
            )
        target = to_version if to_version is not None else state.stable
        return Command("rollback", state.canary, version=target)

    def check(model: ObservedModel) -> None:
        if to_version is not None and to_version not in model.versions:
            raise InvalidInput.of(
                f"version {to_version} of agent '{agent}' does not exist "
                f"(versions: {_versions(model)})",
                field="--to-version",
            )

    _ask(opts, agent, make, check)


def _versions(model: ObservedModel) -> str:
    return ", ".join(map(str, sorted(model.versions))) or "none"
