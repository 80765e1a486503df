"""The ``agentctl`` command: a thin shell over load, reconcile and render.

Exit codes: 0 success; 1 error (bad input, plan errors, a backend that failed); ``plan
--detailed-exitcode`` also returns 2 when there are changes (Terraform's convention).
Heavy modules (mlflow) are imported only by the commands that talk to a registry.
"""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from controller.core.errors import (
    AgentctlError,
    ApplyFailed,
    InvalidInput,
    PlanRejected,
    TemporaryBackendError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from controller.adapters.local import LocalServing
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.adapters.mlflow.rest import RestRegistry

    AnyRegistry = MlflowRegistry | RestRegistry
    from controller.core.diagnostics import Diagnostic, Diagnostics
    from controller.core.manifest.desired import Desired
    from controller.core.plan.changes import Plan
    from controller.core.plan.changeset import Entry
    from controller.core.rollout.machine import Command, RolloutState
    from controller.core.state.observed import ObservedModel, RegistrySnapshot
    from controller.engine.reconcile import Result
    from controller.ports import ServingTarget

__all__ = ["app", "main"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: The environment as the user gave it, before the registry adapter sets its MLflow defaults
#: (no HTTP retries of MLflow's own, for one): what model servers start from.
_USER_ENV = dict(os.environ)

app = typer.Typer(
    name="agentctl",
    help="Declarative GitOps deployment of LLM agents packaged as MLflow models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Target(StrEnum):
    local = "local"
    kubernetes = "kubernetes"
    registry = "registry"


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


PathArg = Annotated[
    Path, typer.Argument(help="A manifest file, or a directory searched for *.yaml / *.yml.")
]
RootOpt = Annotated[
    Path | None,
    typer.Option(help="Repository root; source paths may not leave it. Default: the git root."),
]
AllowEmptyOpt = Annotated[
    bool, typer.Option(help="Accept a PATH with no manifests (a desired state of nothing).")
]
TrackingOpt = Annotated[
    str,
    typer.Option(
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking/registry URI. Default: the embedded sqlite:///mlflow.db.",
    ),
]
OwnerOpt = Annotated[
    str,
    typer.Option(
        envvar="AGENTCTL_OWNER",
        help="Owner id written on managed models; models of other owners are never touched.",
    ),
]
PruneOpt = Annotated[
    bool,
    typer.Option(
        help="Delete registered models this owner manages, and stop serving agents, that no "
        "manifest declares."
    ),
]
TargetOpt = Annotated[
    Target,
    typer.Option(
        "--target",
        envvar="AGENTCTL_TARGET",
        help="Where spec.serving runs: local (model servers and a router on 127.0.0.1), "
        "kubernetes (Deployments, Services and Gateway API HTTPRoutes in --namespace), or "
        "registry (the registry only; spec.serving is validated, not served).",
    ),
]
RunDirOpt = Annotated[
    Path,
    typer.Option(
        "--run-dir",
        envvar="AGENTCTL_RUN_DIR",
        help="State of local serving: the daemon, its servers' logs.",
    ),
]
RouterPortOpt = Annotated[
    int,
    typer.Option(
        "--router-port",
        envvar="AGENTCTL_ROUTER_PORT",
        help="Port of the local router on 127.0.0.1, when local serving starts (0: any free).",
    ),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        envvar="AGENTCTL_NAMESPACE",
        help="Kubernetes namespace to serve in. Default: the kubeconfig context's, or the pod's.",
    ),
]
ContextOpt = Annotated[
    str | None,
    typer.Option("--context", help="Kubernetes context of the kubeconfig. Default: its current."),
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, or in a pod its service "
        "account.",
    ),
]
ReadyTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--ready-timeout",
        envvar="AGENTCTL_READY_TIMEOUT",
        min=0,
        help="Seconds one apply waits for a new Deployment to become Available before it moves "
        "traffic; past that, traffic waits for a later apply.",
    ),
]
PrometheusOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus-url",
        envvar="AGENTCTL_PROMETHEUS_URL",
        help="The Prometheus server that rollout gates with source: prometheus query.",
    ),
]
DEFAULT_RUN_DIR = Path(".agentctl")


