"""``agentctl controller``: the reconcile loop with everything around it, in one process.

Like controller-runtime's manager it starts the parts and stops them in order: the HTTP
endpoints (health, readiness, metrics, the MLflow webhook), leader election on a Lease (with
``--target kubernetes``, unless turned off), a watch of the manifests (watchfiles, debounced),
and the loop (:mod:`controller.engine.loop`) on the main thread. SIGTERM or SIGINT stop it: the action
in flight finishes, the Lease is released, the process exits 0. Losing the Lease while leading
exits 1, so that the pod restarts as a standby (as controller-runtime does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.app import sources, wiring
from controller.app.options import Options, Target
from controller.app.sources import Latest
from controller.core.errors import AgentctlError, InvalidInput
from controller.engine.loop import Controller, CycleReport, LogEvents, LoopConfig, Wakeups
from controller.engine.metrics import Metrics
from controller.ports import EventSink, ServingTarget

if TYPE_CHECKING:
    from controller.adapters.http.endpoints import Endpoints
    from controller.adapters.kubernetes.lease import LeaderElector
    from controller.adapters.kubernetes.serving import KubeApi

__all__ = ["ControllerOptions", "lease_name", "run", "watch_filter"]

log = logging.getLogger("agentctl.controller")


@dataclass(frozen=True)
class ControllerOptions:
    """The controller's own settings, beside the ones every command shares (``common``)."""

    manifests: Path
    common: Options
    resync: float = 60.0
    self_heal: bool = True
    debounce_ms: int = 200
    listen: str = "127.0.0.1:8080"
    watch: tuple[Path, ...] = ()
    leader_elect: bool | None = None  # None: on with --target kubernetes
    lease_name: str = "agentctl-controller"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str | None = None


def lease_name(environment: str | None) -> str:
    """The Lease's default name: one leader per environment (controllers of two environments
    may share a namespace)."""
    return "agentctl-controller" if environment is None else f"agentctl-controller-{environment}"


def run(opts: ControllerOptions) -> int:
    """Run until stopped; the process exit code."""
    c = opts.common
    identity = opts.identity or f"{socket.gethostname()}_{os.getpid()}"
    metrics = Metrics()
    stop, wakeups = threading.Event(), Wakeups()
    latest = Latest(opts.manifests, c)
    if c.environment is not None:
        # The environment's tracking URI and namespace (bad manifests: the loop reports them).
        with contextlib.suppress(AgentctlError):
            c = sources.env_options(latest.load(), c)
    api = wiring.kube_api(c) if c.target is Target.kubernetes else None
    # Against a tracking server the registry speaks REST: the MLflow client's imports (pandas,
    # numpy, pyarrow...) would more than double the controller's memory. Models are logged in
    # a child process either way.
    backends = wiring.backends(c, latest.settings, attach=True, api=api)
    events, elector = _leadership(opts, api, identity, backends.serving, metrics, wakeups, stop)
    is_leader: Callable[[], bool] = elector.is_leader if elector is not None else lambda: True
    if elector is None:
        metrics.leader.set(1)
    ctl = Controller(
        latest.load, backends.registry, backends.serving, providers=dict(backends.providers),
        config=LoopConfig(resync=opts.resync, self_heal=opts.self_heal, prune=c.prune,
                          owner=c.owner),
        metrics=metrics, events=events, policy=backends.policy, written_by=backends.written_by,
        evaluator=backends.evaluator, before=backends,
    )  # fmt: skip
    loop_error: list[BaseException] = []
    endpoints = _endpoints(opts, metrics, ctl, loop_error, is_leader, wakeups)
    _stop_on_signals(stop, wakeups)
    # The elector stops (and releases the Lease) only after the loop has returned: never while
    # an action is in flight.
    elector_stop = threading.Event()
    leader = [threading.Thread(target=elector.run, args=(elector_stop,), name="leader")] if (
        elector is not None
    ) else []  # fmt: skip
    watched = list(opts.watch) or [Path(c.root or opts.manifests)]
    watch = threading.Thread(
        target=_watch, args=(watched, opts, wakeups, stop), name="watch", daemon=True
    )
    for t in (*leader, watch):
        t.start()
    try:
        code = _loop(ctl, wakeups, stop, is_leader, loop_error)
    finally:
        stop.set()
        elector_stop.set()
        wakeups.notify("stop")
        for t in leader:
            t.join(timeout=opts.retry_period + 5)
        endpoints.stop()
        shutdown = getattr(backends.serving, "shutdown", None)
        if c.target is Target.local and shutdown is not None:
            shutdown()
    log.info("stopped")
    return code


def _loop(
    ctl: Controller,
    wakeups: Wakeups,
    stop: threading.Event,
    is_leader: Callable[[], bool],
    loop_error: list[BaseException],
) -> int:
    """The loop on this thread until stopped: 0, or 1 if leadership was lost or it failed."""
    try:
        ctl.run(wakeups, stop, is_leader=is_leader, on_cycle=_summarize)
    except BaseException as exc:
        loop_error.append(exc)
        log.exception("the reconcile loop failed")
        return 1
    return 0 if stop.is_set() else 1  # not stopped: leadership lost


