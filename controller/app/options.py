"""The command line's options, each declared once, and :class:`Options`: the one value the
composition root (:mod:`controller.app.wiring`) builds everything from.

A command names the options it takes with :func:`takes`; they are added to its signature (so
``--help``, environment variables and validation are typer's as before) and handed to it as one
``opts: Options``. A command may give an option its own default (``apply`` waits 120 s for a
Deployment, the controller none).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from controller.adapters.local.defaults import DEFAULT_ROUTER_PORT
from controller.core.state.observed import DEFAULT_OWNER

__all__ = [
    "DEFAULT_OWNER",
    "DEFAULT_ROUTER_PORT",
    "DEFAULT_RUN_DIR",
    "DEFAULT_TRACKING_URI",
    "USER_ENV",
    "Format",
    "FormatOpt",
    "Options",
    "PathArg",
    "Target",
    "takes",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_RUN_DIR = Path(".agentctl")
#: The environment as the user gave it, before the registry adapter sets its MLflow defaults
#: (no HTTP retries of MLflow's own, for one): what model servers start from.
USER_ENV: Mapping[str, str] = dict(os.environ)


class Target(StrEnum):
    local = "local"
    kubernetes = "kubernetes"
    registry = "registry"


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


PathArg = Annotated[
    Path,
    typer.Argument(
        metavar="PATH", help="A manifest file, or a directory searched for *.yaml / *.yml."
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


@dataclass(frozen=True, slots=True)
class Options:
    """Every setting a command may take, with its default."""

    tracking_uri: str = DEFAULT_TRACKING_URI
    owner: str = DEFAULT_OWNER
    prune: bool = False
    root: Path | None = None
    allow_empty: bool = False
    target: Target = Target.local
    run_dir: Path = DEFAULT_RUN_DIR
    router_port: int = DEFAULT_ROUTER_PORT
    namespace: str | None = None
    environment: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    ready_timeout: float = 0.0
    prometheus_url: str | None = None
    parallelism: int = 8
    lock: bool = True
    lock_timeout: float = 0.0
    yes: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: USER_ENV)
    #: The registry of the environment before, when it is another one than this (its tracking
    #: URI and MLflow workspace): set from the manifests (:func:`~.sources.env_options`).
    upstream: tuple[str, str | None] | None = None
    #: Where the environment before is served locally (its run directory), for the router
    #: gates of a promotion: set from the manifests (:func:`~.sources.env_options`).
    before_run_dir: Path | None = None
    #: the options given a value other than the command's default
    given: frozenset[str] = frozenset()
    #: those of ``given`` set by an environment variable rather than a flag: an Environment's
    #: manifest says more than the shell it runs in (spec.trackingUri over MLFLOW_TRACKING_URI)
    from_env: frozenset[str] = frozenset()


_HELP_READY = (
    "Seconds one apply waits for a new Deployment to become Available before it moves traffic; "
    "past that, traffic waits for a later apply."
)

#: Each option's declaration, once: the typer annotation of the Options field of that name.
DECLARED: dict[str, Any] = {
    "tracking_uri": Annotated[
        str,
        typer.Option(
            metavar="URI",
            envvar="MLFLOW_TRACKING_URI",
            help="MLflow tracking/registry URI. Default: the embedded sqlite:///mlflow.db.",
        ),
    ],
    "owner": Annotated[
        str,
        typer.Option(
            metavar="NAME",
            envvar="AGENTCTL_OWNER",
            help="Owner id written on managed models; models of other owners are never touched.",
        ),
    ],
    "prune": Annotated[
        bool,
        typer.Option(
            help="Delete registered models this owner manages, and stop serving agents, that "
            "no manifest declares. apply and up ask before deleting a model (--yes when not on "
            "a terminal); for the controller the flag itself is the consent, as Argo CD's "
            "prune."
        ),
    ],
    "yes": Annotated[
        bool,
        typer.Option(
            "--yes",
            "--auto-approve",
            "-y",
            help="Delete the registered models --prune would delete without asking (required "
            "when not on a terminal).",
        ),
    ],
    "root": Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Repository root; source paths may not leave it. Default: the git root.",
        ),
    ],
    "allow_empty": Annotated[
        bool, typer.Option(help="Accept a PATH with no manifests (a desired state of nothing).")
    ],
    "target": Annotated[
        Target,
        typer.Option(
            "--target",
            envvar="AGENTCTL_TARGET",
            help="Where spec.serving runs: local (model servers and a router on 127.0.0.1), "
            "kubernetes (Deployments, Services and Gateway API HTTPRoutes in --namespace), or "
            "registry (the registry only; spec.serving is validated, not served).",
        ),
    ],
    "run_dir": Annotated[
        Path,
        typer.Option(
            "--run-dir",
            metavar="DIR",
            envvar="AGENTCTL_RUN_DIR",
            help="State of local serving: the daemon, its servers' logs.",
        ),
    ],
    "router_port": Annotated[
        int,
        typer.Option(
            "--router-port",
            metavar="PORT",
            envvar="AGENTCTL_ROUTER_PORT",
            help="Port of the local router on 127.0.0.1, when local serving starts (0: any free).",
        ),
    ],
    "environment": Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="NAME",
            envvar="AGENTCTL_ENV",
            help="The environment (kind: Environment) to reconcile: its registered models, "
            "serving settings and overlays, and the versions promoted into it. Required when "
            "the manifests declare environments.",
        ),
    ],
    "namespace": Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            metavar="NAME",
            envvar="AGENTCTL_NAMESPACE",
            help="Kubernetes namespace to serve in. Default: the kubeconfig context's, or the "
            "pod's.",
        ),
    ],
    "context": Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="NAME",
            help="Kubernetes context of the kubeconfig. Default: its current.",
        ),
    ],
    "kubeconfig": Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            metavar="FILE",
            help="Kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, or in a pod its service "
            "account.",
        ),
    ],
    "ready_timeout": Annotated[
        float,
        typer.Option(
            "--ready-timeout",
            metavar="SECONDS",
            envvar="AGENTCTL_READY_TIMEOUT",
            min=0,
            help=_HELP_READY,
        ),
    ],
    "prometheus_url": Annotated[
        str | None,
        typer.Option(
            "--prometheus-url",
            metavar="URL",
            envvar="AGENTCTL_PROMETHEUS_URL",
            help="The Prometheus server that rollout gates with source: prometheus query.",
        ),
    ],
    "parallelism": Annotated[
        int,
        typer.Option(
            "--parallelism",
            metavar="N",
            envvar="AGENTCTL_PARALLELISM",
            min=1,
            help="Agents applied side by side (registry writes; logging models and serving "
            "changes still go one at a time).",
        ),
    ],
    "lock": Annotated[
        bool,
        typer.Option(
            "--lock/--no-lock",
            envvar="AGENTCTL_LOCK",
            help="Take the registry lock of --owner before the first write (as Terraform's "
            "-lock). Without it, applies that race still end with one version per source.",
        ),
    ],
    "lock_timeout": Annotated[
        float,
        typer.Option(
            "--lock-timeout",
            metavar="SECONDS",
            envvar="AGENTCTL_LOCK_TIMEOUT",
            min=0,
            help="Seconds to wait for the registry lock another apply of this owner holds "
            "(0: fail at once, naming the holder).",
        ),
    ],
}

#: Option groups, as commands take them.
REGISTRY = ("tracking_uri",)
LOAD = ("root", "allow_empty", "environment")
WRITE = ("owner", "prune")
KUBE = ("namespace", "context", "kubeconfig")
LOCAL = ("run_dir", "router_port")
SERVING = ("target", *LOCAL, *KUBE)

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = {f.name: f.default for f in fields(Options) if f.name in DECLARED}


def takes(*names: str, help: Mapping[str, str] | None = None, **defaults: Any) -> Callable[[F], F]:
    """Add the options ``names`` to a command; it receives them as ``opts: Options``.
    ``defaults`` override an option's default for this command, ``help`` its help text."""
    unknown = set(names) - set(DECLARED)
    assert not unknown, f"undeclared options: {unknown}"

    def wrap(fn: F) -> F:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()]
        hints = get_type_hints(fn, include_extras=True)
        kept = [p.replace(annotation=hints[p.name]) for p in own if p.name != "opts"]
        added = [
            inspect.Parameter(
                n,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_annotation(n, (help or {}).get(n)),
                default=defaults.get(n, _DEFAULTS[n]),
            )
            for n in names
        ]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            ctx = kwargs.pop(_CTX)
            values = {n: kwargs.pop(n) for n in names}
            given = frozenset(n for n, v in values.items() if v != defaults.get(n, _DEFAULTS[n]))
            return fn(**kwargs, opts=Options(**values, given=given, from_env=_from_env(ctx, given)))

        # typer passes the click context to a parameter of its type: where each value came from.
        context = inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [*kept, *added, context]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return wrap


_CTX = "_agentctl_context"


def _from_env(ctx: typer.Context, names: frozenset[str]) -> frozenset[str]:
    """Those of ``names`` whose value came from an environment variable, not a flag."""
    return frozenset(
        n for n in names if getattr(ctx.get_parameter_source(n), "name", "") == "ENVIRONMENT"
    )


def _annotation(name: str, help: str | None) -> Any:
    declared = DECLARED[name]
    if help is None:
        return declared
    base, info = declared.__origin__, declared.__metadata__[0]
    import copy

    info = copy.copy(info)
    info.help = help
    return Annotated[base, info]
