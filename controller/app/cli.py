"""The ``agentctl`` command: a thin shell over load, the one reconcile and render.

Exit codes: 0 success; 1 error (bad input, plan errors, a backend that failed); ``eval``
returns 3 when a candidate failed a threshold (:mod:`controller.app.evaluate`); ``plan
--detailed-exitcode`` also returns 2 when the manifests' state is not reached: changes pending
(Terraform's convention), or a rollout failed, aborted, paused until promoted or still under way,
on every target (a rollout's record is in the registry). Options
are declared once (:mod:`controller.app.options`), adapters built in one place
(:mod:`controller.app.wiring`), errors handled in one place (:func:`controller.app.output.handled`).
Heavy modules (mlflow) are imported only by the commands that talk to a registry.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from controller.app import approval, output, rollout, saved, sources, wiring
from controller.app import evaluate as eval_cmd
from controller.app import gc as gc_cmd
from controller.app import options as o
from controller.app.helptext import HelpCommand, HelpGroup
from controller.app.options import (
    Format,
    FormatOpt,
    Options,
    PathArg,
    Target,
    takes,
)
from controller.core.errors import AgentctlError, InvalidInput
from controller.core.secrets import without_credentials

if TYPE_CHECKING:
    from controller.core.plan.changes import Plan
    from controller.engine.reconcile import Backends, Result

__all__ = ["app", "main"]

app = typer.Typer(
    name="agentctl",
    help="Declarative GitOps deployment of LLM agents packaged as MLflow models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=HelpGroup,
)
rollout_app = typer.Typer(
    help="Act on an agent's canary rollout: the controller (or `apply`) carries it out.",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=HelpGroup,
)
app.add_typer(rollout_app, name="rollout")

F = TypeVar("F", bound=Callable[..., Any])


def command(*names: str, name: str | None = None, group: typer.Typer = app,
            help: dict[str, str] | None = None, json_errors: bool = True,
            **defaults: Any) -> Callable[[F], F]:  # fmt: skip
    """Register a command that takes the shared options ``names`` and whose AgentctlErrors go
    through the one handler."""

    def wrap(fn: F) -> F:
        taking = takes(*names, help=help, **defaults)(fn)
        text = paragraphs(fn.__doc__ or "")
        group.command(name, help=text, cls=HelpCommand)(
            output.handled(taking, json_errors=json_errors)
        )
        return fn

    return wrap


def paragraphs(doc: str) -> str:
    """A docstring as help: each paragraph one line, which :mod:`controller.app.helptext` wraps
    at the terminal's width (not at the docstring's own line breaks)."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        from controller import __version__

        typer.echo(f"agentctl {__version__}")
        raise typer.Exit(0)


class _Session:
    """The manifests at PATH and the backends built for them once, for one or more reconciles."""

    def __init__(self, path: Path, opts: Options, *, attach: bool = False) -> None:
        self.path, self.opts, self.attach = path, opts, attach
        self.latest = sources.Latest(path, opts)
        self.backends: Backends | None = None

    def reconcile(self, *, apply: bool, changed_since: str | None = None, **hooks: Any) -> Result:
        from controller.engine.reconcile import reconcile

        desired = self.latest.load()  # bad manifests stop here, before any server is asked
        if self.backends is None:
            self.opts = sources.env_options(desired, self.opts)
            self.backends = wiring.backends(self.opts, self.latest.settings, attach=self.attach)
        changed, baseline = None, None
        if changed_since is not None:
            changed, baseline = sources.changes_since(self.path, Path(desired.root), changed_since)
        guard = wiring.lock(self.opts, self.backends.registry) if apply else None
        return reconcile(
            desired, self.backends, apply=apply, owner=self.opts.owner, prune=self.opts.prune,
            changed=changed, baseline=baseline, workers=self.opts.parallelism, guard=guard,
            **hooks,
        )  # fmt: skip


@command(*o.LOAD)
def validate(path: PathArg, format: FormatOpt = Format.text, *, opts: Options) -> None:
    """Check manifests and the files they name. Exit 0 if valid, 1 if not. Touches no server."""
    from controller.core.render.formats import render_diagnostics, render_json

    desired, diags = sources.load(path, opts)
    if format is Format.json:
        payload = {"valid": True, "agents": [a.name for a in desired.agents],
                   "prompts": [p.name for p in desired.prompts],
                   "diagnostics": [d.to_dict() for d in diags]}  # fmt: skip
        typer.echo(render_json(payload))
        return
    if len(diags):
        output.annotate(diags)
        output.err(render_diagnostics(diags))
    typer.echo(f"Success: {len(desired.agents)} agent(s), {len(desired.prompts)} prompt(s) valid.")