class Kube:
    """The --target kubernetes options."""

    def __init__(
        self,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        wait: float = 0.0,
    ) -> None:
        self.namespace, self.context, self.kubeconfig, self.wait = (
            namespace, context, kubeconfig, wait
        )  # fmt: skip


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _annotate(diagnostics: Iterable[Diagnostic]) -> None:
    """Inside GitHub Actions, also print each diagnostic as a workflow command (an annotation
    on the PR's diff). GitHub matches paths relative to the repository root, so each file is
    made relative to the git work tree that holds it; a file in none gets no file property."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from controller.core.render.annotations import workflow_commands
    from controller.engine.loader import git_work_tree

    def repo_path(file: str) -> str | None:
        path = Path(file).resolve()
        top = git_work_tree(path)
        return path.relative_to(top).as_posix() if top is not None else None

    for line in workflow_commands(diagnostics, repo_path):
        typer.echo(line)


def _fail(exc: AgentctlError, fmt: Format = Format.text) -> typer.Exit:
    from controller.core.render.formats import render_diagnostics

    if isinstance(exc, InvalidInput | PlanRejected):
        if fmt is Format.text:
            _annotate(exc.diagnostics)
        if fmt is Format.json:
            typer.echo(
                json.dumps(
                    {"valid": False, "diagnostics": [d.to_dict() for d in exc.diagnostics]},
                    indent=2,
                )
            )
        _err(render_diagnostics(exc.diagnostics))
    elif isinstance(exc, ApplyFailed):
        from controller.core.render.formats import render_changeset

        if exc.changeset.entries:
            _err(render_changeset(exc.changeset))
            _err(f"Error: apply stopped at {exc}")
            _err("Nothing after that change was applied; the next apply finishes the work.")
        else:
            _err(f"Error: {exc}")
            _err("Nothing was applied.")
    elif isinstance(exc, TemporaryBackendError):
        _err(f"Error: {exc}")
        _err(
            "Gave up after retrying with backoff (AGENTCTL_RETRY_ATTEMPTS, AGENTCTL_RETRY_DEADLINE)."
        )
    else:
        _err(f"Error: {exc}")
    return typer.Exit(1)


def _show_plan(plan: Plan, fmt: Format) -> None:
    """The plan on stdout; in text, diagnostics go to stderr and a plan with errors shows only them."""
    from controller.core.render.formats import render_diagnostics, render_plan

    if fmt is not Format.text:
        typer.echo(render_plan(plan, fmt.value))
    elif not plan.has_errors:
        typer.echo(render_plan(plan, "text"))
    if fmt is Format.text and len(plan.diagnostics):
        _annotate(plan.diagnostics)
        _err(("\n" if not plan.has_errors else "") + render_diagnostics(plan.diagnostics))


def _load(path: Path, root: Path | None, allow_empty: bool) -> tuple[Desired, Diagnostics]:
    from controller.engine.loader import load

    return load(path, root=root, allow_empty=allow_empty)


def _reconcile(
    path: Path,
    root: Path | None,
    allow_empty: bool,
    tracking_uri: str,
    owner: str,
    prune: bool,
    *,
    apply: bool,
    on_plan: Callable[[Plan], None] | None = None,
    on_entry: Callable[[Entry], None] | None = None,
    changed_since: str | None = None,
    serving: Callable[[AnyRegistry, Desired], ServingTarget] | None = None,
    prometheus_url: str | None = None,
    parallelism: int = 8,
) -> Result:
    from controller.engine.reconcile import reconcile
    from controller.engine.retry import RetryPolicy

    desired, _ = _load(path, root, allow_empty)
    registry = _registry(tracking_uri)
    changed, baseline = None, None
    if changed_since is not None:
        changed, baseline = _changes_since(path, Path(desired.root), changed_since)
    from controller.app.gates import local_router, metric_providers

    target = serving(registry, desired) if serving is not None else None
    return reconcile(
        desired,
        registry,
        apply=apply,
        owner=owner,
        prune=prune,
        policy=RetryPolicy.from_env(),
        on_plan=on_plan,
        on_entry=on_entry,
        changed=changed,
        baseline=baseline,
        serving=target,
        providers=metric_providers(
            registry, router=local_router(target), prometheus_url=prometheus_url
        ),
        workers=parallelism,
    )


def _registry(tracking_uri: str) -> AnyRegistry:
    """Against a tracking server, its REST API (no mlflow import: a plan of 1,000 agents takes
    two requests and well under a second; a model is logged in a child process); otherwise (a
    sqlite file, a local directory, Databricks) the MLflow client."""
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.adapters.mlflow.rest import RestRegistry, usable

    if not tracking_uri.strip():
        raise InvalidInput.of(
            "the tracking URI is empty (is the secret that should hold it missing?)",
            field="--tracking-uri",
        )
    if usable(tracking_uri):
        return RestRegistry(tracking_uri)
    return MlflowRegistry(tracking_uri)


def _serving(
    target: Target,
    run_dir: Path,
    router_port: int,
    kube: Kube | None = None,
    *,
    attach: bool = False,
) -> Callable[[AnyRegistry, Desired], ServingTarget] | None:
    """How to build the serving target for ``--target`` once the registry exists."""
    if target is Target.kubernetes:
        return _kubernetes(kube or Kube())
    if target is not Target.local:
        return None

    def build(registry: AnyRegistry, desired: Desired) -> LocalServing:
        from controller.adapters.local import LocalServing

        return LocalServing(
            run_dir,
            registry.tracking_uri,
            experiment_of=registry.experiment_id,
            router_port=router_port,
            attach=attach,
            env=_USER_ENV,
        )

    return build


def _kubernetes(kube: Kube) -> Callable[[AnyRegistry, Desired], ServingTarget]:
    def build(registry: AnyRegistry, desired: Desired) -> ServingTarget:
        from controller.adapters.kubernetes.serving import KubernetesServing, connect
        from controller.core.plan.kube_objects import settings_of

        api, namespace = connect(kube.kubeconfig, kube.context)
        return KubernetesServing(
            api,
            kube.namespace or namespace,
            settings_of(desired),
            wait=kube.wait,
        )

    return build


def _changes_since(path: Path, root: Path, ref: str) -> tuple[frozenset[str], Desired]:
    """Files changed since ``ref`` (relative to ``root``) and the desired state at ``ref``.

    The "before" is loaded from the revision's tree; an agent that did not validate there (or a
    PATH that did not exist there) simply has no "before".
    """
    import tempfile

    from controller.adapters.git import diff as gitdiff
    from controller.core.manifest.desired import Desired
    from controller.engine.loader import load

    top = gitdiff.repo_root(root)
    root_abs, path_abs = root.resolve(), path.resolve()
    for what, p in (("the root", root_abs), ("PATH", path_abs)):
        if not p.is_relative_to(top):
            raise InvalidInput.of(
                f"{what} {p} is outside the git repository {top}", field="--changed-since"
            )
    if not path_abs.is_relative_to(root_abs):
        raise InvalidInput.of(
            f"PATH {path_abs} is outside the root {root_abs}", field="--changed-since"
        )
    root_rel = root_abs.relative_to(top).as_posix()
    path_rel = path_abs.relative_to(top).as_posix()
    commit = gitdiff.resolve(top, ref)
    changed = gitdiff.changed_paths(top, commit)
    if root_rel != ".":  # paths relative to the root, as the loader records them
        prefix = root_rel + "/"
        changed = frozenset(p[len(prefix) :] for p in changed if p.startswith(prefix))
    if not gitdiff.path_exists(top, commit, "" if path_rel == "." else path_rel):
        return changed, Desired(())
    with tempfile.TemporaryDirectory(prefix="agentctl-base-") as tmp:
        subdir = "" if root_rel == "." else root_rel
        gitdiff.export_tree(top, commit, Path(tmp), subdir)
        base_root = Path(tmp) / subdir
        baseline, _ = load(
            base_root / path_abs.relative_to(root_abs),
            root=base_root,
            allow_empty=True,
            partial=True,
        )
    return changed, baseline


@app.command()
def validate(
    path: PathArg,
    root: RootOpt = None,
    allow_empty: AllowEmptyOpt = False,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Check manifests and the files they name. Exit 0 if valid, 1 if not. Touches no server."""
    from controller.core.render.formats import render_diagnostics

    try:
        desired, diags = _load(path, root, allow_empty)
    except InvalidInput as exc:
        raise _fail(exc, format) from None
    if format is Format.json:
        typer.echo(
            json.dumps(
                {
                    "valid": True,
                    "agents": [a.name for a in desired.agents],
                    "diagnostics": [d.to_dict() for d in diags],
                },
                indent=2,
            )
        )
        return
    if len(diags):
        _annotate(diags)
        _err(render_diagnostics(diags))
    typer.echo(f"Success: {len(desired.agents)} agent(s) valid.")


