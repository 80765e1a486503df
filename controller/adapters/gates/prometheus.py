"""Gate measurements from Prometheus: a PromQL query over the HTTP API, or a ``/metrics`` page
scraped directly (the local router's per-version counters and histogram).

- :class:`PrometheusMetrics`: ``GET /api/v1/query``; the gate's query, with ``{{version}}``,
  ``{{agent}}`` and ``{{model}}`` filled in, must return one number (a scalar, or a vector's first
  sample). The query decides its own window; ``minSamples`` does not apply (as in Argo Rollouts):
  an empty result or NaN is inconclusive.
- :class:`RouterMetrics`: the router's ``agentctl_router_requests_total``,
  ``agentctl_router_request_errors_total`` and ``agentctl_router_request_duration_seconds`` of
  the canary version (role ``primary``), counted since the router first sent it a request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.gates.traces import QUANTILES
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.rollout.analysis import counter_error_rate, histogram_quantile
from controller.core.rollout.gates import Measurement
from controller.core.secrets import redact_text, without_credentials
from controller.ports import GateQuery

__all__ = ["PrometheusMetrics", "RouterMetrics", "fill"]


def fill(query: str, q: GateQuery) -> str:
    return (
        query.replace("{{version}}", str(q.version))
        .replace("{{agent}}", q.agent)
        .replace("{{model}}", q.model)
    )


def _get(url: str, what: str, params: dict[str, str] | None = None, timeout: float = 10) -> Any:
    shown = without_credentials(url)  # a URL's user info is never in a message
    try:
        r = requests.get(url, params=params, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        reason = redact_text(str(exc))
        raise TemporaryBackendError(f"{what}: {shown} did not answer ({reason})") from exc
    except requests.RequestException as exc:  # a URL without a scheme, and the like
        raise PermanentBackendError(f"{what}: cannot ask {shown}: {redact_text(str(exc))}") from exc
    if r.status_code >= 500 or r.status_code == 429:
        raise TemporaryBackendError(f"{what}: {shown} answered {r.status_code}")
    if not r.ok:
        raise PermanentBackendError(f"{what}: {shown} answered {r.status_code}: {r.text[:300]}")
    return r


class PrometheusMetrics:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def measure(self, q: GateQuery) -> Measurement:
        if not q.query:
            raise PermanentBackendError("a prometheus gate needs a query")
        query = fill(q.query, q)
        r = _get(self.url + "/api/v1/query", "prometheus query", {"query": query})
        try:
            body = r.json()
            if body.get("status") != "success":
                raise PermanentBackendError(
                    f"prometheus query {query!r}: {body.get('error', body)}"
                )
            data: dict[str, Any] = body.get("data") or {}
            result: Any = data.get("result")
            if data.get("resultType") == "scalar":
                value = float(result[1])
            elif data.get("resultType") == "vector" and result:
                value = float(result[0]["value"][1])
            else:
                return Measurement(None, 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise PermanentBackendError(
                f"prometheus query {query!r}: not an answer of Prometheus' query API ({exc!r})"
            ) from exc
        if math.isnan(value):
            return Measurement(None, 0)
        return Measurement(value, 1)  # one number; the caller does not apply minSamples to it


class RouterMetrics:
    def __init__(self, endpoint: Callable[[], str | None]) -> None:
        self.endpoint = endpoint  # the router's address, when one runs

    def measure(self, q: GateQuery) -> Measurement:
        base = self.endpoint()
        if not base:
            return Measurement(None, 0)
        text = _get(base.rstrip("/") + "/metrics", "router metrics").text
        requests_n = errors = 0.0
        buckets: dict[float, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    labels.get("agent") != q.agent
                    or labels.get("version") != str(q.version)
                    or labels.get("role") != "primary"
                ):
                    continue
                if sample.name == "agentctl_router_requests_total":
                    requests_n += sample.value
                elif sample.name == "agentctl_router_request_errors_total":
                    errors += sample.value
                elif sample.name == "agentctl_router_request_duration_seconds_bucket":
                    le = float(labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
        if q.metric == "errorRate":
            return counter_error_rate(0.0, requests_n, 0.0, errors)
        m = (
            histogram_quantile({}, buckets, QUANTILES[q.metric])
            if buckets
            else Measurement(None, 0)
        )
        return Measurement(m.value * 1000.0 if m.value is not None else None, m.samples)