@app.command(cls=HelpCommand)
def schema() -> None:
    """Print the JSON Schema of an Agent manifest (for editors and yaml-language-server)."""
    from controller.core.manifest.schema_json import manifest_json_schema

    typer.echo(json.dumps(manifest_json_schema(), indent=2))


@command(*o.REGISTRY, *o.WRITE, *o.LOAD, *o.SERVING)
def plan(
    path: PathArg,
    format: FormatOpt = Format.text,
    changed_since: Annotated[
        str | None,
        typer.Option(
            "--changed-since",
            metavar="GIT_REF",
            help="Plan only agents whose manifest, source or evaluation files (dataset, code "
            "scorers) changed since GIT_REF, and those whose source is not registered yet.",
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 2 when what the manifests ask for is not reached: changes pending, or "
            "a rollout failed, aborted, paused until `agentctl promote`, or still under way "
            "(on every target: a rollout's record is in the registry).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Also save the plan to this file: `agentctl apply FILE` applies exactly it, or "
            "refuses if the manifests, registry or serving changed since."
        ),
    ] = None,
    *,
    opts: Options,
) -> None:
    """Show what apply would change. Never runs agent code, never writes, never starts a server.
    With --target kubernetes, each object it would write is shown as a server-side dry-run diff."""
    from controller.core.render.formats import render_json, render_previews

    if opts.environment == "all":
        _plan_every_environment(path, format, changed_since, detailed_exitcode, out, opts)
        return
    session = _Session(path, opts)
    result = session.reconcile(apply=False, changed_since=changed_since)
    if format is Format.json and result.previews:
        payload = result.plan.to_dict()
        payload["objects"] = json.loads(render_previews(result.previews, "json"))
        typer.echo(render_json(payload))
    else:
        output.show_plan(result.plan, format)
        if result.previews and not result.plan.has_errors:
            typer.echo(render_previews(result.previews, format.value))
    if out is not None:
        saved.save_plan(out, result, path, session.opts)  # (the environment's settings)
    if result.plan.has_errors:
        raise typer.Exit(1)
    if detailed_exitcode and not result.plan.reached:
        raise typer.Exit(2)


def _plan_every_environment(
    path: Path,
    format: Format,
    changed_since: str | None,
    detailed_exitcode: bool,
    out: Path | None,
    opts: Options,
) -> None:
    """``plan --env all``: each environment's plan in promotion order (one markdown comment, one
    JSON document); exit as the worst of them."""
    from dataclasses import replace

    from controller.core.render.formats import MARKER, render_json

    if out is not None:
        raise InvalidInput.of("--out saves one environment's plan: name it with --env",
                              field="--out")  # fmt: skip
    desired, _ = sources.load(path, opts)
    names = [e.name for e in desired.environments]
    if not names:
        raise InvalidInput.of("--env all: the manifests declare no environment", field="--env")
    plans = {}
    for name in names:
        each = replace(opts, environment=name)
        plans[name] = _Session(path, each).reconcile(apply=False, changed_since=changed_since).plan
    if format is Format.json:
        typer.echo(render_json({"environments": {n: p.to_dict() for n, p in plans.items()}}))
    elif format is Format.markdown:
        parts = [output.render_plan_md(p).replace(MARKER + "\n", "", 1) for p in plans.values()]
        typer.echo("\n\n".join([MARKER + "\n" + parts[0], *parts[1:]]))
    else:
        for i, (name, p) in enumerate(plans.items()):
            typer.echo(("\n" if i else "") + f"=== Environment {name} ===")
            output.show_plan(p, format)
    if any(p.has_errors for p in plans.values()):
        raise typer.Exit(1)
    if detailed_exitcode and not all(p.reached for p in plans.values()):
        raise typer.Exit(2)


@command(*o.REGISTRY, *o.WRITE, *o.LOAD, *o.SERVING, "ready_timeout", "prometheus_url",
         "parallelism", "lock", "lock_timeout", "yes", name="apply", ready_timeout=120.0)  # fmt: skip
