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
import random as _random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from controller.core.errors import AgentctlError, InvalidInput
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import Change, Plan
from controller.core.plan.changeset import ChangeSet, Entry, Verb
from controller.core.plan.planner import DEFAULT_OWNER
from controller.core.rollout.progress import Progress, Running
from controller.engine.backoff import AgentBackoff
from controller.engine.drift import agent_digest, drifted, marked, prompt_digest
from controller.engine.metrics import Metrics
from controller.engine.reconcile import Backends, reconcile
from controller.engine.retry import RetryPolicy
from controller.ports import (
    Clock,
    Evaluator,
    EventSink,
    MetricProvider,
    Registry,
    ServingTarget,
    SystemClock,
)

__all__ = ["Controller", "CycleReport", "LogEvents", "LoopConfig", "Wakeups"]

log = logging.getLogger("agentctl.controller")


@dataclass(frozen=True, slots=True)
class LoopConfig:
    resync: float = 60.0  # seconds between reconciles when nothing wakes the loop
    self_heal: bool = True  # revert drift; False: report it only
    prune: bool = False
    owner: str = DEFAULT_OWNER
    #: resyncs come after ``resync * (1 + jitter * u)`` seconds, u uniform in [0, 1)
    jitter: float = 0.1


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
    #: seconds until something under way wants another look (None: nothing is pending)
    requeue: float | None = None
    error: str = ""  # the reconcile as a whole failed (no desired state, observation failed)
    stopped: bool = False  # asked to stop before it was done

    @property
    def ok(self) -> bool:
        return not (self.error or self.failed or self.stopped)


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
        random: Callable[[], float] = _random.random,
        written_by: str = "",
        evaluator: Evaluator | None = None,
        before: Backends | None = None,
    ) -> None:
        """``before``: backends whose ``upstream*`` and ``before_providers`` say where the
        environment before lives and how its promotion gates are measured (the rest unused)."""
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
        self.random = random  # the resync's jitter
        self.backends = Backends(
            registry, serving, self.providers, self.policy, written_by, evaluator=evaluator
        )
        if before is not None:
            self.backends = replace(
                self.backends, upstream=before.upstream, upstream_location=before.upstream_location,
                before_providers=before.before_providers,
            )  # fmt: skip
        self.last_good: Desired | None = None
        self.converged: dict[str, str] = {}  # agent -> digest of the desired state it reached
        self.cycles = 0  # reconciles ended
        self._invalid = ""  # the manifest errors last reported (reported once per change)
        self._observe_failed = False  # reported once until observation works again
        self._drift_reported: dict[str, tuple[str, ...]] = {}  # agent -> drift last reported
        self._failed_digest: dict[str, str] = {}  # agent -> its desired state when it failed
        self._gated_reported: set[tuple[str, int]] = set()  # gated (agent, version) reported
        self._gated_said: set[tuple[str, int]] = set()  # ... by this cycle's apply

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
        manifests = {a.name: agent_digest(a, desired) for a in desired.agents}
        manifests.update((p.name, prompt_digest(p)) for p in desired.prompts)
        digests: dict[str, str] = {}  # agent -> its desired state marked with its rollout's round
        planned: list[Plan] = []  # the plan being applied, once made
        owners: dict[str, str] = {}  # its changes' addresses -> agent

        def hold(the_plan: Plan, progress: Mapping[str, Progress]) -> Callable[[str], str]:
            """The loop's policies over the plan: plan errors, backoff and drift."""
            planned.append(the_plan)
            owners.update((c.address, c.agent) for c in the_plan.changes)
            report.progress = dict(progress)
            for d in the_plan.diagnostics.errors:
                log.error("plan: %s", d)
            digests.update(
                (name, marked(d, progress[name].mark if name in progress else ""))
                for name, d in manifests.items()
            )
            report.drift = drifted(the_plan, digests, self.converged)
            for agent, at in list(self._failed_digest.items()):
                if manifests.get(agent) != at:  # its manifest changed since it failed: try it now
                    self.backoff.succeeded(agent)
                    del self._failed_digest[agent]
            for agent in set(self._drift_reported) - set(report.drift):
                del self._drift_reported[agent]
            blocked = {d.agent for d in the_plan.diagnostics.errors}
            return lambda agent: self._hold(agent, blocked, report)

        def on_agent(agent: str, changeset: ChangeSet, error: BaseException | None) -> None:
            changes = planned[0].for_agent(agent)
            if error is not None:
                self._failed(agent, changes, changeset, error)
                if agent in manifests:
                    self._failed_digest[agent] = manifests[agent]
            else:
                self._applied(agent, changes, changeset, report)

        def on_entry(e: Entry) -> None:
            log.info("agent %s: %s %s %s", owners.get(e.address, ""), e.address, e.verb.value,
                     e.detail)  # fmt: skip

        try:
            result = reconcile(
                desired, self.backends, apply=True, owner=self.config.owner,
                prune=self.config.prune, isolate=True, hold=hold, on_agent=on_agent,
                on_entry=on_entry, stop=stop, wall=self.wall,
            )  # fmt: skip
        except AgentctlError as exc:
            report.error = f"observing failed: {exc}"
            log.error("%s", report.error)
            self.metrics.errors.labels("").inc()
            if not self._observe_failed:
                self._observe_failed = True
                self.events.event("", "ObserveFailed", report.error, warning=True)
            return
        self._observe_failed = False
        self._gated(result.plan)
        report.requeue = result.requeue_after
        report.held.update(result.held)
        report.failed.update({a: str(e) for a, e in result.failed.items()})
        report.stopped = report.stopped or result.stopped
        the_plan = result.plan
        blocked = {d.agent for d in the_plan.diagnostics.errors}
        agents = list(dict.fromkeys(c.agent for c in the_plan.changes))
        for agent in agents:
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

    def _gated(self, the_plan: Plan) -> None:
        """Report each version withheld for a failed evaluation once (a resync finds it again:
        a recorded verdict is not evaluated again until the inputs change)."""
        now = {(g.agent, g.version) for g in the_plan.gated}
        for g in the_plan.gated:
            if (g.agent, g.version) in self._gated_reported | self._gated_said:
                continue
            log.warning("agent %s: %s", g.agent, g.message)
            self.events.event(g.agent, "EvaluationFailed", g.message[:1000], warning=True)
        self._gated_reported = now | self._gated_said
        self._gated_said = set()

    def _failed(
        self, agent: str, changes: tuple[Change, ...], done: ChangeSet, exc: BaseException
    ) -> None:
        if not isinstance(exc, AgentctlError):
            log.error("agent %s: unexpected error", agent, exc_info=exc)
        self._count(changes, done, failed=True)
        delay = self.backoff.failed(agent, self.clock.monotonic())
        self.metrics.errors.labels(agent).inc()
        text = str(exc)
        text = text if text.startswith(f"agent {agent}:") else f"agent {agent}: {text}"
        log.error("%s (next try in %.0f s)", text, delay)
        self.events.event(
            agent, "ReconcileFailed", f"{exc} (next try in {delay:.0f} s)", warning=True
        )

    def _applied(
        self, agent: str, changes: tuple[Change, ...], changeset: ChangeSet, report: CycleReport
    ) -> None:
        self.backoff.succeeded(agent)
        report.applied[agent] = changeset
        self._rollout_event(agent, report.progress.get(agent))
        self._count(changes, changeset)
        for e in changeset.failed_evaluations:
            # The verdict is recorded on the version; nothing to retry until the inputs change
            # (the next plans list the version as gated: reported here once).
            log.warning("agent %s: %s", agent, e.detail)
            self.events.event(agent, "EvaluationFailed", e.detail[:1000], warning=True)
            words = e.detail.split()
            if len(words) > 1 and words[1].isdigit():
                self._gated_said.add((agent, int(words[1])))
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

    def next_look(self, report: CycleReport) -> float:
        """Seconds until the next reconcile: what the last one asked for (a rollout's pause or
        gate, a server becoming ready), else the resync with jitter (as controller-runtime's
        is), so that replicas and controllers started together do not read the registry at
        once."""
        interval = self.config.resync * (1.0 + self.config.jitter * self.random())
        return interval if report.requeue is None else min(interval, report.requeue)

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
                next_resync = self.clock.monotonic() + self.next_look(report)
                trigger = ""
            due = min(next_resync, self.backoff.next_due(self.clock.monotonic(), next_resync))
            reasons = wakeups.wait(due - self.clock.monotonic())
            if not reasons and self.clock.monotonic() < next_resync:
                reasons = {"backoff"}  # an agent's backoff ran out before the resync
            if reasons - {"stop"}:
                trigger = ",".join(sorted(reasons - {"stop"}))
