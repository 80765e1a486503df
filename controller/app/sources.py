"""Where the desired state comes from: the manifests at PATH, the same at a git revision (for
``plan --changed-since``), and the folders ``up`` watches."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from controller.app.options import Options
from controller.core.diagnostics import Diagnostics
from controller.core.errors import AgentctlError, InvalidInput
from controller.core.manifest.desired import Desired

if TYPE_CHECKING:
    from controller.core.plan.kube_objects import Settings

__all__ = ["Latest", "changes_since", "load", "watched"]


def load(path: Path, opts: Options) -> tuple[Desired, Diagnostics]:
    from controller.adapters.git.history import GitHistory
    from controller.engine.loader import load as load_manifests

    desired, diags = load_manifests(
        path, root=opts.root, allow_empty=opts.allow_empty, history=GitHistory()
    )
    return with_server(desired), diags


def with_server(desired: Desired) -> Desired:
    """The desired state with the model server it serves versions with on Kubernetes: the same
    agent server as local serving (:mod:`controller.adapters.local.agent_server`), its source
    given to the pod as ``python -c``, so that the stock MLflow image needs nothing of agentctl."""
    from dataclasses import replace

    import controller.adapters.local as local  # imports nothing: the package's file is enough

    source = Path(local.__file__).with_name("agent_server.py")
    return replace(desired, server_script=source.read_text(encoding="utf-8"))


def in_env(desired: Desired, opts: Options) -> Desired:
    """The desired state of ``--env`` (each agent in the environment's registered model, its
    overlay applied, promotion's version as ``current``); the manifests as written when they
    declare no environment. InvalidInput for an unknown environment, for manifests that declare
    environments without ``--env``, and for an agent the environment makes invalid."""
    from controller.core.diagnostics import Diagnostics
    from controller.core.environment.overlay import environment_named, in_environment

    names = [e.name for e in desired.environments]
    if opts.environment is None:
        if names:
            raise InvalidInput.of(
                f"the manifests declare environments ({', '.join(names)}): pass --env NAME to "
                "reconcile one",
                field="--env",
            )
        return desired
    env = environment_named(desired, opts.environment)
    if env is None:
        declared = f"declared: {', '.join(names)}" if names else "no Environment manifest"
        raise InvalidInput.of(f"no environment '{opts.environment}' ({declared})", field="--env")
    moved, diags = in_environment(desired, env)
    if diags:
        raise InvalidInput(Diagnostics.of(diags))
    return moved


def location_of(desired: Desired, name: str, opts: Options) -> tuple[str, str | None]:
    """Where environment ``name`` lives: (its tracking URI, its MLflow workspace), from its
    manifest, else as the command (``opts``, before :func:`env_options`) points."""
    from controller.core.environment.overlay import environment_named

    env = environment_named(desired, name)
    spec = env.manifest.spec if env is not None else None
    uri = (spec.tracking_uri if spec is not None else None) or opts.tracking_uri
    workspace = (spec.workspace if spec is not None else None) or opts.env.get("MLFLOW_WORKSPACE")
    return _same_server(uri), workspace or None


def _same_server(uri: str) -> str:
    """``uri`` as compared with another: a server's URI with or without its final slash."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else uri


def env_run_dir(opts: Options) -> Options:
    """``opts`` whose local serving of one environment runs in a directory of its own,
    ``<run dir>/environments/<env>`` (its own router and model servers: an agent is served in
    each environment side by side), unless ``--run-dir`` is given."""
    from dataclasses import replace

    if opts.environment in (None, "all") or "run_dir" in opts.given - opts.from_env:
        return opts
    return replace(
        opts, run_dir=opts.run_dir / "environments" / opts.environment,
        given=opts.given | {"run_dir"}, from_env=opts.from_env - {"run_dir"},
    )  # fmt: skip


def env_options(desired: Desired, opts: Options) -> Options:
    """``opts`` with the settings the environment of ``desired`` names (its tracking URI, its
    namespace) unless given by a flag (over an environment variable: ``MLFLOW_TRACKING_URI``
    is where a shell points, the manifest where the environment lives); its MLflow workspace
    (over ``MLFLOW_WORKSPACE``), exported to this process, as the MLflow client reads it, so that
    the registry, the children that log and evaluate, and the model servers all use it; and
    where the environment before lives, if elsewhere (``upstream``)."""
    import os
    from dataclasses import replace

    from controller.core.environment.overlay import environment_named

    env = environment_named(desired, desired.environment or "")
    if env is None:
        return opts
    spec = env.manifest.spec
    changes: dict[str, object] = {}
    if spec.after is not None and opts.before_run_dir is None:
        changes["before_run_dir"] = env_run_dir(replace(opts, environment=spec.after)).run_dir
    opts = env_run_dir(opts)
    flagged = opts.given - opts.from_env
    if "router_port" not in flagged and opts.router_port:
        # Each environment's router on a port of its own: the next ones in promotion order.
        order = [e.name for e in desired.environments]
        changes["router_port"] = opts.router_port + order.index(env.name)
        changes["given"] = opts.given | {"router_port"}
    if spec.tracking_uri and "tracking_uri" not in flagged:
        changes["tracking_uri"] = spec.tracking_uri
    if spec.serving is not None and spec.serving.namespace and "namespace" not in flagged:
        changes["namespace"] = spec.serving.namespace
    # Set for each environment a command reconciles (plan --env all: one after another).
    workspace = spec.workspace or opts.env.get("MLFLOW_WORKSPACE") or None
    if workspace:
        os.environ["MLFLOW_WORKSPACE"] = workspace
        changes["env"] = {**opts.env, "MLFLOW_WORKSPACE": workspace}
    else:
        os.environ.pop("MLFLOW_WORKSPACE", None)
    # The environment before: where it lives, if elsewhere (an environment that names no
    # tracking URI or workspace is where the command points).
    if spec.after is not None:
        here = (
            _same_server(str(changes.get("tracking_uri", opts.tracking_uri))),
            workspace or None,
        )
        there = location_of(desired, spec.after, opts)
        if there != here:
            changes["upstream"] = there
    return replace(opts, **changes) if changes else opts  # type: ignore[arg-type]


def changes_since(path: Path, root: Path, ref: str) -> tuple[frozenset[str], Desired]:
    """Files changed since ``ref`` (relative to ``root``) and the desired state at ``ref``.

    The "before" is loaded from the revision's tree; an agent that did not validate there (or a
    PATH that did not exist there) simply has no "before".
    """
    import tempfile

    from controller.adapters.git import diff as gitdiff
    from controller.engine.loader import load as load_manifests

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
        baseline, _ = load_manifests(
            base_root / path_abs.relative_to(root_abs),
            root=base_root,
            allow_empty=True,
            partial=True,
        )
    return changed, baseline


def watched(path: Path, opts: Options) -> list[Path]:
    """PATH, and the directories of the agents' source files that lie outside it."""
    folders = [path.resolve()]
    try:
        desired, _ = load(path, opts)
    except AgentctlError:
        return folders
    for source in (s for agent in desired.agents for s in agent.sources):
        if source.commit is not None:
            continue  # read from git history: no working-tree file to watch
        for ref in source.refs:
            folder = (Path(desired.root) / ref).parent.resolve()
            if not any(folder.is_relative_to(w) for w in folders):
                folders.append(folder)
    return folders


class Latest:
    """The manifests at PATH as last loaded, and each agent's serving settings under them: what
    a serving target built once (``up``, ``apply --wait``, the controller) renders with."""

    def __init__(self, path: Path, opts: Options) -> None:
        from controller.core.plan.kube_objects import settings_of

        self.path, self.opts = path, opts
        self._settings = settings_of(Desired(()))
        self.desired: Desired | None = None

    def load(self) -> Desired:
        from controller.core.plan.kube_objects import settings_of

        desired, _ = load(self.path, self.opts)
        desired = in_env(desired, self.opts)
        self.desired, self._settings = desired, settings_of(desired)
        return desired

    def settings(self, agent: str) -> Settings:
        return self._settings(agent)
