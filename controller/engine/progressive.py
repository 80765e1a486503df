"""Rollouts in a reconcile: for every agent with ``spec.rollout``, this round's
:data:`~controller.core.rollout.progress.Progress`, which the planner puts in place of the
manifest's end state (the promote alias and the traffic split) while the rollout runs.

Per agent: resolve the canary (the version the manifest brings in) once, and the stable version
(what the promote alias holds in the registry); read the rollout's record and any CLI command
from the registered model's tags (:func:`controller.core.rollout.codec.read`: the one place
they are parsed; the record travels on in the progress value); measure the gates when their
interval is due, through one :class:`~controller.ports.MetricProvider` per source; then
:func:`controller.core.rollout.machine.decide`. A source that cannot be read gives an
inconclusive measurement (logged): it never promotes.

A ``source: scorers`` gate's query carries a :class:`~controller.ports.Scoring`: the scorer of
spec.evaluation it names (as the loader resolved it; until it does, from the manifest), the
repository root its code file is relative to, the sample size, and the stable version to score
for comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from controller.core.errors import AgentctlError
from controller.core.evaluation import record
from controller.core.evaluation.spec import ScorerSpec
from controller.core.manifest.checks import DEFAULT_SAMPLE
from controller.core.manifest.desired import Desired, DesiredAgent
from controller.core.manifest.schema import AnalysisGate, VersionRef
from controller.core.rollout import codec
from controller.core.rollout.codec import RolloutState
from controller.core.rollout.gates import Measurement
from controller.core.rollout.machine import begin, decide, measurement_due
from controller.core.rollout.progress import Clear, Hold, Progress
from controller.core.state.observed import ObservedModel, RegistrySnapshot
from controller.ports import GateQuery, MetricProvider, Scoring

__all__ = ["canary_of", "evaluate"]

log = logging.getLogger("agentctl.rollout")


def canary_of(agent: DesiredAgent, ref: VersionRef | None, model: ObservedModel) -> int | None:
    """The registry number of the version the rollout brings in (``ref``, as the manifest
    resolves it); None if it is not registered yet (this apply logs it) or does not exist (the
    plan reports that)."""
    source = agent.source_of(ref)
    if source is not None:  # current, or a named version: found by its content digest
        found = model.version_with_digest(source.digest)
        return found.number if found is not None else None
    if isinstance(ref, int) and ref in model.versions:
        return ref
    return None


def evaluate(
    desired: Desired,
    observed: RegistrySnapshot,
    now: float,
    providers: Mapping[str, MetricProvider] | None = None,
) -> dict[str, Progress]:
    """Agent -> this round of its rollout, for each agent that has one under way or recorded.
    ``now`` is Unix seconds (rollout state outlives the process); without ``providers`` the
    gates are not measured (a dry run)."""
    out: dict[str, Progress] = {}
    for agent in desired.agents:
        rollout = agent.manifest.spec.rollout
        model = observed.models.get(agent.model_name)
        if rollout is None or model is None:
            continue  # no rollout, or a first deployment: straight to the end state
        current = model.aliases.get(rollout.promote_alias)
        ref = rollout.canary.resolve(agent.manifest.spec.aliases)
        canary = canary_of(agent, ref, model)
        stored = codec.read(model.tags)
        if canary is None:
            if current is not None and ref is not None and agent.source_of(ref) is not None:
                out[agent.name] = Hold(rollout.promote_alias, current, ref, stored)
            continue
        gate = _evaluation_gate(agent, model, canary)
        if gate and canary != current:
            # Not evaluated for the current inputs (this apply evaluates it), or failed: the
            # rollout waits (or does not start) and the stable version keeps all traffic.
            if current is not None and ref is not None:
                out[agent.name] = Hold(rollout.promote_alias, current, ref, stored, gate, canary)
            continue
        state = begin(rollout, canary, current, stored.state, now)
        if state is None:
            if stored.tags:
                out[agent.name] = Clear(
                    canary,
                    stored,
                    f"v{canary} is the stable version: no rollout; its record is cleared",
                )
            continue
        measurements: dict[str, Measurement] | None = None
        if providers is not None and measurement_due(rollout, state, now):
            measurements = _measure(agent, model, state, providers, desired.root)
        out[agent.name] = decide(rollout, state, stored, now, measurements)
    return out


def _evaluation_gate(agent: DesiredAgent, model: ObservedModel, canary: int) -> str:
    """ "" when the canary may take traffic as far as spec.evaluation goes (none, or it passed
    for the current evaluation digest); "evaluating" or "failed" otherwise."""
    if agent.evaluation is None or canary not in model.versions:
        return ""
    found = record.read(model.versions[canary].tags)
    if found is None or found.digest != agent.evaluation.digest:
        return "evaluating"
    return "" if found.passed else "failed"


def _measure(
    agent: DesiredAgent,
    model: ObservedModel,
    state: RolloutState,
    providers: Mapping[str, MetricProvider],
    root: str = "",
) -> dict[str, Measurement]:
    rollout = agent.manifest.spec.rollout
    assert rollout is not None and rollout.analysis is not None
    version = model.versions.get(state.canary)
    model_id = version.model_id if version is not None else ""
    out: dict[str, Measurement] = {}
    for gate in rollout.analysis.gates:
        provider = providers.get(gate.source)
        if provider is None:
            log.warning("agent %s: gate %s: no %s source configured", agent.name, gate.name,
                        gate.source)  # fmt: skip
            out[gate.name] = Measurement(None, 0)
            continue
        scoring = _scoring(agent, model, state, gate, root) if gate.source == "scorers" else None
        q = GateQuery(
            agent.name, agent.model_name, state.canary, model_id, gate.metric, state.step_started,
            gate.query, scoring,
        )  # fmt: skip
        try:
            m = provider.measure(q)
        except AgentctlError as exc:
            log.warning("agent %s: gate %s: %s (inconclusive)", agent.name, gate.name, exc)
            m = Measurement(None, 0)
        except Exception as exc:  # a source's surprise must not stop the reconcile
            log.exception("agent %s: gate %s: unexpected %r (inconclusive)", agent.name,
                          gate.name, exc)  # fmt: skip
            m = Measurement(None, 0)
        if gate.source == "prometheus" and m.value is not None:
            m = Measurement(m.value, max(m.samples, gate.min_samples))  # the query is the evidence
        log.info(
            "agent %s: gate %s %s of v%d: %s from %d sample(s)%s", agent.name, gate.name,
            gate.metric, state.canary, "none" if m.value is None else f"{m.value:g}", m.samples,
            "" if m.baseline is None else f" (stable v{state.stable}: {m.baseline:g})",
        )  # fmt: skip
        out[gate.name] = m
    return out


def _scoring(
    agent: DesiredAgent, model: ObservedModel, state: RolloutState, gate: AnalysisGate, root: str
) -> Scoring | None:
    """What a scorers gate scores with; None: its scorer is not to be found (the manifest's
    checks refuse that, so only a manifest edited under a running controller gets here)."""
    spec = _scorer_spec(agent, gate.scorer or "")
    if spec is None:
        return None
    stable = model.versions.get(state.stable)
    return Scoring(
        scorer=spec,
        root=root,
        sample=gate.sample if gate.sample is not None else DEFAULT_SAMPLE,
        gate=gate.name,
        step=state.step,
        stable=state.stable,
        stable_model_id=stable.model_id if stable is not None else "",
    )


def _scorer_spec(agent: DesiredAgent, name: str) -> ScorerSpec | None:
    """The scorer ``name`` of the agent's spec.evaluation, as the loader resolved it (with its
    code file's digest)."""
    if agent.evaluation is None:
        return None
    return next((s for s in agent.evaluation.scorers if s.name == name), None)