def apply_cmd(
    path: PathArg,
    format: FormatOpt = Format.text,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Keep reconciling until every rollout is done (promoted and the old "
            "version scaled down, failed, or aborted) and every server is ready, as the "
            "controller would; exit 1 if a rollout failed.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=1,
            help="With --wait: give up after this many seconds.",
        ),
    ] = 3600.0,
    *,
    opts: Options,
) -> None:
    """Plan, then apply the plan: register versions, move aliases, set tags; start and stop model
    servers and set their traffic (with --target local they keep running after this command;
    `agentctl down` stops them). With --target kubernetes every write is dry-run first, and
    traffic moves to a version only once its Deployment is Available. A spec.rollout takes one
    step per apply; --wait walks it to the end. PATH may be a plan saved by `plan --out`: it is
    applied exactly, or refused (exit 1) if what it was made from has changed since."""
    from controller.core.errors import ApplyFailed
    from controller.core.plan.changeset import ChangeSet
    from controller.core.render.formats import render_changeset, render_json
    from controller.core.rollout.progress import Running

    if saved.is_saved_plan(path):
        if wait:
            output.err("Error: --wait applies manifests round after round; a saved plan is "
                       "applied once")  # fmt: skip
            raise typer.Exit(1)
        saved.apply_file(path, format, opts)
        return

    def show_plan(p: Plan) -> None:
        if format is not Format.json or p.has_errors:
            output.show_plan(p, format)
        output.consent_to_delete(p, opts.yes)

    session = _Session(path, opts)
    deadline = time.monotonic() + timeout
    said: dict[str, str] = {}
    rounds = 0
    done = ChangeSet()  # what every round so far did (--wait applies round after round)
    while True:
        try:
            result = session.reconcile(
                apply=True,
                on_plan=show_plan if rounds == 0 else lambda p: output.consent_to_delete(p, opts.yes),
                on_entry=output.show_entry if format is Format.text else None,
            )  # fmt: skip
        except ApplyFailed as exc:
            raise exc.after(done) from exc.cause
        rounds += 1
        if result.terminal is not None:
            raise typer.Exit(1)
        if result.changeset is not None:
            done = ChangeSet(done.entries + result.changeset.entries)
        recorded = {e.address for e in (result.changeset.entries if result.changeset else ())}
        for agent, progress in sorted(result.progress.items()):
            if f"{agent}.rollout" in recorded:
                said[agent] = progress.reason  # its entry said it
            elif format is Format.text and said.get(agent) != progress.reason:
                said[agent] = progress.reason
                typer.echo(f"{agent}: rollout: {progress.reason}")
        if not wait or result.requeue_after is None:
            break
        if time.monotonic() >= deadline:
            output.err(f"Error: --wait: not done after {timeout:g} s (rollouts and servers go on; "
                       "apply again or let the controller finish)")  # fmt: skip
            raise typer.Exit(1)
        time.sleep(max(0.5, min(result.requeue_after, 5.0)))
    if format is Format.json:
        changeset = done.to_dict() if done.entries or result.changeset else None
        typer.echo(render_json({"plan": result.plan.to_dict(), "changeset": changeset}))
    elif result.changeset is not None or done.entries:
        typer.echo("")
        typer.echo(render_changeset(done).splitlines()[-1])
        if result.changeset is not None and result.changeset.waiting:
            typer.echo("Some traffic waits for a version to become available: apply again (or "
                       "let the controller reconcile) once it is.")  # fmt: skip
    if format is Format.text and opts.target is Target.local:
        output.show_endpoint(opts.run_dir)
    failed = sorted(
        a
        for a, p in result.progress.items()
        if isinstance(p, Running) and p.state.phase == "Failed"
    )
    if wait and failed:
        output.err(f"Error: the rollout of {', '.join(failed)} failed and was rolled back")
        raise typer.Exit(1)
    if output.failed_evaluations(result.plan, done):
        raise typer.Exit(1)


