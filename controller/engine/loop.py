"""The controller's reconcile loop: the same observe -> plan -> apply, run continuously.

It reconciles on start, when woken (the manifests changed, a registry webhook, leadership won)
and every ``resync`` seconds. Each agent's changes are applied on their own: one agent's
failure backs off that agent only (:mod:`controller.engine.backoff`), and the others go on. A change
the manifests did not ask for is drift (:mod:`controller.engine.drift`): logged, counted, reported as
an event, and reverted unless self-heal is off. A manifest change that fails validation is
reported the same way, and the last good desired state stays in force: nothing is pruned
because a file failed to parse. Asked to stop (SIGTERM, or leadership lost), the action in
flight finishes and nothing after it starts.

Time comes from an injectable clock; the wall clock only stamps the last-success metric.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.core.diagnostics import Diagnostics
from controller.core.errors import AgentctlError, ApplyFailed, InvalidInput
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import Change, Kind, Plan
from controller.core.plan.changeset import ChangeSet, Verb
from controller.core.plan.planner import DEFAULT_OWNER
from controller.core.plan.planner import plan as make_plan
from controller.core.rollout.progress import Progress, Running
from controller.engine.apply import apply as apply_plan
from controller.engine.backoff import AgentBackoff
from controller.engine.drift import agent_digest, drifted, marked
from controller.engine.metrics import Metrics
from controller.engine.progressive import evaluate
from controller.engine.retry import RetryPolicy
from controller.ports import (
    Clock,
    EventSink,
    MetricProvider,
    Previewer,
    Registry,
    ServingTarget,
    SystemClock,
)

__all__ = ["Controller", "CycleReport", "LogEvents", "LoopConfig", "Wakeups"]

_SERVING = (Kind.SERVED_VERSION, Kind.TRAFFIC, Kind.SHADOW)
log = logging.getLogger("agentctl.controller")


@dataclass(frozen=True, slots=True)
class LoopConfig:
    resync: float = 60.0  # seconds between reconciles when nothing wakes the loop
    self_heal: bool = True  # revert drift; False: report it only
    prune: bool = False
    owner: str = DEFAULT_OWNER
    #: seconds to the next reconcile while a served version is still becoming ready
    requeue_waiting: float = 5.0


@dataclass
class CycleReport:
    """What one reconcile did, agent by agent."""

    trigger: str
    applied: dict[str, ChangeSet] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # agent -> error
    held: dict[str, str] = field(default_factory=dict)  # agent -> why it was not applied
    drift: dict[str, list[str]] = field(default_factory=dict)  # agent -> addresses
    desired_valid: bool = True
    progress: dict[str, Progress] = field(default_factory=dict)  # agent -> its rollout's round
    error: str = ""  # the reconcile as a whole failed (no desired state, observation failed)
    stopped: bool = False  # asked to stop before it was done

    @property
    def ok(self) -> bool:
        return not (self.error or self.failed or self.stopped)

    @property
    def requeue(self) -> float | None:
        """Seconds until a rollout under way wants another look (None: none does)."""
        waits = [p.requeue for p in self.progress.values() if p.requeue is not None]
        return min(waits) if waits else None


class Wakeups:
    """Why the loop should reconcile now: reasons gathered from other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._reasons: set[str] = set()

    def notify(self, reason: str) -> None:
        with self._lock:
            self._reasons.add(reason)
        self._event.set()

    def wait(self, timeout: float) -> set[str]:
        """The reasons given since the last call, waiting up to ``timeout`` for one."""
        self._event.wait(max(timeout, 0.0))
        with self._lock:
            reasons, self._reasons = self._reasons, set()
            self._event.clear()
        return reasons


class LogEvents:
    """An EventSink that only logs (no cluster to report to)."""

    def event(self, agent: str, reason: str, message: str, warning: bool = False) -> None:
        log.log(
            logging.WARNING if warning else logging.INFO, "event %s %s: %s", reason, agent, message
        )


