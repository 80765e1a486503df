"""Gate measurements from MLflow traces: what the canary version's served requests recorded.

A served ResponsesAgent writes one trace per request, whose metadata ``mlflow.modelId`` names the
logged model behind the registry version (``ModelVersion.source`` is ``models:/m-...``). The
error rate is the share of traces in state ``ERROR``; a latency quantile is taken over their
execution durations (ms). No existing rollout tool gates on agent traces: this one does.
"""

from __future__ import annotations

from controller.core.rollout.analysis import error_rate, latency_quantile
from controller.core.rollout.gates import Measurement
from controller.ports import GateQuery, TraceReader

__all__ = ["QUANTILES", "TraceMetrics"]

#: latencyPxx -> the quantile it is.
QUANTILES = {"latencyP50": 0.50, "latencyP95": 0.95, "latencyP99": 0.99}


class TraceMetrics:
    def __init__(self, reader: TraceReader, *, limit: int = 5000) -> None:
        self.reader = reader
        self.limit = limit  # the most traces one measurement reads

    def measure(self, q: GateQuery) -> Measurement:
        if not q.model_id:
            return Measurement(None, 0)
        traces = self.reader.traces(q.model, q.model_id, int(q.since * 1000), self.limit)
        if q.metric == "errorRate":
            return error_rate([state for state, _ in traces])
        return latency_quantile([ms for _, ms in traces], QUANTILES[q.metric])