def _stop_on_signals(stop: threading.Event, wakeups: Wakeups) -> None:
    def terminate(signum: int, _frame: object) -> None:
        log.info("%s: finishing the action in flight, then stopping", signal.Signals(signum).name)
        stop.set()
        wakeups.notify("stop")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)


def _leadership(
    opts: ControllerOptions,
    api: tuple[KubeApi, str] | None,
    identity: str,
    serving: ServingTarget | None,
    metrics: Metrics,
    wakeups: Wakeups,
    stop: threading.Event,
) -> tuple[EventSink, LeaderElector | None]:
    """Where events go, and the Lease elector (on Kubernetes, unless turned off)."""
    if api is None:
        return LogEvents(), None
    from controller.adapters.kubernetes.lease import LeaderElector, LeaseLock
    from controller.adapters.kubernetes.serving import KubeApi

    client, namespace = api
    lease_ns = opts.lease_namespace or namespace
    leading = opts.leader_elect is not False
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": opts.lease_name,
             "namespace": lease_ns}  # fmt: skip
    # Without a Lease, controller-wide events are logged only.
    events = wiring.events(client, identity, serving, lambda: lease if leading else None)
    if not leading:
        return events, None
    # Lease requests give up before the renew deadline: a hung request must not keep a leader
    # from noticing that it no longer leads.
    lease_api = KubeApi(
        client.api_client, timeout=max(1.0, opts.renew_deadline - opts.retry_period)
    )
    lock = LeaseLock(lease_api, lease_ns, opts.lease_name, identity,
                     lease_duration=opts.lease_duration)  # fmt: skip
    elector = LeaderElector(
        lock, renew_deadline=opts.renew_deadline, retry_period=opts.retry_period,
        on_change=lambda now_leading: _leading(metrics, wakeups, now_leading, stop),
    )  # fmt: skip
    return events, elector


def _endpoints(
    opts: ControllerOptions,
    metrics: Metrics,
    ctl: Controller,
    loop_error: list[BaseException],
    is_leader: Callable[[], bool],
    wakeups: Wakeups,
) -> Endpoints:
    """/healthz, /readyz, /metrics and the MLflow webhook, started."""
    from controller.adapters.http.endpoints import Endpoints, Probes

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
    try:
        endpoints = Endpoints(
            host, port, metrics, Probes(alive, ready),
            webhook_secret=os.environ.get("AGENTCTL_WEBHOOK_SECRET") or None,
            on_webhook=webhook,
        ).start()  # fmt: skip
    except OSError as exc:  # in use, not an address of this machine, a privileged port...
        why = exc.strerror or str(exc)
        raise InvalidInput.of(
            f"cannot listen on {opts.listen} ({why}): stop what listens there or choose "
            "another HOST:PORT (--listen, AGENTCTL_LISTEN)",
            field="--listen",
        ) from None
    log.info("listening on %s:%d (/healthz /readyz /metrics)", host, endpoints.port)
    return endpoints


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)  # a pod's probes reach it from outside


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


def _watch(
    paths: list[Path], opts: ControllerOptions, wakeups: Wakeups, stop: threading.Event
) -> None:
    import watchfiles

    existing = [p for p in paths if p.exists()]
    log.info("watching %s", ", ".join(str(p) for p in existing))
    for changes in watchfiles.watch(
        *existing,
        watch_filter=watch_filter(opts.common.run_dir),
        step=opts.debounce_ms,
        debounce=max(1600, 4 * opts.debounce_ms),
        stop_event=stop,
        yield_on_timeout=False,
    ):
        names = sorted({Path(p).name for _, p in changes})
        log.info("changed: %s", ", ".join(names))
        wakeups.notify("manifests")


#: Files editors and tools write beside the one being saved, and remove or rename away (beyond
#: watchfiles' default: vim's .swp and ~, emacs' .#, JetBrains' ___jb_):
EDITOR_TEMP_FILES = (
    r"^sed[A-Za-z0-9]{6}$",  # sed -i
    r"^\d+$",  # vim's check that it may write in the folder (4913, 5036, ...)
    r"^#.*#$",  # emacs auto-save
    r"\.(tmp|temp|bak|orig|rej)$",
    r"^\.goutputstream-",  # GNOME (gedit)
    r"\.kate-swp$",
    r"^\.~lock\.",  # LibreOffice
)


def watch_filter(run_dir: Path) -> Callable[[Any, str], bool]:
    """What `up` and the controller react to: not the run directory, the sqlite registry, nor
    MLflow's artifact folders, which apply and the model servers' traces write to all the time;
    nor an editor's temporary files."""
    import watchfiles

    class WatchFilter(watchfiles.DefaultFilter):
        ignore_dirs = (*watchfiles.DefaultFilter.ignore_dirs, "mlruns", "mlartifacts", ".agentctl")
        ignore_entity_patterns = (
            *watchfiles.DefaultFilter.ignore_entity_patterns,
            r"\.db(-journal|-wal|-shm)?$",
            *EDITOR_TEMP_FILES,
        )

    return WatchFilter(ignore_paths=[run_dir.resolve()])
