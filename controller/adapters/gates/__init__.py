"""Rollout gate sources: MLflow traces, a PromQL query, the local router's ``/metrics``."""
