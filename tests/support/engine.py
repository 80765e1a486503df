"""The engine's one reconcile (and a saved plan's apply), called the way the tests describe a world: a registry, and
optionally a serving target, metric providers and a retry policy (built into Backends here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from controller.core.manifest.desired import Desired
from controller.core.plan.changeset import ChangeSet
from controller.core.plan.saved import SavedPlan
from controller.engine.reconcile import Backends, Result
from controller.engine.reconcile import reconcile as engine_reconcile
from controller.engine.retry import RetryPolicy
from controller.engine.saved import apply_saved as engine_apply_saved
from controller.ports import Evaluator, MetricProvider, Registry, ServingTarget

__all__ = ["Result", "apply_saved", "reconcile"]


def reconcile(
    desired: Desired,
    registry: Registry,
    *,
    apply: bool,
    policy: RetryPolicy | None = None,
    serving: ServingTarget | None = None,
    providers: Mapping[str, MetricProvider] | None = None,
    evaluator: Evaluator | None = None,
    upstream: tuple[Registry, str] | None = None,
    **kwargs: Any,
) -> Result:
    """``upstream``: the environment before's registry and its location, when it is another."""
    backends = Backends(
        registry, serving, providers or {}, policy or RetryPolicy(), evaluator=evaluator
    )
    if upstream is not None:
        backends = replace(backends, upstream=upstream[0], upstream_location=upstream[1])
    return engine_reconcile(desired, backends, apply=apply, **kwargs)


def apply_saved(
    saved: SavedPlan,
    desired: Desired,
    registry: Registry,
    *,
    file: str,
    policy: RetryPolicy | None = None,
    serving: ServingTarget | None = None,
    evaluator: Evaluator | None = None,
    **kwargs: Any,
) -> ChangeSet:
    backends = Backends(registry, serving, {}, policy or RetryPolicy(), evaluator=evaluator)
    return engine_apply_saved(saved, desired, backends, file=file, **kwargs)