@app.command()
def schema() -> None:
    """Print the JSON Schema of an Agent manifest (for editors and yaml-language-server)."""
    from controller.core.manifest.schema_json import manifest_json_schema

    typer.echo(json.dumps(manifest_json_schema(), indent=2))


@app.command()
def plan(
    path: PathArg,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    changed_since: Annotated[
        str | None,
        typer.Option(
            "--changed-since",
            metavar="GIT_REF",
            help="Plan only agents whose manifest or source changed since GIT_REF, and those "
            "whose source is not registered yet.",
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Also save the plan to this file: `agentctl apply FILE` applies exactly it, or "
            "refuses if the manifests, registry or serving changed since."
        ),
    ] = None,
    tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI,
    owner: OwnerOpt = "agentctl",
    prune: PruneOpt = False,
    root: RootOpt = None,
    allow_empty: AllowEmptyOpt = False,
    target: TargetOpt = Target.local,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    router_port: RouterPortOpt = 8765,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show what apply would change. Never runs agent code, never writes, never starts a server.
    With --target kubernetes, each object it would write is shown as a server-side dry-run diff."""
    from controller.core.render.formats import render_previews

    try:
        result = _reconcile(
            path, root, allow_empty, tracking_uri, owner, prune,
            apply=False, changed_since=changed_since,
            serving=_serving(target, run_dir, router_port, Kube(namespace, context, kubeconfig)),
        )  # fmt: skip
    except AgentctlError as exc:
        raise _fail(exc, format) from None
    if format is Format.json and result.previews:
        payload = result.plan.to_dict()
        payload["objects"] = json.loads(render_previews(result.previews, "json"))
        typer.echo(json.dumps(payload, indent=2))
    else:
        _show_plan(result.plan, format)
        if result.previews and not result.plan.has_errors:
            typer.echo(render_previews(result.previews, format.value))
    if out is not None:
        _save_plan(out, result, path, allow_empty, target)
    if result.plan.has_errors:
        raise typer.Exit(1)
    if detailed_exitcode and result.plan.has_changes:
        raise typer.Exit(2)


def _is_saved_plan(path: Path) -> bool:
    """``apply``'s PATH is a saved plan: a .json file, or a file (not YAML) that starts with {."""
    if path.suffix == ".json":
        return True
    if not path.is_file() or path.suffix in (".yaml", ".yml"):
        return False
    with path.open("rb") as fh:
        return fh.read(64).lstrip().startswith(b"{")


def _save_plan(out: Path, result: Result, path: Path, allow_empty: bool, target: Target) -> None:
    """``plan --out``: the plan and the fingerprints of what it was made from."""
    from controller.engine.saved import save, write_saved

    if result.plan.has_errors or result.desired is None or result.observed is None:
        _err(f"No plan was saved to {out}: the plan has errors.")
        return
    saved = save(
        result.plan, result.desired, result.observed, result.served,
        path=path, allow_empty=allow_empty, target=target.value,
    )  # fmt: skip
    write_saved(out, saved)


def _apply_saved(
    file: Path, fmt: Format, tracking_uri: str, run_dir: Path, router_port: int, kube: Kube,
    parallelism: int,
) -> None:  # fmt: skip
    """``apply FILE``: exactly the saved plan, against the target it was made for, unless the
    manifests, registry or serving changed since (a stale plan: exit 1, nothing written)."""
    from controller.core.render.formats import render_changeset
    from controller.engine.retry import RetryPolicy
    from controller.engine.saved import apply_saved, read_saved

    def show_entry(e: Entry) -> None:
        if fmt is Format.text:
            typer.echo(f"{e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else ""))

    try:
        saved = read_saved(file)
        m = saved.manifests
        desired, _ = _load(Path(m.path), Path(m.root), m.allow_empty)
        registry = _registry(tracking_uri)
        kube.namespace = kube.namespace or saved.namespace
        build = _serving(Target(saved.target), run_dir, router_port, kube)
        changeset = apply_saved(
            saved, desired, registry, file=str(file),
            serving=build(registry, desired) if build is not None else None,
            policy=RetryPolicy.from_env(), on_entry=show_entry, workers=parallelism,
        )  # fmt: skip
    except AgentctlError as exc:
        raise _fail(exc, fmt) from None
    if fmt is Format.json:
        payload = {"plan": saved.plan.to_dict(), "changeset": changeset.to_dict()}
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(render_changeset(changeset).splitlines()[-1])


@app.command("apply")
def apply_cmd(
    path: PathArg,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI,
    owner: OwnerOpt = "agentctl",
    prune: PruneOpt = False,
    root: RootOpt = None,
    allow_empty: AllowEmptyOpt = False,
    target: TargetOpt = Target.local,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    router_port: RouterPortOpt = 8765,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    ready_timeout: ReadyTimeoutOpt = 120.0,
    prometheus_url: PrometheusOpt = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Keep reconciling until every rollout is done (promoted and the old version "
            "scaled down, failed, or aborted) and every server is ready, as the controller "
            "would; exit 1 if a rollout failed.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="With --wait: give up after this many seconds."),
    ] = 3600.0,
    parallelism: Annotated[
        int,
        typer.Option(
            "--parallelism",
            envvar="AGENTCTL_PARALLELISM",
            min=1,
            help="Agents applied side by side (registry writes; logging models and serving "
            "changes still go one at a time).",
        ),
    ] = 8,
) -> None:
    """Plan, then apply the plan: register versions, move aliases, set tags; start and stop model
    servers and set their traffic (with --target local they keep running after this command;
    `agentctl down` stops them). With --target kubernetes every write is dry-run first, and
    traffic moves to a version only once its Deployment is Available. A spec.rollout takes one
    step per apply; --wait walks it to the end. PATH may be a plan saved by `plan --out`: it is
    applied exactly, or refused (exit 1) if what it was made from has changed since."""
    from controller.core.render.formats import render_changeset

    if _is_saved_plan(path):
        if wait:
            _err("Error: --wait applies manifests round after round; a saved plan is applied once")
            raise typer.Exit(1)
        kube = Kube(namespace, context, kubeconfig, ready_timeout)
        _apply_saved(path, format, tracking_uri, run_dir, router_port, kube, parallelism)
        return

    def show_plan(p: Plan) -> None:
        if format is not Format.json or p.has_errors:
            _show_plan(p, format)

    def show_entry(e: Entry) -> None:
        if format is Format.text:
            typer.echo(f"{e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else ""))

    serving = _serving(
        target, run_dir, router_port, Kube(namespace, context, kubeconfig, ready_timeout)
    )
    deadline = time.monotonic() + timeout
    said: dict[str, str] = {}
    rounds = 0
    while True:
        try:
            result = _reconcile(
                path, root, allow_empty, tracking_uri, owner, prune,
                apply=True, on_plan=show_plan if rounds == 0 else None, on_entry=show_entry,
                serving=serving, prometheus_url=prometheus_url, parallelism=parallelism,
            )  # fmt: skip
        except AgentctlError as exc:
            raise _fail(exc, format) from None
        rounds += 1
        if result.plan.has_errors:
            raise typer.Exit(1)
        recorded = {e.address for e in (result.changeset.entries if result.changeset else ())}
        for agent, progress in sorted(result.progress.items()):
            if f"{agent}.rollout" in recorded:
                said[agent] = progress.reason  # its entry said it
            elif format is Format.text and said.get(agent) != progress.reason:
                said[agent] = progress.reason
                typer.echo(f"{agent}: rollout: {progress.reason}")
        pending = [p.requeue for p in result.progress.values() if p.active and p.requeue]
        waiting = result.changeset is not None and result.changeset.waiting
        if not wait or not (pending or waiting):
            break
        if time.monotonic() >= deadline:
            _err(f"Error: --wait: not done after {timeout:g} s (rollouts and servers go on; "
                 "apply again or let the controller finish)")  # fmt: skip
            raise typer.Exit(1)
        time.sleep(max(0.5, min([*pending, 5.0], default=5.0)))
    failed = sorted(
        a for a, p in result.progress.items() if p.state is not None and p.state.phase == "Failed"
    )
    if format is Format.json:
        payload = {
            "plan": result.plan.to_dict(),
            "changeset": result.changeset.to_dict() if result.changeset else None,
        }
        typer.echo(json.dumps(payload, indent=2))
    elif result.changeset is not None:
        typer.echo("")
        typer.echo(render_changeset(result.changeset).splitlines()[-1])
        if result.changeset.waiting:
            typer.echo(
                "Some traffic waits for a version to become available: apply again (or let the "
                "controller reconcile) once it is."
            )
    if format is Format.text and target is Target.local:
        _show_endpoint(run_dir)
    if wait and failed:
        _err(f"Error: the rollout of {', '.join(failed)} failed and was rolled back")
        raise typer.Exit(1)


def _show_endpoint(run_dir: Path) -> None:
    from controller.adapters.local.rundir import RunDir

    info = RunDir.read(RunDir(run_dir).daemon_file)
    if info is not None:
        typer.echo(f"Serving at {info['router']}/agents/<agent>/invocations")


@app.command()
def up(
    path: PathArg,
    tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI,
    owner: OwnerOpt = "agentctl",
    prune: PruneOpt = False,
    root: RootOpt = None,
    allow_empty: AllowEmptyOpt = False,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    router_port: RouterPortOpt = 8765,
    debounce: Annotated[
        int, typer.Option(help="Milliseconds of quiet after a change before re-planning.")
    ] = 400,
    detach: Annotated[
        bool,
        typer.Option(
            help="Apply, leave the servers running in the background and return, without "
            "watching; `agentctl down` stops them."
        ),
    ] = False,
) -> None:
    """Apply PATH (registry and local serving), then watch it and apply every change, printing
    each plan, until Ctrl-C or SIGTERM, which stop every process it started."""
    import signal

    from controller.engine.loader import load

    build = _serving(Target.local, run_dir, router_port, attach=not detach)
    assert build is not None
    holder: list[LocalServing] = []

    def serving(registry: AnyRegistry, desired: Desired) -> ServingTarget:
        if not holder:
            holder.append(build(registry, desired))  # type: ignore[arg-type]
        return holder[0]

    def once() -> bool:
        def show_entry(e: Entry) -> None:
            typer.echo(f"{e.address}: {e.verb.value}" + (f" ({e.detail})" if e.detail else ""))

        try:
            result = _reconcile(
                path, root, allow_empty, tracking_uri, owner, prune,
                apply=True, on_plan=lambda p: _show_plan(p, Format.text), on_entry=show_entry,
                serving=serving,
            )  # fmt: skip
        except AgentctlError as exc:
            _fail(exc)
            return False
        if result.changeset is not None:
            from controller.core.render.formats import render_changeset

            typer.echo(render_changeset(result.changeset).splitlines()[-1])
        _show_endpoint(run_dir)
        return not result.plan.has_errors

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
        watched = _watched(path, run_dir, load, root, allow_empty)
        typer.echo(f"Watching {', '.join(str(p) for p in watched)} (Ctrl-C stops everything).")
        import watchfiles

        from controller.app.manager import watch_filter

        for changes in watchfiles.watch(
            *watched,
            watch_filter=watch_filter(run_dir),
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
            signal.signal(
                signal.SIGTERM, signal.SIG_IGN
            )  # a second SIGTERM must not cut this short
            try:
                stopped = holder[0].shutdown() if holder else _stop(run_dir)
            except AgentctlError as exc:
                _fail(exc)
                stopped = False
            if stopped:
                typer.echo("Stopped the router and every model server.")
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _watched(
    path: Path, run_dir: Path, load: Callable[..., tuple[Desired, Diagnostics]],
    root: Path | None, allow_empty: bool,
) -> list[Path]:  # fmt: skip
    """PATH, and the directories of the agents' source files that lie outside it."""
    watched = [path.resolve()]
    try:
        desired, _ = load(path, root=root, allow_empty=allow_empty)
    except AgentctlError:
        return watched
    for agent in desired.agents:
        if agent.source is None:
            continue
        for ref in agent.source.refs:
            folder = (Path(desired.root) / ref).parent.resolve()
            if not any(folder.is_relative_to(w) for w in watched):
                watched.append(folder)
    return watched


def _stop(run_dir: Path) -> bool:
    from controller.adapters.local import LocalServing

    return LocalServing(run_dir, "", experiment_of=lambda m: "").shutdown()


@app.command("controller")
def controller_cmd(
    manifests: Annotated[
        Path,
        typer.Option(
            "--manifests",
            envvar="AGENTCTL_MANIFESTS",
            help="The manifests directory (in a pod, a git-sync volume or a ConfigMap).",
        ),
    ],
    tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI,
    owner: OwnerOpt = "agentctl",
    prune: PruneOpt = False,
    root: RootOpt = None,
    allow_empty: AllowEmptyOpt = False,
    target: TargetOpt = Target.kubernetes,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    prometheus_url: PrometheusOpt = None,
    ready_timeout: Annotated[
        float,
        typer.Option(
            "--ready-timeout",
            envvar="AGENTCTL_READY_TIMEOUT",
            min=0,
            help="Seconds one apply waits for a Deployment to become Available (the loop "
            "checks again every 5 s meanwhile, so 0 keeps one agent from holding up others).",
        ),
    ] = 0.0,
    resync: Annotated[
        float, typer.Option(envvar="AGENTCTL_RESYNC", min=1, help="Seconds between resyncs.")
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
            help="HOST:PORT of /healthz, /readyz, /metrics and POST /webhooks/mlflow (on only "
            "when AGENTCTL_WEBHOOK_SECRET is set).",
        ),
    ] = "127.0.0.1:8080",
    watch: Annotated[
        list[Path] | None,
        typer.Option(help="Directories to watch for changes. Default: the root (or --manifests)."),
    ] = None,
    debounce: Annotated[
        int, typer.Option(help="Milliseconds of quiet after a change before reconciling.")
    ] = 200,
    leader_elect: Annotated[
        bool | None,
        typer.Option(
            envvar="AGENTCTL_LEADER_ELECT",
            help="Elect a leader with a Lease so that only one replica applies. Default: on "
            "with --target kubernetes.",
        ),
    ] = None,
    lease_name: Annotated[str, typer.Option(help="The Lease's name.")] = "agentctl-controller",
    lease_namespace: Annotated[
        str | None, typer.Option(help="The Lease's namespace. Default: --namespace.")
    ] = None,
    lease_duration: Annotated[float, typer.Option(help="Seconds a Lease holds.")] = 15.0,
    renew_deadline: Annotated[
        float, typer.Option(help="Seconds the leader may fail to renew before it stops.")
    ] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Seconds between Lease attempts.")] = 2.0,
    identity: Annotated[
        str | None,
        typer.Option(
            envvar="POD_NAME", help="This replica's name in the Lease. Default: host_pid."
        ),
    ] = None,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    router_port: RouterPortOpt = 8765,
) -> None:
    """Reconcile continuously: on start, when the manifests change, on an MLflow webhook and
    every --resync seconds, reverting drift; with leader election, health, readiness and
    Prometheus metrics. SIGTERM finishes the action in flight and exits."""
    import logging

    from controller.app import manager

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        _registry(tracking_uri)  # an empty URI is bad input, before anything starts
        code = manager.run(
            manager.Options(
                manifests=manifests,
                tracking_uri=tracking_uri,
                target=target.value,
                root=root,
                allow_empty=allow_empty,
                owner=owner,
                prune=prune,
                resync=resync,
                self_heal=self_heal,
                debounce_ms=debounce,
                listen=listen,
                watch=list(watch or []),
                namespace=namespace,
                context=context,
                kubeconfig=kubeconfig,
                wait=ready_timeout,
                prometheus_url=prometheus_url,
                leader_elect=leader_elect,
                lease_name=lease_name,
                lease_namespace=lease_namespace,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                identity=identity,
                run_dir=run_dir,
                router_port=router_port,
                local_env=_USER_ENV,
            )
        )
    except (AgentctlError, ValueError) as exc:
        if isinstance(exc, AgentctlError):
            raise _fail(exc) from None
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def down(run_dir: RunDirOpt = DEFAULT_RUN_DIR) -> None:
    """Stop local serving in the run directory: the router and every model server."""
    try:
        stopped = _stop(run_dir)
    except AgentctlError as exc:
        raise _fail(exc) from None
    if stopped:
        typer.echo("Stopped the router and every model server.")
    else:
        typer.echo(f"Nothing is running in {run_dir}.")


AgentArg = Annotated[str, typer.Argument(help="The agent (metadata.name).")]


def _observe_registry(tracking_uri: str) -> RegistrySnapshot | None:
    """The registry, or None if the embedded one does not exist here (status creates nothing)."""
    if tracking_uri.startswith("sqlite:///"):
        file = Path(tracking_uri[len("sqlite:///") :])
        if not file.exists():
            return None
    from controller.engine.retry import RetryPolicy

    registry = _registry(tracking_uri)
    return RetryPolicy.from_env().call(registry.observe)


def _agent_model(snapshot: RegistrySnapshot, agent: str) -> ObservedModel:
    from controller.core.state.observed import AGENT_TAG

    for model in snapshot.models.values():
        if model.tags.get(AGENT_TAG) == agent and model.owner is not None:
            return model
    raise InvalidInput.of(
        f"no registered model managed by agentctl belongs to agent '{agent}'", field="AGENT"
    )


@app.command()
def status(
    agent: Annotated[str | None, typer.Argument(help="Only this agent.")] = None,
    tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI,
    target: TargetOpt = Target.local,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Each agent's versions, aliases, traffic weights and servers, and its rollout: phase, step,
    gate results. Reads the registry and the serving target; changes nothing."""
    from controller.core.rollout.machine import RolloutState
    from controller.core.state.observed import AGENT_TAG, ServingSnapshot

    try:
        snapshot = _observe_registry(tracking_uri)
        served = ServingSnapshot()
        if target is Target.local:
            from controller.adapters.local import LocalServing

            served = LocalServing(run_dir, "", experiment_of=lambda m: "").observe()
        elif target is Target.kubernetes:
            from controller.adapters.kubernetes.serving import KubernetesServing, connect

            api, ns = connect(kubeconfig, context)
            served = KubernetesServing(api, namespace or ns).observe()
    except AgentctlError as exc:
        raise _fail(exc) from None
    models = {
        m.tags.get(AGENT_TAG, m.name): m
        for m in (snapshot.models.values() if snapshot is not None else ())
        if m.owner is not None
    }
    names = sorted(set(models) | set(served.agents))
    if agent is not None:
        if agent not in names:
            _err(f"Error: no agent '{agent}' in the registry at {tracking_uri} or served")
            raise typer.Exit(1)
        names = [agent]
    rows: dict[str, dict[str, object]] = {}
    for name in names:
        model = models.get(name)
        serving = served.agents.get(name)
        state = RolloutState.from_tags(model.tags) if model is not None else None
        versions = sorted(
            set(model.versions if model is not None else ())
            | set(serving.versions if serving is not None else ())
        )
        rows[name] = {
            "model": model.name if model is not None else serving.model if serving else "",
            "versions": {
                str(v): {
                    "aliases": sorted(
                        a for a, n in (model.aliases.items() if model else ()) if n == v
                    ),
                    "weight": serving.weights.get(v) if serving is not None else None,
                    "server": (
                        ("ready" if serving.versions[v].ready else "not ready")
                        if serving is not None and v in serving.versions
                        else None
                    ),
                    "shadow": serving.shadow[1]
                    if serving is not None and serving.shadow and serving.shadow[0] == v
                    else None,
                }
                for v in versions
            },
            "rollout": None
            if state is None
            else {
                "canary": state.canary,
                "stable": state.stable,
                "phase": state.phase.value,
                "step": state.step + 1,
                "message": state.message,
                "gates": {g: v.value for g, v in sorted(state.verdicts.items())},
                "failures": dict(sorted(state.failures.items())),
            },
        }
    if format is Format.json:
        typer.echo(json.dumps({"endpoint": served.endpoint, "agents": rows}, indent=2))
        return
    if not rows:
        typer.echo("No agents in the registry or served.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("AGENT", "MODEL", "VERSION", "ALIASES", "WEIGHT", "SERVER", "ROLLOUT"):
        table.add_column(col)
    for name, row in rows.items():
        rollout = row["rollout"]
        first = True
        for v, info in row["versions"].items():  # type: ignore[attr-defined]
            weight = "" if info["weight"] is None else f"{info['weight']}%"
            if info["shadow"] is not None:
                weight = (weight + " " if weight else "") + f"shadow {info['shadow']}%"
            role = ""
            if isinstance(rollout, dict):
                role = {rollout["canary"]: "canary", rollout["stable"]: "stable"}.get(int(v), "")
            table.add_row(
                name if first else "", str(row["model"]) if first else "", v,
                ",".join(info["aliases"]), weight, info["server"] or "", role,
            )  # fmt: skip
            first = False
    console = Console(width=200, soft_wrap=True)
    console.print(table)
    if served.endpoint:
        typer.echo(f"Serving at {served.endpoint}")
    for name, row in rows.items():
        rollout = row["rollout"]
        if not isinstance(rollout, dict):
            continue
        gates = (
            ", ".join(
                f"{g} {v} ({rollout['failures'].get(g, 0)} failed)"
                for g, v in rollout["gates"].items()
            )
            or "none measured at this step"
        )
        typer.echo(
            f"{name}: rollout v{rollout['canary']} over v{rollout['stable']}: {rollout['phase']}, "
            f"step {rollout['step']}: {rollout['message']}; gates: {gates}"
        )


def _ask(
    tracking_uri: str,
    agent: str,
    make: Callable[[RolloutState | None], Command],
    check: Callable[[ObservedModel], None] = lambda model: None,
) -> None:
    """Write the rollout command ``make`` gives (from the agent's recorded rollout) to the
    agent's model tags, once ``check`` passes on the model; say what was asked; exit 1 on an
    error."""
    from controller.core.rollout.machine import COMMAND_TAG, RolloutState
    from controller.engine.retry import RetryPolicy

    try:
        registry = _registry(tracking_uri)
        policy = RetryPolicy.from_env()
        model = _agent_model(policy.call(registry.observe), agent)
        check(model)
        command = make(RolloutState.from_tags(model.tags))
        policy.call(lambda: registry.set_model_tag(model.name, COMMAND_TAG, command.to_tag()))
    except AgentctlError as exc:
        raise _fail(exc) from None
    what = {"promote": "promote", "abort": "abort"}.get(
        command.kind, f"roll back to v{command.version}"
    )
    typer.echo(f"{agent}: asked to {what} ({command.to_tag()}). {_ACTS}")


def _active(agent: str, state: RolloutState | None) -> RolloutState:
    if state is None or state.phase.done:
        where = "none is recorded" if state is None else f"the last one is {state.phase.value}"
        raise InvalidInput.of(f"agent '{agent}' has no rollout under way ({where})", field="AGENT")
    return state


_ACTS = (
    "A running controller (or `agentctl apply --wait`) acts on it at its next reconcile; "
    "`agentctl apply` does once."
)


@app.command()
def promote(agent: AgentArg, tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI) -> None:
    """Skip the current step's pause (or an inconclusive hold) of AGENT's rollout."""
    from controller.core.rollout.machine import Command

    def make(state: RolloutState | None) -> Command:
        s = _active(agent, state)
        return Command("promote", s.canary, step=s.step)

    _ask(tracking_uri, agent, make)


@app.command()
def abort(agent: AgentArg, tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI) -> None:
    """Send all of AGENT's traffic back to the stable version now; the rollout stays aborted
    until its canary or spec.rollout changes."""
    from controller.core.rollout.machine import Command

    def make(state: RolloutState | None) -> Command:
        return Command("abort", _active(agent, state).canary)

    _ask(tracking_uri, agent, make)


@app.command()
def rollback(
    agent: AgentArg,
    to_version: Annotated[
        int | None,
        typer.Option("--to-version", min=1, help="Default: the version the last rollout replaced."),
    ] = None,
    tracking_uri: TrackingOpt = DEFAULT_TRACKING_URI,
) -> None:
    """Send AGENT's traffic and promote alias back to the previously stable version (recorded by
    its last rollout), or to --to-version; it stays there until the canary or spec.rollout
    changes."""
    from controller.core.rollout.machine import Command

    def make(state: RolloutState | None) -> Command:
        if state is None:
            raise InvalidInput.of(
                f"agent '{agent}' has no recorded rollout to roll back", field="AGENT"
            )
        target = to_version if to_version is not None else state.stable
        return Command("rollback", state.canary, version=target)

    def check(model: ObservedModel) -> None:
        if to_version is not None and to_version not in model.versions:
            raise InvalidInput.of(
                f"version {to_version} of agent '{agent}' does not exist "
                f"(versions: {', '.join(map(str, sorted(model.versions)))})",
                field="--to-version",
            )

    _ask(tracking_uri, agent, make, check)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _err("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()
