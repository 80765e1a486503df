"""The planner's evaluation rows: which versions are evaluated before an alias or traffic moves
to them, against which champion, and which are withheld for a failed verdict. Pure.

Every version the manifest gives a position (an alias, a share of traffic, the shadow, a
rollout's canary) is evaluated once per evaluation digest (the dataset's rows, the scorers, the
thresholds: :mod:`controller.core.evaluation.spec`): a version this apply registers, and a
registered version whose recorded evaluation (:mod:`controller.core.evaluation.record`) was made
for other inputs, or never. A version recorded as failed for the current digest is **gated**:
the planner moves no alias and no traffic to it (what it already holds stays), and the plan
reports it as needing attention until its source or spec.evaluation changes.

The **champion** a candidate is compared with (``maxDrop``) is the version it takes the place
of, by the rule of :mod:`controller.core.evaluation.champion` (the one ``agentctl eval`` uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from controller.core.evaluation import record
from controller.core.evaluation.champion import champion as champion_of
from controller.core.evaluation.spec import EvaluationSpec
from controller.core.manifest.desired import DesiredAgent
from controller.core.manifest.schema import VersionRef
from controller.core.plan.changes import Action, EvaluationRun, Kind, Payload, Pending
from controller.core.plan.held import GatedVersion
from controller.core.state.observed import ObservedModel

__all__ = ["plan_evaluations", "positioned"]

ChangeFn = Callable[[Kind, str, Action, Payload | None, Payload | None, str], None]


def positioned(agent: DesiredAgent) -> list[VersionRef]:
    """The version references the manifest gives a position, in declaration order: aliases,
    traffic, shadow, the rollout's canary (an alias resolved to its version)."""
    spec = agent.manifest.spec
    refs: list[VersionRef] = list(spec.aliases.values())
    targets = []
    if spec.serving is not None:
        targets = [*spec.serving.traffic, *((spec.serving.shadow,) if spec.serving.shadow else ())]
    for t in targets:
        ref = spec.aliases.get(t.alias) if t.alias is not None else t.version
        if ref is not None:
            refs.append(ref)
    if spec.rollout is not None:
        ref = spec.rollout.canary.resolve(spec.aliases)
        if ref is not None:
            refs.append(ref)
    return list(dict.fromkeys(refs))


def recorded_for(model: ObservedModel | None, number: int, digest: str) -> record.Recorded | None:
    """The evaluation recorded on version ``number`` for evaluation ``digest``, if any."""
    if model is None or number not in model.versions:
        return None
    found = record.read(model.versions[number].tags)
    return found if found is not None and found.digest == digest else None


def plan_evaluations(
    agent: DesiredAgent,
    model: ObservedModel | None,
    resolved: Mapping[VersionRef, int | Pending],
    change: ChangeFn,
) -> dict[int, GatedVersion]:
    """Plan an evaluation for each positioned version without a verdict for the current
    evaluation digest; return the gated versions (failed for it), by number."""
    spec = agent.evaluation
    if spec is None:
        return {}
    found_champion = champion_of(agent.manifest, model)
    champion = found_champion.version if found_champion is not None else None
    champion_figures = None
    if champion is not None:
        found = recorded_for(model, champion, spec.digest)
        champion_figures = dict(found.figures) if found is not None else None
    gated: dict[int, GatedVersion] = {}
    todo: list[tuple[str, int | Pending]] = []
    seen: set[int | Pending] = set()
    for ref in positioned(agent):
        target = resolved.get(ref)
        if target is None or target in seen:
            continue  # in error (reported elsewhere), or named twice
        seen.add(target)
        if isinstance(target, int):
            found = recorded_for(model, target, spec.digest)
            if found is not None:
                if not found.passed:
                    gated[target] = GatedVersion(agent.name, target, found.reason, found.run_id)
                continue
        elif _carried(agent, ref, spec.digest):
            continue  # a promotion's copy: it carries the verdict its source was evaluated to
        todo.append((str(ref), target))
    # The champion first: its figures, once made, are the ones the others are compared with.
    todo.sort(key=lambda item: item[1] != champion)
    for name, target in todo:
        versus = champion if champion != target else None
        _evaluate(name, target, spec, versus, champion_figures if versus else None, change)
    return gated


def _carried(agent: DesiredAgent, ref: VersionRef, digest: str) -> bool:
    """Whether ``ref`` is a version promoted in whose source's verdict was made for ``digest``."""
    source = agent.source_of(ref)
    if source is None or source.promoted_from is None:
        return False
    found = record.read(source.carried)
    return found is not None and found.digest == digest


def _evaluate(
    name: str,
    target: int | Pending,
    spec: EvaluationSpec,
    champion: int | None,
    champion_figures: Mapping[str, float] | None,
    change: ChangeFn,
) -> None:
    run = EvaluationRun(target, spec, champion, champion_figures)
    why = (
        "a new version is evaluated before it gets an alias or traffic"
        if isinstance(target, Pending)
        else "no evaluation is recorded for the current dataset, scorers and thresholds"
    )
    change(Kind.EVALUATION, name, Action.CREATE, None, run, why)


def gated_targets(gated: Mapping[int, GatedVersion], targets: Iterable[object]) -> bool:
    """Whether any of ``targets`` is a gated version."""
    return any(isinstance(t, int) and t in gated for t in targets)
