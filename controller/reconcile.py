"""One reconcile: observe -> plan -> apply. The CLI (plan, apply, up) and the loop call this.

Reads are retried under the same policy as writes. ``apply=False`` stops after the plan. With a
serving target, its state is observed too and the plan covers ``spec.serving``.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass

from controller.apply import apply as apply_plan
from controller.changeset import ChangeSet, Entry
from controller.desired import Desired
from controller.plan import Plan
from controller.planner import DEFAULT_OWNER, plan
from controller.ports import Registry, ServingTarget
from controller.retry import RetryPolicy
from controller.scope import select

__all__ = ["Result", "reconcile"]


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    changeset: ChangeSet | None = None


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
) -> Result:
    """``changed`` (paths relative to the root) limits the plan to the agents they touch, plus
    those whose source is not registered; ``baseline`` is the desired state before the change."""
    policy = policy or RetryPolicy()
    observed = policy.call(registry.observe)
    served = policy.call(serving.observe) if serving is not None else None
    scope = select(desired, changed, observed) if changed is not None else None
    the_plan = plan(
        desired,
        observed,
        owner=owner,
        prune=prune,
        scope=scope,
        baseline=baseline,
        serving=served,
    )
    if on_plan is not None:
        on_plan(the_plan)
    if not apply or the_plan.has_errors or not the_plan.has_changes:
        return Result(the_plan)
    changeset = apply_plan(
        the_plan, registry, root=desired.root, policy=policy, on_entry=on_entry, serving=serving
    )
    return Result(the_plan, changeset)
