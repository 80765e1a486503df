"""``agentctl controller``: the reconcile loop with everything around it, in one process.

Like controller-runtime's manager it starts the parts and stops them in order: the HTTP
endpoints (health, readiness, metrics, the MLflow webhook), leader election on a Lease (with
``--target kubernetes``, unless turned off), a watch of the manifests (watchfiles, debounced),
and the loop (:mod:`controller.engine.loop`) on the main thread. SIGTERM or SIGINT stop it: the action
in flight finishes, the Lease is released, the process exits 0. Losing the Lease while leading
exits 1, so that the pod restarts as a standby (as controller-runtime does).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.core.manifest.desired import Desired
from controller.engine.loop import Controller, CycleReport, LogEvents, LoopConfig, Wakeups
from controller.engine.metrics import Metrics
from controller.engine.retry import RetryPolicy
from controller.ports import EventSink, ServingTarget

__all__ = ["Options", "run", "watch_filter"]

log = logging.getLogger("agentctl.controller")


@dataclass
class Options:
    manifests: Path
    tracking_uri: str
    target: str = "kubernetes"  # kubernetes | local | registry
    root: Path | None = None
    allow_empty: bool = False
    owner: str = "agentctl"
    prune: bool = False
    resync: float = 60.0
    self_heal: bool = True
    debounce_ms: int = 200
    listen: str = "127.0.0.1:8080"
    watch: list[Path] = field(default_factory=list)
    # --target kubernetes
    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    wait: float = 0.0
    # leader election
    leader_elect: bool | None = None  # None: on with --target kubernetes
    lease_name: str = "agentctl-controller"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str | None = None
    prometheus_url: str | None = None  # where prometheus gates query
    # --target local
    run_dir: Path = Path(".agentctl")
    router_port: int = 8765
    local_env: dict[str, str] = field(default_factory=dict)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)  # a pod's probes reach it from outside


def run(opts: Options) -> int:
    """Run until stopped; the process exit code."""
    from controller.adapters.http.endpoints import Endpoints, Probes
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.adapters.mlflow.rest import RestRegistry, usable
    from controller.engine.loader import load

    identity = opts.identity or f"{socket.gethostname()}_{os.getpid()}"
    metrics = Metrics()
    stop, wakeups = threading.Event(), Wakeups()
    # Against a tracking server, the registry over REST: the MLflow client's imports (pandas,
    # numpy, pyarrow...) would more than double the controller's memory. Models are logged in
    # a child process either way.
    registry: RestRegistry | MlflowRegistry = (
        RestRegistry(opts.tracking_uri)
        if usable(opts.tracking_uri)
        else MlflowRegistry(opts.tracking_uri, isolate_logging=True)
    )
    current: dict[str, Any] = {}  # the desired state the loop works from, for serving settings

    def load_desired() -> Desired:
        desired, _ = load(opts.manifests, root=opts.root, allow_empty=opts.allow_empty)
        return desired

    serving: ServingTarget | None = None
    events: EventSink = LogEvents()
    is_leader: Callable[[], bool] = lambda: True  # noqa: E731
    elector = None
    if opts.target == "kubernetes":
        from controller.adapters.kubernetes.events import KubeEvents
        from controller.adapters.kubernetes.lease import LeaderElector, LeaseLock
        from controller.adapters.kubernetes.serving import KubeApi, KubernetesServing, connect
        from controller.core.plan.kube_objects import settings_of

        api, default_ns = connect(opts.kubeconfig, opts.context)
        namespace = opts.namespace or default_ns

        def settings(agent: str) -> Any:
            desired = current.get("desired")
            if desired is None:
                return settings_of(Desired(()))(agent)
            cached = current.get("settings")
            if cached is None or cached[0] is not desired:
                cached = current["settings"] = (desired, settings_of(desired))
            return cached[1](agent)

        kube = KubernetesServing(api, namespace, settings, wait=opts.wait)
        serving = kube
        lease_ns = opts.lease_namespace or namespace
        leading = opts.leader_elect is not False

        def lease_ref() -> dict[str, str] | None:
            if not leading:
                return None  # no Lease: controller-wide events are logged only
            return {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "name": opts.lease_name,
                "namespace": lease_ns,
            }

        events = KubeEvents(api, identity, kube.object_ref, lease_ref)
        if leading:
            # Lease requests give up before the renew deadline: a hung request must not keep
            # a leader from noticing that it no longer leads.
            lease_api = KubeApi(
                api.api_client, timeout=max(1.0, opts.renew_deadline - opts.retry_period)
            )
            lock = LeaseLock(
                lease_api, lease_ns, opts.lease_name, identity, lease_duration=opts.lease_duration
            )
            elector = LeaderElector(
                lock,
                renew_deadline=opts.renew_deadline,
                retry_period=opts.retry_period,
                on_change=lambda now_leading: _leading(metrics, wakeups, now_leading, stop),
            )
            is_leader = elector.is_leader
    elif opts.target == "local":
        from controller.adapters.local import LocalServing

        serving = LocalServing(
            opts.run_dir,
            registry.tracking_uri,
            experiment_of=registry.experiment_id,
            router_port=opts.router_port,
            attach=True,
            env=opts.local_env,
        )
    if elector is None:
        metrics.leader.set(1)

    def tracked_load() -> Desired:
        desired = load_desired()
        current["desired"] = desired
        return desired

    from controller.app.gates import local_router, metric_providers

    ctl = Controller(
        tracked_load,
        registry,
        serving,
        providers=metric_providers(
            registry, router=local_router(serving), prometheus_url=opts.prometheus_url
        ),
        config=LoopConfig(
            resync=opts.resync, self_heal=opts.self_heal, prune=opts.prune, owner=opts.owner
        ),
        metrics=metrics,
        events=events,
        policy=RetryPolicy.from_env(),
    )
    loop_error: list[BaseException] = []

    def alive() -> str:
        return f"the reconcile loop died: {loop_error[0]}" if loop_error else ""

    def ready() -> str:
        if loop_error:
            return alive()
        if is_leader() and ctl.cycles == 0:
            return "the first reconcile has not ended yet"
        return ""

    def webhook(reason: str) -> bool:
        """Wake the loop if this replica leads; a standby answers 503 (MLflow delivers again)."""
        if not is_leader():
            return False
        wakeups.notify(reason)
        return True

    host, port = _listen(opts.listen)
    endpoints = Endpoints(
        host,
        port,
        metrics,
        Probes(alive, ready),
        webhook_secret=os.environ.get("AGENTCTL_WEBHOOK_SECRET") or None,
        on_webhook=webhook,
    ).start()
    log.info("listening on %s:%d (/healthz /readyz /metrics)", host, endpoints.port)

    def terminate(signum: int, _frame: object) -> None:
        log.info("%s: finishing the action in flight, then stopping", signal.Signals(signum).name)
        stop.set()
        wakeups.notify("stop")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    threads = []
    # The elector stops (and releases the Lease) only after the loop has returned: never while
    # an action is in flight.
    elector_stop = threading.Event()
    if elector is not None:
        threads.append(threading.Thread(target=elector.run, args=(elector_stop,), name="leader"))
    watched = opts.watch or [Path(opts.root or opts.manifests)]
    threads.append(
        threading.Thread(
            target=_watch, args=(watched, opts, wakeups, stop), name="watch", daemon=True
        )
    )
    for t in threads:
        t.start()
    code = 0
    try:
        ctl.run(wakeups, stop, is_leader=is_leader, on_cycle=_summarize)
        if not stop.is_set():
            code = 1  # leadership lost
    except BaseException as exc:
        loop_error.append(exc)
        log.exception("the reconcile loop failed")
        code = 1
    finally:
        stop.set()
        elector_stop.set()
        wakeups.notify("stop")
        for t in threads:
            if not t.daemon:
                t.join(timeout=opts.retry_period + 5)
        endpoints.stop()
        if opts.target == "local" and serving is not None:
            serving.shutdown()  # type: ignore[attr-defined]
    log.info("stopped")
    return code


def _leading(metrics: Metrics, wakeups: Wakeups, leading: bool, stop: threading.Event) -> None:
    metrics.leader.set(1 if leading else 0)
    if not leading and not stop.is_set():
        # Lost while running: another replica may lead already. Stop at once, mid-action if
        # need be (every action is idempotent; the new leader's plan starts from what is
        # there), as controller-runtime does; the pod restarts as a standby.
        log.error("leadership lost: exiting now")
        logging.shutdown()
        os._exit(1)
    wakeups.notify("leader")


def _summarize(report: CycleReport) -> None:
    parts = [f"reconcile ({report.trigger})"]
    if report.applied:
        parts.append(f"applied {', '.join(sorted(report.applied))}")
    if report.failed:
        parts.append(f"failed {', '.join(sorted(report.failed))}")
    if report.held:
        parts.append("held " + ", ".join(f"{a} ({w})" for a, w in sorted(report.held.items())))
    if report.drift:
        parts.append(f"drift in {', '.join(sorted(report.drift))}")
    if report.error:
        parts.append(report.error)
    if len(parts) == 1:
        parts.append("in sync")
    log.info("%s", "; ".join(parts))


def _watch(paths: list[Path], opts: Options, wakeups: Wakeups, stop: threading.Event) -> None:
    import watchfiles

    existing = [p for p in paths if p.exists()]
    log.info("watching %s", ", ".join(str(p) for p in existing))
    for changes in watchfiles.watch(
        *existing,
        watch_filter=watch_filter(opts.run_dir),
        step=opts.debounce_ms,
        debounce=max(1600, 4 * opts.debounce_ms),
        stop_event=stop,
        yield_on_timeout=False,
    ):
        names = sorted({Path(p).name for _, p in changes})
        log.info("changed: %s", ", ".join(names))
        wakeups.notify("manifests")


def watch_filter(run_dir: Path) -> Callable[[Any, str], bool]:
    """What `up` and the controller react to: not the run directory, the sqlite registry, nor MLflow's artifact
    folders, which apply and the model servers' traces write to all the time."""
    import watchfiles

    class WatchFilter(watchfiles.DefaultFilter):
        ignore_dirs = (*watchfiles.DefaultFilter.ignore_dirs, "mlruns", "mlartifacts", ".agentctl")
        ignore_entity_patterns = (
            *watchfiles.DefaultFilter.ignore_entity_patterns,
            r"\.db(-journal|-wal|-shm)?$",
        )

    return WatchFilter(ignore_paths=[run_dir.resolve()])
