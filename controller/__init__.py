"""agentctl: declarative GitOps deployment of LLM agents packaged as MLflow models.

The package is laid out in layers, one folder each; dependencies point down only::

    app/        the shells: the CLI, the controller process (manager) and the composition
                root (wiring) that builds adapters from one options value
    engine/     orchestration: loader, the one reconcile, apply, rollout progress, the loop
    adapters/   one package per outside system (mlflow, kubernetes, local, gates, http, git)
    ports.py    the Protocols adapters implement and the engine calls
    core/       pure values and functions: manifest, state, plan, rollout, render

The rule, checked by ``tests/unit/test_architecture.py`` from these folders:

- ``core`` imports only ``core`` (and pure parts of the standard library, pydantic, packaging):
  no I/O, no clock (``now`` is passed in);
- ``ports`` imports ``core``;
- ``adapters/<system>`` imports ``core``, ``ports`` and its own package, never another adapter
  package nor the engine;
- ``engine`` imports ``core``, ``ports`` and ``engine``, never an adapter;
- ``app`` may import everything;
- no import circle anywhere, and no relative imports (so the rule cannot be stepped around).

This module imports nothing eagerly: the names below load on first use, so that
``python -m controller.adapters...`` children and light commands pay only for what they use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it: the curated public surface.
_EXPORTS = {
    "load": "controller.engine.loader",
    "reconcile": "controller.engine.reconcile",
    "Result": "controller.engine.reconcile",
    "plan": "controller.core.plan.planner",
    "Plan": "controller.core.plan.changes",
    "Change": "controller.core.plan.changes",
    "Action": "controller.core.plan.changes",
    "Kind": "controller.core.plan.changes",
    "ChangeSet": "controller.core.plan.changeset",
    "Desired": "controller.core.manifest.desired",
    "RegistrySnapshot": "controller.core.state.observed",
    "ServingSnapshot": "controller.core.state.observed",
    "Diagnostics": "controller.core.diagnostics",
    "AgentctlError": "controller.core.errors",
    "InvalidInput": "controller.core.errors",
    "BackendError": "controller.core.errors",
    "ApplyFailed": "controller.core.errors",
}

__all__ = [
    "Action",
    "AgentctlError",
    "ApplyFailed",
    "BackendError",
    "Change",
    "ChangeSet",
    "Desired",
    "Diagnostics",
    "InvalidInput",
    "Kind",
    "Plan",
    "RegistrySnapshot",
    "Result",
    "ServingSnapshot",
    "__version__",
    "load",
    "plan",
    "reconcile",
]

if TYPE_CHECKING:
    from controller.core.diagnostics import Diagnostics
    from controller.core.errors import AgentctlError, ApplyFailed, BackendError, InvalidInput
    from controller.core.manifest.desired import Desired
    from controller.core.plan.changes import Action, Change, Kind, Plan
    from controller.core.plan.changeset import ChangeSet
    from controller.core.plan.planner import plan
    from controller.core.state.observed import RegistrySnapshot, ServingSnapshot
    from controller.engine.loader import load
    from controller.engine.reconcile import Result, reconcile


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'controller' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
