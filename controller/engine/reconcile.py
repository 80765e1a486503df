"""One reconcile: observe -> plan -> apply. The CLI (plan, apply, up) and the loop call this.

Reads are retried under the same policy as writes. ``apply=False`` stops after the plan. With a
serving target, its state is observed too and the plan covers ``spec.serving``, and rollouts
take their next step (:mod:`controller.engine.progressive`): measured through ``providers`` when
applying, not measured in a dry run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field

from controller.core.manifest.desired import Desired
from controller.core.plan.changes import Kind, Plan
from controller.core.plan.changeset import ChangeSet, Entry
from controller.core.plan.planner import DEFAULT_OWNER, plan
from controller.core.plan.preview import ObjectPreview
from controller.core.plan.scope import select
from controller.core.rollout.machine import Progress
from controller.core.state.observed import RegistrySnapshot, ServingSnapshot
from controller.engine.apply import apply as apply_plan
from controller.engine.progressive import evaluate
from controller.engine.retry import RetryPolicy
from controller.ports import MetricProvider, Previewer, Registry, ServingTarget

__all__ = ["Result", "reconcile"]

_SERVING = (Kind.SERVED_VERSION, Kind.TRAFFIC, Kind.SHADOW)


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    changeset: ChangeSet | None = None
    #: What the serving changes would write, per object (targets that dry-run: Kubernetes).
    previews: tuple[ObjectPreview, ...] = ()
    #: Agent -> this round of its rollout (with a serving target).
    progress: Mapping[str, Progress] = field(default_factory=dict)
    #: What the plan was made from (a saved plan records their fingerprints).
    desired: Desired | None = None
    observed: RegistrySnapshot | None = None
    served: ServingSnapshot | None = None


def reconcile(
    desired: Desired,
    registry: Registry,
    *,
    apply: bool,
    owner: str = DEFAULT_OWNER,
    prune: bool = False,
    policy: RetryPolicy | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_entry: Callable[[Entry], None] | None = None,
    changed: Set[str] | None = None,
    baseline: Desired | None = None,
    serving: ServingTarget | None = None,
    providers: Mapping[str, MetricProvider] | None = None,
    wall: Callable[[], float] = time.time,
    workers: int = 1,
) -> Result:
    """``changed`` (paths relative to the root) limits the plan to the agents they touch, plus
    those whose source is not registered; ``baseline`` is the desired state before the change."""
    policy = policy or RetryPolicy()
    observed = policy.call(registry.observe)
    served = policy.call(serving.observe) if serving is not None else None
    scope = select(desired, changed, observed) if changed is not None else None
    progress = (
        evaluate(desired, observed, wall(), providers if apply else None)
        if serving is not None
        else {}
    )
    the_plan = plan(
        desired,
        observed,
        owner=owner,
        prune=prune,
        scope=scope,
        baseline=baseline,
        serving=served,
        progress=progress,
    )
    previews: tuple[ObjectPreview, ...] = ()
    serving_changes = [c for c in the_plan.changes if c.kind in _SERVING]
    if isinstance(serving, Previewer) and serving_changes and not the_plan.has_errors:
        # A dry run of every write first: a name collision, RBAC, a missing Gateway or an object
        # the API server refuses stops here, before anything is written.
        target = serving
        previews = tuple(policy.call(lambda: target.preview(serving_changes)))
    if on_plan is not None:
        on_plan(the_plan)
    if not apply or the_plan.has_errors or not the_plan.has_changes:
        return Result(the_plan, None, previews, progress, desired, observed, served)
    changeset = apply_plan(
        the_plan, registry, root=desired.root, policy=policy, on_entry=on_entry, serving=serving,
        workers=workers,
    )  # fmt: skip
    return Result(the_plan, changeset, previews, progress, desired, observed, served)
