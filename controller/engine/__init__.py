"""Orchestration: the loader, the one reconcile, apply, rollout progress, the loop and its
policies (retry, backoff, drift, metrics). Imports ``core`` and ``ports``, never an adapter.
"""