class Controller:
    def __init__(
        self,
        load: Callable[[], Desired],
        registry: Registry,
        serving: ServingTarget | None = None,
        *,
        config: LoopConfig | None = None,
        metrics: Metrics | None = None,
        events: EventSink | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        backoff: AgentBackoff | None = None,
        wall: Callable[[], float] = time.time,
        providers: dict[str, MetricProvider] | None = None,
    ) -> None:
        self.load = load
        self.registry = registry
        self.serving = serving
        self.config = config or LoopConfig()
        self.metrics = metrics or Metrics()
        self.events: EventSink = events or LogEvents()
        self.policy = policy or RetryPolicy()
        self.clock = clock or SystemClock()
        self.backoff = backoff or AgentBackoff()
        self.wall = wall  # Unix time: rollout steps and pauses, which outlive the process
        self.providers = providers or {}
        self.last_good: Desired | None = None
        self.converged: dict[str, str] = {}  # agent -> digest of the desired state it reached
        self.cycles = 0  # reconciles ended
        self._invalid = ""  # the manifest errors last reported (reported once per change)
        self._observe_failed = False  # reported once until observation works again
        self._drift_reported: dict[str, tuple[str, ...]] = {}  # agent -> drift last reported
        self._failed_digest: dict[str, str] = {}  # agent -> its desired state when it failed

    # -- one reconcile -------------------------------------------------------------------------

    def reconcile(
        self, trigger: str = "resync", stop: Callable[[], bool] = lambda: False
    ) -> CycleReport:
        started = self.clock.monotonic()
        report = CycleReport(trigger)
        try:
            self._reconcile(report, stop)
        finally:
            self.cycles += 1
            self.metrics.reconcile_duration.labels(trigger).observe(
                self.clock.monotonic() - started
            )
            if report.ok:
                self.metrics.last_success.set(self.wall())
        return report

    def _desired(self, report: CycleReport) -> Desired | None:
        try:
            desired = self.load()
        except InvalidInput as exc:
            report.desired_valid = False
            self.metrics.manifest_errors.inc()
            self.metrics.desired_valid.set(0)
            text = "\n".join(str(d) for d in exc.diagnostics.errors) or str(exc)
            if text != self._invalid:
                self._invalid = text
                for line in text.splitlines():
                    log.error("manifests: %s", line)
                count = len(exc.diagnostics.errors)
                self.events.event(
                    "",
                    "InvalidManifests",
                    f"{count} error(s) in the manifests, the last good desired state stays "
                    f"applied; first: {text.splitlines()[0] if text else exc}",
                    warning=True,
                )
            return self.last_good
        if self._invalid:
            log.info("manifests: valid again")
        self._invalid = ""
        self.metrics.desired_valid.set(1)
        self.last_good = desired
        return desired

    def _reconcile(self, report: CycleReport, stop: Callable[[], bool]) -> None:
        desired = self._desired(report)
        if desired is None:
            report.error = "no valid desired state yet"
            self.metrics.errors.labels("").inc()
            return
        serving = self.serving
        try:
            observed = self.policy.call(self.registry.observe)
            served = self.policy.call(serving.observe) if serving is not None else None
        except AgentctlError as exc:
            report.error = f"observing failed: {exc}"
            log.error("%s", report.error)
            self.metrics.errors.labels("").inc()
            if not self._observe_failed:
                self._observe_failed = True
                self.events.event("", "ObserveFailed", report.error, warning=True)
            return
        self._observe_failed = False
        if served is not None:
            report.progress = evaluate(desired, observed, self.wall(), self.providers)
        the_plan = make_plan(
            desired,
            observed,
            owner=self.config.owner,
            prune=self.config.prune,
            serving=served,
            progress=report.progress,
        )
        blocked = {d.agent for d in the_plan.diagnostics.errors}
        for d in the_plan.diagnostics.errors:
            log.error("plan: %s", d)
        manifests = {a.name: agent_digest(a, desired) for a in desired.agents}
        progress = report.progress
        digests = {
            name: marked(d, progress[name].mark if name in progress else "")
            for name, d in manifests.items()
        }
        report.drift = drifted(the_plan, digests, self.converged)
        for agent, at in list(self._failed_digest.items()):
            if manifests.get(agent) != at:  # its manifest changed since it failed: try it now
                self.backoff.succeeded(agent)
                del self._failed_digest[agent]
        for agent in set(self._drift_reported) - set(report.drift):
            del self._drift_reported[agent]
        agents = list(dict.fromkeys(c.agent for c in the_plan.changes))
        for agent in agents:
            if stop():
                report.stopped = True
                break
            why = self._hold(agent, blocked, report)
            if why:
                report.held[agent] = why
                continue
            self._apply_agent(agent, the_plan, desired, report, stop)
            if agent in report.failed and agent in manifests:
                self._failed_digest[agent] = manifests[agent]
            changeset = report.applied.get(agent)
            if (
                changeset is not None
                and agent in digests
                and not changeset.waiting
                and len(changeset.entries) == len(the_plan.for_agent(agent))
            ):
                self.converged[agent] = digests[agent]
        for name, digest in digests.items():
            if name not in agents and name not in blocked:
                self.converged[name] = digest
        for name in set(self.converged) - set(digests):
            del self.converged[name]

    def _hold(self, agent: str, blocked: set[str], report: CycleReport) -> str:
        """Why an agent's changes are not applied this time ("" if they are)."""
        if agent in blocked or "" in blocked:
            return "the plan has errors"
        if not self.backoff.ready(agent, self.clock.monotonic()):
            return f"backing off after {self.backoff.failures.get(agent, 0)} failure(s)"
        drift = report.drift.get(agent)
        if drift:
            # Reported (logged, counted, an Event) once per change of what has drifted: drift
            # left alone (self-heal off) is not reported again on every resync.
            if self._drift_reported.get(agent) != tuple(drift):
                self._drift_reported[agent] = tuple(drift)
                for kind in (a.split(".")[1] for a in drift):
                    self.metrics.drift.labels(agent, kind).inc()
                heal = "reverting it" if self.config.self_heal else "self-heal is off: not reverted"
                message = f"drift: {', '.join(drift)} changed outside the manifests; {heal}"
                log.warning("agent %s: %s", agent, message)
                self.events.event(agent, "DriftDetected", message, warning=True)
            if not self.config.self_heal:
                return "drift reported (self-heal is off)"
        return ""

    def _apply_agent(
        self,
        agent: str,
        the_plan: Plan,
        desired: Desired,
        report: CycleReport,
        stop: Callable[[], bool],
    ) -> None:
        changes = the_plan.for_agent(agent)
        sub = Plan(the_plan.owner, changes=changes, diagnostics=Diagnostics(), agents=(agent,))
        serving = self.serving
        try:
            serving_changes = [c for c in changes if c.kind in _SERVING]
            if isinstance(serving, Previewer) and serving_changes:
                previewer = serving
                self.policy.call(lambda: previewer.preview(serving_changes))
            changeset = apply_plan(
                sub,
                self.registry,
                root=desired.root,
                policy=self.policy,
                serving=serving,
                stop=stop,
                on_entry=lambda e: log.info(
                    "agent %s: %s %s %s", agent, e.address, e.verb.value, e.detail
                ),
            )
        except Exception as exc:
            if not isinstance(exc, AgentctlError):
                log.exception("agent %s: unexpected error", agent)
            done = exc.changeset if isinstance(exc, ApplyFailed) else ChangeSet()
            self._count(changes, done, failed=True)
            delay = self.backoff.failed(agent, self.clock.monotonic())
            report.failed[agent] = str(exc)
            self.metrics.errors.labels(agent).inc()
            text = str(exc)
            text = text if text.startswith(f"agent {agent}:") else f"agent {agent}: {text}"
            log.error("%s (next try in %.0f s)", text, delay)
            self.events.event(
                agent, "ReconcileFailed", f"{exc} (next try in {delay:.0f} s)", warning=True
            )
            return
        self.backoff.succeeded(agent)
        report.applied[agent] = changeset
        self._rollout_event(agent, report.progress.get(agent))
        self._count(changes, changeset)
        if len(changeset.entries) < len(changes):
            report.stopped = True
        made = [e for e in changeset.entries if e.verb not in (Verb.WAITING, Verb.SKIPPED)]
        if made:
            self.events.event(
                agent,
                "Applied",
                "; ".join(f"{e.address} {e.verb.value}" for e in made)[:1000],
            )

    def _rollout_event(self, agent: str, progress: Progress | None) -> None:
        """Report a rollout's step, promotion, failure or abort once it is recorded."""
        if not isinstance(progress, Running):
            return  # nothing recorded this round (held for the canary, or cleared)
        self.metrics.rollout_step.labels(agent).set(progress.state.step + 1)
        if progress.event is None:
            return
        reason, message, warning = progress.event
        if reason in ("RolloutPromoted", "RolloutFailed", "RolloutAborted"):
            self.metrics.rollouts.labels(agent, progress.state.phase.value).inc()
        log.log(logging.WARNING if warning else logging.INFO, "agent %s: %s: %s", agent, reason,
                message)  # fmt: skip
        self.events.event(agent, reason, message, warning=warning)

    def _count(
        self, changes: tuple[Change, ...], changeset: ChangeSet, failed: bool = False
    ) -> None:
        """Count actions by kind and result; with ``failed``, the change that failed too."""
        kinds = {c.address: c.kind.value for c in changes}
        for entry in changeset.entries:
            self.metrics.actions.labels(kinds.get(entry.address, ""), entry.verb.value).inc()
        if failed and len(changeset.entries) < len(changes):
            self.metrics.actions.labels(changes[len(changeset.entries)].kind.value, "failed").inc()

    # -- the loop ------------------------------------------------------------------------------

    def run(
        self,
        wakeups: Wakeups,
        stop: threading.Event,
        is_leader: Callable[[], bool] = lambda: True,
        on_cycle: Callable[[CycleReport], None] | None = None,
    ) -> None:
        """Reconcile on start, on each wake-up and every ``resync`` seconds, while this replica
        leads; return once ``stop`` is set (after the action in flight) or leadership is lost
        while reconciling."""
        trigger = "start"
        next_resync = self.clock.monotonic()
        led = False
        while not stop.is_set():
            if not is_leader():
                if led:
                    log.error("leadership lost: stopping")
                    return
                wakeups.wait(1.0)
                continue
            if not led:
                led, trigger = True, trigger if trigger == "start" else "leader"
            now = self.clock.monotonic()
            if trigger or now >= next_resync:
                report = self.reconcile(
                    trigger or "resync", stop=lambda: stop.is_set() or not is_leader()
                )
                if on_cycle is not None:
                    on_cycle(report)
                waiting = any(cs.waiting for cs in report.applied.values())
                interval = self.config.resync
                if waiting:
                    interval = min(interval, self.config.requeue_waiting)
                if report.requeue is not None:
                    interval = min(interval, report.requeue)
                next_resync = self.clock.monotonic() + interval
                trigger = ""
            due = min(next_resync, self.backoff.next_due(self.clock.monotonic(), next_resync))
            reasons = wakeups.wait(due - self.clock.monotonic())
            if not reasons and self.clock.monotonic() < next_resync:
                reasons = {"backoff"}  # an agent's backoff ran out before the resync
            if reasons - {"stop"}:
                trigger = ",".join(sorted(reasons - {"stop"}))
