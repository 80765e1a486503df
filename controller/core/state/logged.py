"""What agentctl has logged: the runs and logged models in its experiments (``/agentctl/<model>``),
as a frozen snapshot. Pure data: no I/O.

Each is read with its tags: the logger tags both with the owner, the agent and the source digest
(:mod:`controller.adapters.mlflow.logger`), which is how ``gc`` tells what agentctl created, for
whom, from what (:mod:`controller.core.plan.orphans`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "EXPERIMENT_PREFIX",
    "LoggedModel",
    "LoggedRun",
    "LoggedSnapshot",
    "model_of_experiment",
]

#: agentctl's experiments are named this and the registered model (``experiment_name``).
EXPERIMENT_PREFIX = "/agentctl/"


def model_of_experiment(name: str) -> str | None:
    """The registered model an agentctl experiment is for (the inverse of ``experiment_name``);
    None for any other experiment."""
    prefix = EXPERIMENT_PREFIX
    return name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else None


@dataclass(frozen=True, slots=True)
class LoggedRun:
    run_id: str
    model: str  # the registered model of its experiment
    started_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoggedModel:
    model_id: str  # m-...
    run_id: str  # the run it was logged in ("" if none)
    model: str  # the registered model of its experiment
    created_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoggedSnapshot:
    """Every active run and logged model in agentctl's experiments, from bulk reads."""

    runs: tuple[LoggedRun, ...] = ()
    models: tuple[LoggedModel, ...] = ()