@command(*o.REGISTRY, *o.WRITE, *o.LOAD, *o.LOCAL, "lock", "lock_timeout", "yes")
def up(
    path: PathArg,
    debounce: Annotated[
        int,
        typer.Option(metavar="MS", help="Milliseconds of quiet after a change before re-planning."),
    ] = 400,
    detach: Annotated[
        bool,
        typer.Option(
            help="Apply, leave the servers running in the background and return, "
            "without watching; `agentctl down` stops them."
        ),
    ] = False,
    *,
    opts: Options,
) -> None:
    """Apply PATH (registry and local serving), then watch it and apply every change, printing
    each plan, until Ctrl-C or SIGTERM, which stop every process it started."""
    import signal

    from controller.core.plan.changeset import ChangeSet
    from controller.core.render.formats import render_changeset

    session = _Session(path, opts, attach=not detach)

    def show(p: Plan) -> None:
        output.show_plan(p, Format.text)
        output.consent_to_delete(p, opts.yes)

    def once() -> bool:
        try:
            result = session.reconcile(
                apply=True, on_plan=show, on_entry=output.show_entry,
            )  # fmt: skip
        except AgentctlError as exc:
            output.fail(exc)
            return False
        except typer.Exit:  # deleting models was not consented to: nothing applied; watch on
            return False
        if result.changeset is not None:
            typer.echo(render_changeset(result.changeset).splitlines()[-1])
        failed = output.failed_evaluations(result.plan, result.changeset or ChangeSet())
        output.show_endpoint(opts.run_dir)
        return result.terminal is None and not failed

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C too: a shell starts background jobs with SIGINT ignored, which Python keeps.
    previous = signal.signal(signal.SIGTERM, terminate)
    previous_int = signal.signal(signal.SIGINT, terminate)
    try:
        ok = once()
        if detach:
            if not ok:
                raise typer.Exit(1)
            return
        watched = sources.watched(path, opts)
        typer.echo(f"Watching {', '.join(str(p) for p in watched)} (Ctrl-C stops everything).")
        import watchfiles

        from controller.app.manager import watch_filter

        for changes in watchfiles.watch(
            *watched,
            watch_filter=watch_filter(opts.run_dir),
            step=debounce,  # watchfiles yields after `step` ms without a new change
            debounce=max(1600, 4 * debounce),  # and after this long of changes without a pause
        ):
            names = sorted({Path(p).name for _, p in changes})
            typer.echo(f"\n--- changed: {', '.join(names)}")
            once()
    except KeyboardInterrupt:
        pass
    finally:
        if not detach:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
            try:
                target = session.backends.serving if session.backends else None
                shutdown = getattr(target, "shutdown", None)
                stopped = shutdown() if shutdown else wiring.local_serving(opts).shutdown()
            except AgentctlError as exc:
                output.fail(exc)
                stopped = False
            if stopped:
                typer.echo("Stopped the router and every model server.")
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


@command(*o.REGISTRY, *o.WRITE, *o.LOAD, *o.SERVING, "ready_timeout", "prometheus_url",
         name="controller", target=Target.kubernetes,
         help={"ready_timeout": "Seconds one apply waits for a Deployment to become Available "
               "(the loop checks again every 5 s meanwhile, so 0 keeps one agent from holding "
               "up others)."})  # fmt: skip
