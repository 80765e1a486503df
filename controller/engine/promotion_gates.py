"""The analysis gates of a promotion step, measured: each on the candidate (the version the
environment before serves under ``promotion.from``), over what it served since it took that
alias, through the same metric sources as a rollout's gates (traces, router, prometheus). Reads
through the providers; the judging is the core's (:mod:`controller.core.environment.promotion`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from controller.core.environment.promotion import Measured, candidate_of, steps_of
from controller.core.errors import AgentctlError
from controller.core.manifest.desired import Desired
from controller.core.rollout.gates import Measurement
from controller.core.state.observed import RegistrySnapshot
from controller.ports import GateQuery, MetricProvider

__all__ = ["measure_promotions"]

log = logging.getLogger("agentctl.promotion")


def measure_promotions(
    desired: Desired, observed: RegistrySnapshot, providers: Mapping[str, MetricProvider]
) -> Measured:
    """Agent -> gate -> its measurement, for the environment of ``desired`` (nothing for a first
    environment, or a step without analysis gates), through ``providers`` of the registry of the
    environment before. A source that is not configured leaves its
    gate out (it does not hold); one that fails is logged and measures nothing."""
    pair = steps_of(desired)
    if pair is None:
        return {}
    env, previous = pair
    rules = env.manifest.spec.promotion
    if rules is None or not rules.analysis:
        return {}
    out: dict[str, dict[str, Measurement]] = {}
    for agent in desired.agents:
        found = candidate_of(agent.name, env, previous, observed)
        if isinstance(found, str) or found.since is None:
            continue
        mine = out.setdefault(agent.name, {})
        for gate in rules.analysis:
            provider = providers.get(gate.source)
            if provider is None:
                continue
            q = GateQuery(agent.name, found.model, found.number, found.version.model_id,
                          gate.metric, found.since, gate.query)  # fmt: skip
            try:
                mine[gate.name] = provider.measure(q)
            except AgentctlError as exc:
                log.warning("agent %s: promotion gate %s: %s (inconclusive)", agent.name,
                            gate.name, exc)  # fmt: skip
                mine[gate.name] = Measurement(None, 0)
    return out
