"""The controller's Prometheus metrics, in a registry of their own (prometheus-client).

``agentctl_reconcile_duration_seconds`` (histogram, by trigger), ``agentctl_actions_total`` (by
kind and result), ``agentctl_drift_detected_total`` (by agent and kind), ``agentctl_errors_total``
(by agent; "" for the controller as a whole), ``agentctl_manifest_errors_total``,
``agentctl_desired_state_valid``, ``agentctl_last_successful_reconcile_timestamp_seconds`` and
``agentctl_leader``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_duration = Histogram(
            "agentctl_reconcile_duration_seconds",
            "Wall time of one reconcile (observe, plan, apply), by what triggered it.",
            ["trigger"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.actions = Counter(
            "agentctl_actions",
            "Actions the controller applied, by kind and result (created, configured, "
            "deleted, waiting, skipped, failed).",
            ["kind", "result"],
            registry=r,
        )
        self.drift = Counter(
            "agentctl_drift_detected",
            "Changes made outside the manifests (by hand), by agent and kind.",
            ["agent", "kind"],
            registry=r,
        )
        self.errors = Counter(
            "agentctl_errors",
            "Failed reconciles, by agent ('' for the controller as a whole).",
            ["agent"],
            registry=r,
        )
        self.manifest_errors = Counter(
            "agentctl_manifest_errors",
            "Loads of the manifests that failed validation (the last good state stays).",
            registry=r,
        )
        self.desired_valid = Gauge(
            "agentctl_desired_state_valid",
            "1 if the manifests as they are now loaded, 0 if the last good state is in use.",
            registry=r,
        )
        self.last_success = Gauge(
            "agentctl_last_successful_reconcile_timestamp_seconds",
            "When the last reconcile with no error ended (Unix time).",
            registry=r,
        )
        self.leader = Gauge(
            "agentctl_leader", "1 while this replica holds the leader Lease.", registry=r
        )
        self.rollout_step = Gauge(
            "agentctl_rollout_step",
            "The step (1-based) an agent's canary rollout is at.",
            ("agent",),
            registry=r,
        )
        self.rollouts = Counter(
            "agentctl_rollouts",
            "Rollouts ended, by agent and result (Promoted, Failed, Aborted).",
            ("agent", "result"),
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text format, for ``/metrics``."""
        return generate_latest(self.registry)
