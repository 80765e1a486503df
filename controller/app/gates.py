"""The metric sources a rollout's analysis gates read, by their ``source`` name: ``traces``
(the registry's MLflow traces), ``router`` (the local router's ``/metrics``, with
``--target local``) and ``prometheus`` (with ``--prometheus-url``)."""

from __future__ import annotations

from collections.abc import Callable

from controller.adapters.gates.prometheus import PrometheusMetrics, RouterMetrics
from controller.adapters.gates.traces import TraceMetrics
from controller.ports import MetricProvider, TraceReader

__all__ = ["metric_providers"]


def metric_providers(
    registry: TraceReader,
    *,
    router: Callable[[], str | None] | None = None,
    prometheus_url: str | None = None,
) -> dict[str, MetricProvider]:
    out: dict[str, MetricProvider] = {"traces": TraceMetrics(registry)}
    if router is not None:
        out["router"] = RouterMetrics(router)
    if prometheus_url:
        out["prometheus"] = PrometheusMetrics(prometheus_url)
    return out


def local_router(serving: object) -> Callable[[], str | None] | None:
    """The router address of a local serving target (its daemon's), read when needed."""
    daemon = getattr(serving, "daemon", None)
    if daemon is None:
        return None

    def endpoint() -> str | None:
        info = daemon()
        return str(info["router"]) if info and info.get("router") else None

    return endpoint
