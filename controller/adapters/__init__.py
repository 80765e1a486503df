"""Adapters: one module per outside system, each behind a Protocol in :mod:`controller.ports`."""
