"""The one reconcile: observe -> rollout progress -> plan -> preview -> apply -> Result.

Every caller goes through :func:`reconcile`: ``agentctl plan`` (``apply=False``), ``agentctl
apply`` (and each round of ``apply --wait``), ``agentctl up`` on every change, and the
controller's loop (:mod:`controller.engine.loop`), which adds only its policies (per-agent
isolation through ``isolate``, backoff and drift through ``hold``, events and metrics through
``on_agent``). As Flux's reconcilers do, it returns when to look again
(:attr:`Result.requeue_after`) or that it cannot proceed (:attr:`Result.terminal`).

Reads are retried under the same policy as writes. With a serving target its state is observed
too, the plan covers ``spec.serving``, and rollouts take their next step
(:mod:`controller.engine.progressive`): measured through ``backends.providers`` when applying,
not measured in a dry run. A target that can dry-run its writes (Kubernetes) previews every
serving change first: a refusal stops the reconcile (or, isolated, that agent) before anything
is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Protocol

from controller.core.environment.promotion import promote
from controller.core.errors import AgentctlError, ApplyFailed
from controller.core.manifest.desired import Desired
from controller.core.plan.changes import SERVING_KINDS, Change, Plan
from controller.core.plan.changeset import ChangeSet, Entry
from controller.core.plan.planner import DEFAULT_OWNER, plan
from controller.core.plan.preview import ObjectPreview
from controller.core.plan.scope import select
from controller.core.prompt.resolve import bind_prompts
from controller.core.rollout.progress import Progress, Running
from controller.core.state.observed import RegistrySnapshot, ServingSnapshot, Upstream
from controller.engine.apply import apply as apply_plan
from controller.engine.progressive import evaluate
from controller.engine.promotion_gates import measure_promotions
from controller.engine.retry import RetryPolicy
from controller.ports import (
    Evaluator,
    MetricProvider,
    Previewer,
    Registry,
    ServingTarget,
    SourceHistory,
)

__all__ = ["Backends", "Made", "Result", "observe", "plan_round", "preview", "reconcile"]

#: Seconds to the next look while a served version is still becoming ready.
REQUEUE_WAITING = 5.0


@dataclass(frozen=True, slots=True)
class Backends:
    """What a reconcile talks to, built once by the composition root (:mod:`controller.app.wiring`)."""

    registry: Registry
    serving: ServingTarget | None = None
    providers: Mapping[str, MetricProvider] = field(default_factory=dict)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    #: ``agentctl <version>``, tagged on the models and versions apply creates or changes.
    written_by: str = ""
    #: Reads the sources that name a git revision (None: none can be logged).
    history: SourceHistory | None = None
    #: Evaluates versions for spec.evaluation (None: a plan that evaluates cannot be applied).
    evaluator: Evaluator | None = None
    #: The wall clock: a round's ``now``, and when apply records an alias move.
    wall: Callable[[], float] = time.time
    #: The registry of the environment before, when it is another one (another tracking server
    #: or MLflow workspace), and its location as plans show it; None: this registry.
    upstream: Registry | None = None
    upstream_location: str = ""
    #: The metric sources a promotion's analysis gates read, in the environment before (its
    #: traces, its local router); None: ``providers``.
    before_providers: Mapping[str, MetricProvider] | None = None


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    #: What apply did (the whole plan; with ``isolate``, every agent's entries in plan order).
    changeset: ChangeSet | None = None
    #: What the serving changes would write, per object (targets that dry-run: Kubernetes).
    previews: tuple[ObjectPreview, ...] = ()
    #: Agent -> this round of its rollout (with a serving target).
    progress: Mapping[str, Progress] = field(default_factory=dict)
    #: With ``isolate``: per agent, what was applied, what failed, and what was held (and why).
    applied: Mapping[str, ChangeSet] = field(default_factory=dict)
    failed: Mapping[str, BaseException] = field(default_factory=dict)
    held: Mapping[str, str] = field(default_factory=dict)
    #: Asked to stop before every change was made (the rest is left for the next reconcile).
    stopped: bool = False
    #: Seconds until something under way wants another look: a rollout's pause or gate, a
    #: server becoming ready. None: nothing is pending; look again at the next resync.
    requeue_after: float | None = None
    #: Why this reconcile cannot proceed until the input changes (the plan has errors).
    terminal: str | None = None
    #: What the plan was made from (a saved plan records it), for a plan that was not applied.
    made: Made | None = None


@dataclass(frozen=True, slots=True)
class Made:
    """The inputs of a plan: the desired state, what was observed, the clock the rollouts read,
    and the agents it was scoped to (None: all)."""

    desired: Desired
    observed: RegistrySnapshot
    served: ServingSnapshot | None
    now: float
    scope: Mapping[str, str] | None


def reconcile(
    desired: Desired,
    backends: Backends,
    *,
    apply: bool,
    owner: str = DEFAULT_OWNER,
    prune: bool = False,
    changed: Set[str] | None = None,
    baseline: Desired | None = None,
    workers: int = 1,
    isolate: bool = False,
    hold: Callable[[Plan, Mapping[str, Progress]], Callable[[str], str]] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_entry: Callable[[Entry], None] | None = None,
    on_agent: Callable[[str, ChangeSet, BaseException | None], None] | None = None,
    stop: Callable[[], bool] | None = None,
    wall: Callable[[], float] = time.time,
    guard: Callable[[], Guard] | None = None,
) -> Result:
    """Observe, plan and (with ``apply``) apply ``desired``.

    ``changed`` (paths relative to the root) limits the plan to the agents they touch, plus
    those whose source is not registered; ``baseline`` is the desired state before the change.

    Without ``isolate`` the whole plan is previewed, then applied on ``workers`` threads; an
    apply that fails raises :class:`~controller.core.errors.ApplyFailed`. With ``isolate``
    each agent is previewed and applied on its own, in plan order: ``hold`` (given the plan and
    the rollouts' progress) returns what to ask of each agent when its turn comes: why it is
    not applied ("" to apply it); a failure stays with its agent
    (``Result.failed``), ``on_agent`` hears each agent's outcome as it ends, and ``stop`` is
    asked before each agent and each change.

    ``guard`` (the CLI's registry lock) is entered before the first write of a plan with changes
    and left when apply ends; a plan without changes writes nothing, the lock included."""

    backends = replace(backends, wall=wall)

    def make() -> _Round:
        observed, served = observe(backends)
        bound, _ = bind_prompts(desired, observed)  # (the plan reports a binding in error)
        scope = select(bound, changed, observed) if changed is not None else None
        now = wall()
        the_plan, progress = plan_round(
            desired, observed, served, owner=owner, prune=prune, scope=scope, baseline=baseline,
            now=now, providers=backends.providers if apply else None,
            before_providers=backends.before_providers,
        )  # fmt: skip
        return _Round(the_plan, progress, Made(desired, observed, served, now, scope))

    first = make()
    if isolate:
        return _apply_isolated(first.plan, desired, backends, first.progress, hold, on_agent,
                               on_entry, stop, apply)  # fmt: skip
    writes = apply and first.plan.has_changes and not first.plan.has_errors
    if not writes or guard is None:
        return _finish(first, desired, backends, apply, on_plan, on_entry, stop, workers)
    # A plan with changes is applied under the guard (the CLI's registry lock), planned again
    # once it is held, so that what another apply wrote meanwhile is seen; a no-op takes none.
    lock = guard()
    with lock:
        held = lock.holds

        def stopping() -> bool:
            return not held() or (stop is not None and stop())

        result = _finish(make(), desired, backends, apply, on_plan, on_entry, stopping, workers)
        if not held() and result.changeset is not None and result.stopped:
            raise ApplyFailed(
                "the registry lock was lost (taken over, or not renewed before it expired); "
                "the changes after that were not made",
                result.changeset,
                AgentctlError("registry lock lost"),
            )
        return result


@dataclass(frozen=True, slots=True)
class _Round:
    plan: Plan
    progress: Mapping[str, Progress]
    made: Made


class Guard(Protocol):
    """What a plan with changes is applied under (the CLI's registry lock)."""

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def holds(self) -> bool:
        """Whether it is still held: apply stops at the next change once it is not."""
        ...


def _finish(
    round_: _Round,
    desired: Desired,
    backends: Backends,
    apply: bool,
    on_plan: Callable[[Plan], None] | None,
    on_entry: Callable[[Entry], None] | None,
    stop: Callable[[], bool] | None,
    workers: int,
) -> Result:
    """Preview, show and (with ``apply``) apply one round's plan."""
    the_plan, progress = round_.plan, round_.progress
    terminal = "the plan has errors" if the_plan.has_errors else None
    previews: tuple[ObjectPreview, ...] = ()
    if not the_plan.has_errors:
        previews = preview(backends.serving, the_plan.changes, backends.policy)
    if on_plan is not None:
        on_plan(the_plan)
    if not apply or the_plan.has_errors or not the_plan.has_changes:
        return Result(the_plan, previews=previews, progress=progress,
                      requeue_after=_requeue(progress, None, the_plan), terminal=terminal,
                      made=round_.made)  # fmt: skip
    changeset = apply_plan(
        the_plan, backends.registry, root=desired.root, policy=backends.policy, history=backends.history,
        on_entry=on_entry, serving=backends.serving, workers=workers, stop=stop,
        written_by=backends.written_by, evaluator=backends.evaluator, wall=backends.wall,
    )  # fmt: skip
    return Result(
        the_plan, changeset, previews, progress,
        stopped=len(changeset.entries) < len(the_plan.changes),
        requeue_after=_requeue(progress, changeset, the_plan),
    )  # fmt: skip


def plan_round(
    desired: Desired,
    observed: RegistrySnapshot,
    served: ServingSnapshot | None,
    *,
    owner: str,
    prune: bool,
    scope: Mapping[str, str] | None,
    now: float,
    providers: Mapping[str, MetricProvider] | None,
    baseline: Desired | None = None,
    before_providers: Mapping[str, MetricProvider] | None = None,
) -> tuple[Plan, Mapping[str, Progress]]:
    """The plan of one round, from its inputs alone: with a serving target, rollouts take their
    next step first (gates measured through ``providers``; None: a dry run, not measured).
    Without one, nothing carries a rollout out, but its record is in the registry: the plan
    reports where each rollout stands (a dry run, not measured), and no progress is returned.
    Agents' prompt bindings are resolved first: a rollout's canary is the version bound to the
    prompts as they are now."""
    desired, _ = bind_prompts(desired, observed)  # (the plan reports a binding in error)
    # In an environment after another, each agent's version is the one promotion lets in (its
    # analysis gates measured unless this is a dry run).
    measured = None
    if providers is not None:  # where the environment before runs
        before = before_providers if before_providers is not None else providers
        measured = measure_promotions(desired, observed, before)
    desired, steps = promote(desired, observed, now, measured)
    if served is None:
        recorded = {
            agent: p for agent, p in evaluate(desired, observed, now, None).items()
            if isinstance(p, Running) and p.stored.state is not None
            and p.stored.state.digest == p.state.digest  # recorded, not one it would start
        }  # fmt: skip
        the_plan = plan(
            desired, observed, owner=owner, prune=prune, scope=scope, baseline=baseline,
            rollouts=recorded, promotions=steps,
        )  # fmt: skip
        return the_plan, {}
    progress = evaluate(desired, observed, now, providers)
    the_plan = plan(
        desired, observed, owner=owner, prune=prune, scope=scope, baseline=baseline,
        serving=served, progress=progress, promotions=steps,
    )  # fmt: skip
    return the_plan, progress


def observe(backends: Backends) -> tuple[RegistrySnapshot, ServingSnapshot | None]:
    policy, serving = backends.policy, backends.serving
    observed = policy.call(backends.registry.observe)
    if backends.upstream is not None:
        before = policy.call(backends.upstream.observe)
        observed = replace(observed, upstream=Upstream(before, backends.upstream_location))
    served = policy.call(serving.observe) if serving is not None else None
    return observed, served


def preview(
    serving: ServingTarget | None, changes: tuple[Change, ...], policy: RetryPolicy
) -> tuple[ObjectPreview, ...]:
    """A dry run of every serving write: a name collision, RBAC, a missing Gateway or an object
    the API server refuses is raised here, before anything is written."""
    serving_changes = [c for c in changes if c.kind in SERVING_KINDS]
    if not isinstance(serving, Previewer) or not serving_changes:
        return ()
    target = serving
    return tuple(policy.call(lambda: target.preview(serving_changes)))


def _requeue(
    progress: Mapping[str, Progress], changeset: ChangeSet | None, plan: Plan | None = None
) -> float | None:
    """When to look again: the soonest rollout that waits for a pause or a gate, a promotion's
    soak that ends, or a few seconds while a served version becomes ready."""
    waits = [p.requeue for p in progress.values() if p.requeue is not None]
    if plan is not None:
        waits += [s.wait for s in plan.waiting if s.wait is not None]
    if changeset is not None and changeset.waiting:
        waits.append(REQUEUE_WAITING)
    return min(waits) if waits else None


def _apply_isolated(
    the_plan: Plan,
    desired: Desired,
    backends: Backends,
    progress: Mapping[str, Progress],
    hold: Callable[[Plan, Mapping[str, Progress]], Callable[[str], str]] | None,
    on_agent: Callable[[str, ChangeSet, BaseException | None], None] | None,
    on_entry: Callable[[Entry], None] | None,
    stop: Callable[[], bool] | None,
    apply: bool,
) -> Result:
    """Each agent on its own: one agent's refusal or failure does not hold up the others."""
    stop = stop or (lambda: False)
    why_not = hold(the_plan, progress) if hold is not None else (lambda agent: "")
    blocked = {d.agent for d in the_plan.diagnostics.errors}
    applied: dict[str, ChangeSet] = {}
    failed: dict[str, BaseException] = {}
    held: dict[str, str] = {}
    stopped = False
    for agent in dict.fromkeys(c.agent for c in the_plan.changes) if apply else ():
        if stop():
            stopped = True
            break
        # Asked agent by agent, when its turn comes (backoff, drift reported once reached).
        why = "the plan has errors" if agent in blocked or "" in blocked else why_not(agent)
        if why:
            held[agent] = why
            continue
        changes = the_plan.for_agent(agent)
        sub = Plan(the_plan.owner, changes=changes, agents=(agent,))
        try:
            preview(backends.serving, changes, backends.policy)
            changeset = apply_plan(
                sub, backends.registry, root=desired.root, policy=backends.policy, history=backends.history,
                serving=backends.serving, stop=stop, on_entry=on_entry,
                written_by=backends.written_by, evaluator=backends.evaluator, wall=backends.wall,
            )  # fmt: skip
        except Exception as exc:
            failed[agent] = exc
            done = getattr(exc, "changeset", None)
            if on_agent is not None:
                on_agent(agent, done if isinstance(done, ChangeSet) else ChangeSet(), exc)
            continue
        applied[agent] = changeset
        if on_agent is not None:
            on_agent(agent, changeset, None)
        if len(changeset.entries) < len(changes):
            stopped = True
    entries = tuple(e for cs in applied.values() for e in cs.entries)
    whole = ChangeSet(entries) if applied else None
    return Result(
        the_plan, whole, (), progress, applied, failed, held, stopped,
        requeue_after=_requeue(progress, whole, the_plan),
        terminal="the plan has errors" if the_plan.has_errors else None,
    )  # fmt: skip
