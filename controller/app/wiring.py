"""The composition root: the one place that builds adapters, from one :class:`Options` value.

The CLI's commands and the controller process (:mod:`controller.app.manager`) ask here for the
registry, the serving target, the rollout gates' metric sources, the evaluator and the retry
policy (together a :class:`~controller.engine.reconcile.Backends`), and for the Kubernetes client,
event sink and leader elector. Nothing else in the package constructs an adapter. Adapters are imported when
built, so that a command pays only for the ones it uses (no mlflow import against a tracking
server, no kubernetes client without ``--target kubernetes``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.app.options import Options, Target
from controller.core.errors import InvalidInput
from controller.ports import Evaluator, EventSink, MetricProvider, ServingTarget, TraceReader

if TYPE_CHECKING:
    from controller.adapters.kubernetes.serving import KubeApi
    from controller.adapters.local.client import LocalServing
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.adapters.mlflow.rest import RestRegistry
    from controller.core.plan.kube_objects import Settings
    from controller.engine.lock import RegistryLock
    from controller.engine.reconcile import Backends
    from controller.ports import Registry

    AnyRegistry = MlflowRegistry | RestRegistry

__all__ = [
    "backends",
    "evaluator",
    "events",
    "kube_api",
    "local_serving",
    "lock",
    "metric_providers",
    "registry",
    "registry_identity",
    "registry_in",
    "serving",
]


def registry(tracking_uri: str) -> AnyRegistry:
    """Against a tracking server, its REST API (no mlflow import: a plan of 1,000 agents takes
    four requests); otherwise (a sqlite file, a local directory, Databricks) the MLflow client.
    Either logs a model in a child process: the agent's code never runs in agentctl's own."""
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


def registry_in(tracking_uri: str, workspace: str | None) -> AnyRegistry:
    """:func:`registry` of ``tracking_uri`` in MLflow workspace ``workspace`` (None: the
    server's default), whatever this process's MLFLOW_WORKSPACE says."""
    from controller.adapters.mlflow.rest import RestRegistry, usable

    if usable(tracking_uri):
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_WORKSPACE"}
        return RestRegistry(tracking_uri, env={**env, **(
            {"MLFLOW_WORKSPACE": workspace} if workspace else {}
        )})  # fmt: skip
    here = os.environ.get("MLFLOW_WORKSPACE") or None
    if (workspace or None) != here:
        said = f"MLflow workspace '{workspace}'" if workspace else "no MLflow workspace"
        raise InvalidInput.of(
            f"{registry_identity(tracking_uri)} is not an http(s) tracking server, and it is to "
            f"be read with {said} while this run uses workspace '{here}': MLflow workspaces "
            "need a tracking server (give the environments an http(s) spec.trackingUri)",
            field="spec.workspace",
        )
    return registry(tracking_uri)


def registry_identity(tracking_uri: str) -> str:
    """Which registry ``tracking_uri`` names, without its credentials: a relative sqlite file
    made absolute, user info dropped."""
    from controller.core.secrets import without_credentials

    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(tracking_uri[len("sqlite:///") :])
    return without_credentials(tracking_uri)


def kube_api(opts: Options) -> tuple[KubeApi, str]:
    """The Kubernetes client of ``--kubeconfig`` / ``--context`` and the namespace to serve in."""
    from controller.adapters.kubernetes.serving import connect

    api, namespace = connect(opts.kubeconfig, opts.context)
    return api, opts.namespace or namespace


def local_serving(opts: Options, tracking_uri: str = "", *, attach: bool = False,
                  experiment_of: Callable[[str], str] | None = None) -> LocalServing:  # fmt: skip
    """Local serving in ``--run-dir``: with a registry to serve from, or (to observe or stop
    it) none."""
    from controller.adapters.local.client import LocalServing

    return LocalServing(
        opts.run_dir, tracking_uri, experiment_of=experiment_of or (lambda model: ""),
        router_port=opts.router_port, attach=attach, env=dict(opts.env),
    )  # fmt: skip


def serving(
    opts: Options,
    registry: AnyRegistry,
    settings: Callable[[str], Settings],
    *,
    attach: bool = False,
    api: tuple[KubeApi, str] | None = None,
) -> ServingTarget | None:
    """The serving target of ``--target``; ``settings`` gives each agent's resolved Kubernetes
    settings (its manifest's over the ServingDefaults)."""
    if opts.target is Target.local:
        return local_serving(
            opts, registry.tracking_uri, attach=attach, experiment_of=registry.experiment_id
        )
    if opts.target is Target.kubernetes:
        from controller.adapters.kubernetes.serving import KubernetesServing

        client, namespace = api or kube_api(opts)
        return KubernetesServing(
            client, namespace, settings, wait=opts.ready_timeout, written_by=written_by()
        )
    return None


def metric_providers(
    opts: Options, registry: TraceReader, target: ServingTarget | None
) -> dict[str, MetricProvider]:
    """The sources a rollout's analysis gates read, by their ``source`` name: ``traces`` (the
    registry's MLflow traces), ``scorers`` (a scorer run on those traces, in a child process),
    ``router`` (the local router's ``/metrics``, with ``--target local``) and ``prometheus``
    (with ``--prometheus-url``)."""
    from controller.adapters.gates.prometheus import PrometheusMetrics, RouterMetrics
    from controller.adapters.gates.traces import TraceMetrics
    from controller.adapters.mlflow.live_scores import LiveScores

    out: dict[str, MetricProvider] = {"traces": TraceMetrics(registry)}
    tracking_uri = getattr(registry, "tracking_uri", "")
    if tracking_uri:
        out["scorers"] = LiveScores(tracking_uri)
    daemon = getattr(target, "daemon", None)
    if daemon is not None:

        def endpoint() -> str | None:
            info = daemon()
            return str(info["router"]) if info and info.get("router") else None

        out["router"] = RouterMetrics(endpoint)
    if opts.prometheus_url:
        out["prometheus"] = PrometheusMetrics(opts.prometheus_url)
    return out


def backends(
    opts: Options,
    settings: Callable[[str], Settings],
    *,
    attach: bool = False,
    api: tuple[KubeApi, str] | None = None,
) -> Backends:
    """Everything a reconcile talks to."""
    from controller.adapters.git.history import GitHistory
    from controller.engine.reconcile import Backends
    from controller.engine.retry import RetryPolicy

    reg = registry(opts.tracking_uri)
    target = serving(opts, reg, settings, attach=attach, api=api)
    providers = metric_providers(opts, reg, target)
    made = Backends(
        reg, target, providers, RetryPolicy.from_env(), written_by(), GitHistory(),
        evaluator(opts.tracking_uri),
    )  # fmt: skip
    if opts.upstream is not None:
        made = with_upstream(made, reg, *opts.upstream)
    if opts.before_run_dir is None or "router" not in providers:
        return made
    # The promotion's router gates read the router that serves the environment before.
    from dataclasses import replace

    from controller.adapters.gates.prometheus import RouterMetrics

    before = local_serving(replace(opts, run_dir=opts.before_run_dir), attach=True)

    def endpoint() -> str | None:
        info = before.daemon()
        return str(info["router"]) if info and info.get("router") else None

    measured = dict(made.before_providers if made.before_providers is not None else providers)
    return replace(made, before_providers={**measured, "router": RouterMetrics(endpoint)})


def with_upstream(
    made: Backends, reg: AnyRegistry, tracking_uri: str, workspace: str | None
) -> Backends:
    """``made`` reading the environment before in its own registry (``tracking_uri`` and
    ``workspace``): observed beside this one, its traces read by the promotion's gates, and
    promotions from it copy the files over."""
    from dataclasses import replace

    from controller.adapters.gates.traces import TraceMetrics
    from controller.adapters.mlflow.importer import Place

    up = registry_in(tracking_uri, workspace)
    location = registry_identity(tracking_uri) + (f" (workspace {workspace})" if workspace else "")
    reg.upstream, reg.upstream_shown = Place(tracking_uri, workspace), location
    return replace(made, upstream=up, upstream_location=location,
                   before_providers={**made.providers, "traces": TraceMetrics(up)})  # fmt: skip


def evaluator(tracking_uri: str) -> Evaluator:
    """Evaluations (``mlflow.genai.evaluate``) in a child process, against the registry's
    tracking server: the agent's code and the code scorers never run in agentctl's own."""
    from controller.adapters.mlflow.evaluator import ChildEvaluator

    return ChildEvaluator(tracking_uri, written_by=written_by())


def written_by() -> str:
    """What agentctl tags on the records it writes: ``agentctl <version>``."""
    from controller import __version__

    return f"agentctl {__version__}"


def lock(opts: Options, registry: Registry) -> Callable[[], RegistryLock] | None:
    """The registry lock a CLI apply takes before its first write (``--lock-timeout``); None
    with ``--no-lock``."""
    from controller.engine.lock import RegistryLock
    from controller.engine.retry import RetryPolicy

    if not opts.lock:
        return None
    return lambda: RegistryLock(
        registry,
        opts.owner,
        timeout=opts.lock_timeout,
        policy=RetryPolicy.from_env(),
        written_by=written_by(),
    )


def events(
    api: KubeApi,
    identity: str,
    target: ServingTarget | None,
    lease: Callable[[], dict[str, str] | None],
) -> EventSink:
    """Kubernetes Events on each agent's route object (on the Lease for the controller's own)."""
    from controller.adapters.kubernetes.events import KubeEvents

    object_ref: Callable[[str], Any] = getattr(target, "object_ref", lambda agent: None)
    return KubeEvents(api, identity, object_ref, lease)