def controller_cmd(
    manifests: Annotated[
        Path,
        typer.Option(
            "--manifests",
            envvar="AGENTCTL_MANIFESTS",
            help="The manifests directory (in a pod, a git-sync volume or a ConfigMap).",
        ),
    ],
    resync: Annotated[
        float,
        typer.Option(
            envvar="AGENTCTL_RESYNC", metavar="SECONDS", min=1, help="Seconds between resyncs."
        ),
    ] = 60.0,
    self_heal: Annotated[
        bool,
        typer.Option(
            envvar="AGENTCTL_SELF_HEAL",
            help="Revert drift (changes made by hand); --no-self-heal only reports it.",
        ),
    ] = True,
    listen: Annotated[
        str,
        typer.Option(
            envvar="AGENTCTL_LISTEN",
            metavar="HOST:PORT",
            help="HOST:PORT of /healthz, /readyz, /metrics and POST /webhooks/mlflow "
            "(on only when AGENTCTL_WEBHOOK_SECRET is set).",
        ),
    ] = "127.0.0.1:8080",
    watch: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="DIR",
            help="Directories to watch for changes. Default: the root (or --manifests).",
        ),
    ] = None,
    debounce: Annotated[
        int,
        typer.Option(metavar="MS", help="Milliseconds of quiet after a change before reconciling."),
    ] = 200,
    leader_elect: Annotated[
        bool | None,
        typer.Option(
            envvar="AGENTCTL_LEADER_ELECT",
            help="Elect a leader with a Lease so that only one replica applies. "
            "Default: on with --target kubernetes.",
        ),
    ] = None,
    lease_name: Annotated[
        str | None,
        typer.Option(
            help="The Lease's name. Default: agentctl-controller, or agentctl-controller-ENV "
            "with --env (one leader per environment)."
        ),
    ] = None,
    lease_namespace: Annotated[
        str | None, typer.Option(help="The Lease's namespace. Default: --namespace.")
    ] = None,
    lease_duration: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds a Lease holds.")
    ] = 15.0,
    renew_deadline: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds the leader may fail to renew before it stops."
        ),
    ] = 10.0,
    retry_period: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds between Lease attempts.")
    ] = 2.0,
    identity: Annotated[
        str | None,
        typer.Option(
            envvar="POD_NAME", help="This replica's name in the Lease. Default: host_pid."
        ),
    ] = None,
    *,
    opts: Options,
) -> None:
    """Reconcile continuously: on start, when the manifests change, on an MLflow webhook and
    every --resync seconds, reverting drift; with leader election, health, readiness and
    Prometheus metrics. SIGTERM finishes the action in flight and exits."""
    from controller.app import manager

    output.configure_logging()
    wiring.registry(opts.tracking_uri)  # an empty URI is bad input, before anything starts
    try:
        code = manager.run(manager.ControllerOptions(
            manifests=manifests, common=opts, resync=resync, self_heal=self_heal,
            debounce_ms=debounce, listen=listen, watch=tuple(watch or ()),
            leader_elect=leader_elect, lease_namespace=lease_namespace,
            lease_name=lease_name or manager.lease_name(opts.environment),
            lease_duration=lease_duration, renew_deadline=renew_deadline,
            retry_period=retry_period, identity=identity,
        ))  # fmt: skip
    except ValueError as exc:
        output.err(f"error: {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@command(*o.REGISTRY, "owner", name="force-unlock")
def force_unlock(
    lock_id: Annotated[
        str, typer.Argument(metavar="LOCK_ID", help="The lock ID, as the refused apply printed it.")
    ],
    *,
    opts: Options,
) -> None:
    """Remove the registry lock of --owner that an apply left behind (killed, or its machine
    gone), as `terraform force-unlock` does. Only the lock with that ID is removed."""
    from controller.engine.lock import describe, force_unlock
    from controller.engine.retry import RetryPolicy

    registry = wiring.registry(opts.tracking_uri)
    removed = force_unlock(registry, opts.owner, lock_id, RetryPolicy.from_env())
    typer.echo(f"Removed the registry lock of owner '{opts.owner}': it was {describe(removed)}.")


@command("run_dir", "environment")
def down(*, opts: Options) -> None:
    """Stop local serving in the run directory (with --env, the environment's own): the router
    and every model server."""
    opts = sources.env_run_dir(opts)
    if wiring.local_serving(opts).shutdown():
        typer.echo("Stopped the router and every model server.")
    else:
        typer.echo(f"Nothing is running in {opts.run_dir}.")


@command(*o.REGISTRY, "owner", "environment", "target", "run_dir", *o.KUBE, json_errors=False,
         help={"owner": "Show only the models of this owner (and what serves them)."})  # fmt: skip
def status(
    agent: Annotated[str | None, typer.Argument(metavar="AGENT", help="Only this agent.")] = None,
    format: FormatOpt = Format.text,
    *,
    opts: Options,
) -> None:
    """Each agent's versions, aliases, traffic weights and servers, and its rollout: phase, step,
    gate results. Reads the registry and the serving target; changes nothing."""
    from controller.core.render.status import known_agents, status_view
    from controller.core.state.observed import ServingSnapshot

    opts = sources.env_run_dir(opts)
    snapshot = None
    uri = opts.tracking_uri
    # The embedded registry that does not exist here is not created by looking at it.
    if not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///") :]).exists():
        snapshot = _observe(wiring.registry(uri))
    served = ServingSnapshot()
    if opts.target is Target.local:
        served = wiring.local_serving(opts).observe()
    elif opts.target is Target.kubernetes:
        from controller.adapters.kubernetes.serving import KubernetesServing

        served = KubernetesServing(*wiring.kube_api(opts)).observe()
    if agent is not None and agent not in known_agents(
        snapshot, served, opts.owner, opts.environment
    ):
        where = without_credentials(uri)
        output.err(f"Error: no agent '{agent}' of owner '{opts.owner}' in the registry at {where} "
                   "or served")  # fmt: skip
        raise typer.Exit(1)
    from controller import __version__

    view = status_view(snapshot, served, agent, opts.owner, __version__, opts.environment)
    typer.echo(view.render(format.value))


def _observe(registry: Any) -> Any:
    from controller.engine.retry import RetryPolicy

    return RetryPolicy.from_env().call(registry.observe)


# `agentctl rollout promote|abort|rollback`, and the same at the top level (as they were first).
for _fn in (rollout.promote, rollout.abort, rollout.rollback):
    command(*o.REGISTRY, "owner", "environment", group=rollout_app)(_fn)
    command(*o.REGISTRY, "owner", "environment", name=_fn.__name__.replace("_", "-"))(_fn)


command(*o.REGISTRY, *o.LOAD, name="approve")(approval.approve)
command(*o.REGISTRY, *o.LOAD, name="reject")(approval.reject)
command(*o.REGISTRY, *o.LOAD, name="history")(approval.history_cmd)
command(*o.REGISTRY, "owner", name="gc")(gc_cmd.gc)
command(*o.REGISTRY, *o.LOAD, "owner", name="eval")(eval_cmd.evaluate)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        output.err("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()
