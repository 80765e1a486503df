"""Promotion into an environment after another: which version comes in, and whether the step's
gates let it. Pure data: no I/O, no clock (``now`` is passed in).

The candidate is the version the environment before serves under ``promotion.from`` (default
``champion``). It comes in, copied with its lineage (:mod:`.record`), when every gate of the step
holds: its evaluation verdict passed, it has held the alias for ``soak``, a person approved it
for this environment. Until then the environment keeps the version it has: the newest version
promoted into it (none yet: the agent has nothing to serve here). The agent's ``current`` is
that version, as a source whose digest is the candidate's, so the planner finds a copy made
earlier by its digest and plans a copy (never a build) otherwise; the environment's own rollout
then takes it from there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from controller.core.environment.overlay import environment_named
from controller.core.environment.record import (
    PROMOTED_FROM_REGISTRY_TAG,
    PROMOTED_FROM_TAG,
    aliased_at,
    approval_of,
    iso,
    kept_in_copy,
    model_uri,
)
from controller.core.environment.step import Gate, Step
from controller.core.evaluation import record
from controller.core.manifest.desired import (
    Desired,
    DesiredAgent,
    DesiredEnvironment,
    ResolvedSource,
)
from controller.core.manifest.schema import CURRENT, AnalysisGate
from controller.core.manifest.schema_environment import Promotion
from controller.core.rollout.gates import Gate as RolloutGate
from controller.core.rollout.gates import Measurement, Verdict, judge
from controller.core.state.observed import FAILED, ObservedModel, ObservedVersion, RegistrySnapshot

__all__ = [
    "Candidate",
    "Gate",
    "Measured",
    "Step",
    "candidate_of",
    "promote",
    "promoted_source",
    "steps_of",
]

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    m = _DURATION.match(duration)
    if m is None:
        raise ValueError(f"not a duration: {duration!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def lineage_digest(uri: str) -> str:
    """The digest a copy goes by when its source version has none (not logged by agentctl)."""
    return "sha256:" + hashlib.sha256(uri.encode()).hexdigest()


def promoted_source(
    uri: str, digest: str, tags: Mapping[str, str], registry: str | None = None
) -> ResolvedSource:
    """The source of a version copied from ``uri`` (whose tags are ``tags``; in ``registry``
    when that is another one): no files, only its digest, lineage and what the copy carries."""
    return ResolvedSource(
        code_path="", config_path=None, code_ref=uri, config_ref=None, pip_requirements=(),
        digest=digest, promoted_from=uri, promoted_registry=registry,
        carried={k: v for k, v in tags.items() if kept_in_copy(k)},
    )  # fmt: skip


#: Agent -> gate name -> its measurement, for a promotion's analysis gates (None: not measured,
#: as in a plan, which measures nothing).
Measured = Mapping[str, Mapping[str, Measurement]]


@dataclass(frozen=True, slots=True)
class Candidate:
    """The version of the environment before that a promotion would bring in."""

    model: str
    number: int
    version: ObservedVersion
    since: float | None  # when it took the alias ``promotion.from`` (agentctl's record)


def steps_of(desired: Desired) -> tuple[DesiredEnvironment, DesiredEnvironment] | None:
    """(the environment of ``desired``, the one before it) for an environment after another."""
    env = environment_named(desired, desired.environment or "")
    if env is None or env.manifest.spec.after is None:
        return None
    previous = environment_named(desired, env.manifest.spec.after)
    assert previous is not None  # the loader keeps an environment only after a kept one
    return env, previous


def candidate_of(
    agent: str, env: DesiredEnvironment, previous: DesiredEnvironment, observed: RegistrySnapshot
) -> Candidate | str:
    """The candidate for ``agent``, or why there is none (in the registry of the environment
    before: ``observed.before``)."""
    rules = env.manifest.spec.promotion or Promotion()
    model_name = previous.manifest.model_of(agent)
    before = observed.before.models.get(model_name)
    if before is None:
        where = f" in {observed.upstream.location}" if observed.upstream is not None else ""
        return f"registered model '{model_name}'{where} does not exist yet"
    number = before.aliases.get(rules.from_)
    if number is None or number not in before.versions:
        return f"'{model_name}' has no alias '{rules.from_}'"
    version = before.versions[number]
    return Candidate(model_name, number, version, aliased_at(version.tags, rules.from_))


def promote(
    desired: Desired, observed: RegistrySnapshot, now: float, measured: Measured | None = None
) -> tuple[Desired, tuple[Step, ...]]:
    """``desired`` (one environment's, :func:`~.overlay.in_environment`) with each agent's
    ``current`` set to the version promotion gives it, and each agent's step; the desired state
    of a first environment, or of none, as it is. ``measured``: the analysis gates' measurements
    (None: not measured, and such a gate does not hold)."""
    pair = steps_of(desired)
    if pair is None:
        return desired, ()
    env, previous = pair
    agents: list[DesiredAgent] = []
    steps: list[Step] = []
    for agent in desired.agents:
        mine = measured.get(agent.name, {}) if measured is not None else None
        step = _step(agent, env, previous, observed, now, mine)
        steps.append(step)
        agents.append(_with_current(agent, step, observed))
    return replace(desired, agents=tuple(agents)), tuple(steps)


def _step(
    agent: DesiredAgent,
    env: DesiredEnvironment,
    previous: DesiredEnvironment,
    observed: RegistrySnapshot,
    now: float,
    measured: Mapping[str, Measurement] | None,
) -> Step:
    rules = env.manifest.spec.promotion or Promotion()
    here = observed.models.get(agent.model_name)
    base = Step(agent.name, env.name, previous.name, previous.manifest.model_of(agent.name), None,
                kept=_held(here, agent) or _newest_copy(here))  # fmt: skip
    found = candidate_of(agent.name, env, previous, observed)
    if isinstance(found, str):
        return replace(base, why=found)
    number, version = found.number, found.version
    uri = model_uri(found.model, number)
    gates: list[Gate] = []
    wait = None
    if rules.evaluation:
        verdict = record.read(version.tags)
        if verdict is None:
            gates.append(Gate("evaluation", False, f"no evaluation verdict recorded on {uri}"))
        elif not verdict.passed:
            gates.append(
                Gate("evaluation", False, f"{uri} failed its evaluation: {verdict.reason}")
            )
        else:
            gates.append(Gate("evaluation", True, f"{uri} passed its evaluation"))
    since = found.since
    if rules.soak is not None:
        need = seconds(rules.soak)
        if since is None:
            gates.append(Gate("soak", False, f"no record of when '{rules.from_}' moved to {uri} "
                              "(agentctl records it when it moves the alias)"))  # fmt: skip
        elif now - since >= need:
            gates.append(Gate("soak", True, f"'{rules.from_}' since {iso(since)} ({rules.soak})"))
        else:
            wait = need - (now - since)
            gates.append(Gate("soak", False, f"'{rules.from_}' since {iso(since)}: "
                              f"{_span(wait)} of {rules.soak} to go"))  # fmt: skip
    gates += [_analysis(g, measured, since) for g in rules.analysis]
    if rules.approval:
        decision = approval_of(version.tags, env.name)
        ask = f"agentctl approve {agent.name} --env {env.name} --version {number}"
        if decision is None:
            gates.append(Gate("approval", False, f"waiting for approval ({ask})"))
        else:
            who = f" by {decision.by}" if decision.by else ""
            when = f" at {iso(decision.at)}" if decision.at is not None else ""
            gates.append(Gate("approval", decision.approved, f"{decision.word}{who}{when}"))
    copied = _copy_of(here, uri, version.digest or lineage_digest(uri))
    return replace(base, candidate=number, gates=tuple(gates), copied=copied, wait=wait)


def _analysis(
    gate: AnalysisGate, measured: Mapping[str, Measurement] | None, since: float | None
) -> Gate:
    """An analysis gate of the step, judged as a rollout's is (min samples, max)."""
    name = f"analysis {gate.name}"
    if since is None:
        return Gate(name, False, "no record of when the version took the alias: not measured")
    if measured is None:
        return Gate(name, False, "not measured by a plan (apply and the controller measure it)")
    m = measured.get(gate.name)
    if m is None:
        return Gate(name, False, f"no {gate.source} source to measure it")
    rule = RolloutGate(gate.name, gate.max, gate.min_samples, gate.failure_limit, gate.min)
    verdict = judge(rule, m)
    value = "none" if m.value is None else f"{m.value:g}"
    shown = f"{gate.metric} {value} from {m.samples} samples"
    if verdict is Verdict.SUCCESSFUL:
        return Gate(name, True, f"{shown} since {iso(since)}")
    if verdict is Verdict.FAILED:
        return Gate(name, False, f"failed: {rule.missed(m.value or 0.0)} ({shown})")
    return Gate(name, False, f"inconclusive: {shown}, {gate.min_samples} needed")


def _span(seconds_: float) -> str:
    s = int(seconds_ + 0.999)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _copy_of(model: ObservedModel | None, uri: str, digest: str) -> int | None:
    """The version of ``model`` copied from ``uri`` with ``digest`` (its lineage and content: a
    model deleted and made again upstream reuses numbers for other content), if any."""
    if model is None:
        return None
    found = [v.number for v in model.versions.values()
             if v.tags.get(PROMOTED_FROM_TAG) == uri and v.digest == digest
             and v.status != FAILED]  # fmt: skip
    return min(found) if found else None


def _held(model: ObservedModel | None, agent: DesiredAgent) -> int | None:
    """The version the environment serves now: the one its aliases that name ``current`` hold
    (promoted, or logged here before the model joined the environment), if agentctl knows what
    it holds (a copy's lineage or a digest)."""
    if model is None:
        return None
    for alias, ref in sorted(agent.manifest.spec.aliases.items()):
        number = model.aliases.get(alias) if ref == CURRENT else None
        version = model.versions.get(number) if number is not None else None
        if (
            version is not None
            and version.status != FAILED
            and (version.tags.get(PROMOTED_FROM_TAG) or version.digest)
        ):
            return number
    return None


def _newest_copy(model: ObservedModel | None) -> int | None:
    if model is None:
        return None
    found = [v.number for v in model.versions.values()
             if v.tags.get(PROMOTED_FROM_TAG) and v.status != FAILED]  # fmt: skip
    return max(found) if found else None


def _with_current(agent: DesiredAgent, step: Step, observed: RegistrySnapshot) -> DesiredAgent:
    """``agent`` whose ``current`` is the candidate (when it comes in) or the version kept; with
    neither, an agent with nothing to serve yet (its registered model only)."""
    if step.ready and step.candidate is not None:
        source = observed.before.models[step.source_model].versions[step.candidate]
        uri = model_uri(step.source_model, step.candidate)
        digest = source.digest or lineage_digest(uri)
        at = observed.upstream.location if observed.upstream is not None else None
        return replace(agent, source=promoted_source(uri, digest, source.tags, at))
    here = observed.models.get(agent.model_name)
    if step.kept is not None and here is not None:
        kept = here.versions[step.kept]
        # A version logged here before (no lineage) stands for itself, by its digest.
        uri = kept.tags.get(PROMOTED_FROM_TAG) or model_uri(agent.model_name, step.kept)
        digest = kept.digest or lineage_digest(uri)
        at = kept.tags.get(PROMOTED_FROM_REGISTRY_TAG)
        return replace(agent, source=promoted_source(uri, digest, kept.tags, at))
    spec = agent.manifest.spec.model_copy(
        update={"versions": [], "aliases": {}, "serving": None, "rollout": None, "evaluation": None}
    )
    return replace(
        agent, manifest=agent.manifest.model_copy(update={"spec": spec}), evaluation=None
    )
