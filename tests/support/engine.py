"""The engine's one reconcile, called the way the tests describe a world: a registry, and
optionally a serving target, metric providers and a retry policy (built into Backends here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.core.manifest.desired import Desired
from controller.engine.reconcile import Backends, Result
from controller.engine.reconcile import reconcile as engine_reconcile
from controller.engine.retry import RetryPolicy
from controller.ports import MetricProvider, Registry, ServingTarget

__all__ = ["Result", "reconcile"]


def reconcile(
    desired: Desired,
    registry: Registry,
    *,
    apply: bool,
    policy: RetryPolicy | None = None,
    serving: ServingTarget | None = None,
    providers: Mapping[str, MetricProvider] | None = None,
    **kwargs: Any,
) -> Result:
    backends = Backends(registry, serving, providers or {}, policy or RetryPolicy())
    return engine_reconcile(desired, backends, apply=apply, **kwargs)
