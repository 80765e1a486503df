"""Evaluate a working tree's candidates without registering them (``agentctl eval``, for a pull
request): per agent that has ``spec.evaluation``, its ``current`` version as the working tree
holds it (``spec.source``, loaded from source in the evaluator's child), beside its champion
(:mod:`controller.core.evaluation.champion`).

The champion's figures are the ones recorded on it for the same evaluation digest when there
are (no agent code runs for them), the candidate's own when the champion was logged from the
same source (the same code: evaluated once), else it is evaluated in the same
:class:`~controller.ports.Evaluator` call as the candidate. Nothing is written to the registry;
the evaluator logs its runs (and the champion's metrics on its logged model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.core.evaluation.champion import Champion, champion
from controller.core.evaluation.record import read
from controller.core.evaluation.report import NO_EVALUATION, AgentEvaluation, EvalReport, compare
from controller.core.evaluation.spec import EvaluationSpec
from controller.core.evaluation.verdict import ScorerFigures
from controller.core.manifest.desired import Desired, DesiredAgent
from controller.core.state.observed import ObservedModel, RegistrySnapshot, experiment_name
from controller.ports import EvalOutcome, EvalRequest, EvalTarget, Evaluator, VersionSource

__all__ = ["evaluate_candidates", "model_of"]


def model_of(agent: DesiredAgent, observed: RegistrySnapshot, owner: str) -> ObservedModel | None:
    """The registered model ``owner`` manages for the agent (or one ``adopt: true`` would take
    over); None: nothing registered that it may compare with."""
    model = observed.models.get(agent.model_name)
    if model is None:
        return None
    if model.owner == owner or (model.owner is None and agent.manifest.spec.adopt):
        return model
    return None


@dataclass(frozen=True, slots=True)
class _Work:
    """One agent's evaluation, before the evaluator is called."""

    agent: DesiredAgent
    spec: EvaluationSpec
    model: ObservedModel | None
    champion: Champion | None
    candidate: EvalTarget
    champion_target: EvalTarget | None  # None: its figures are known without evaluating it
    champion_figures: Mapping[str, float] | None
    champion_run: str
    champion_from: str


def _plan(agent: DesiredAgent, spec: EvaluationSpec, model: ObservedModel | None,
          owner: str, written_by: str) -> _Work | str:  # fmt: skip
    """What to evaluate for the agent; a string: why it is not evaluated."""
    src = agent.source
    if src is None:
        return "no spec.source: nothing in the working tree to evaluate"
    if src.commit is not None:
        return f"spec.source is read at git revision {src.revision or src.commit}"
    # Bound prompts already registered are pinned as apply would pin them; when one is not (a
    # template edited in the working tree), none is: the agent reads its working-tree prompts.
    registered = all(p.version is not None for p in src.pins)
    prompts = {p.key: p.uri(p.version) for p in src.pins if p.version is not None}
    candidate = EvalTarget(
        label=f"current (working tree, {src.code_ref})",
        source=VersionSource(
            agent.name, src.code_path, src.config_path, src.pip_requirements, src.digest,
            src.code_ref, owner, written_by, prompts if registered else {},
        ),
    )  # fmt: skip
    champ = champion(agent.manifest, model)
    if champ is None or model is None:
        return _Work(agent, spec, model, None, candidate, None, None, "", "")
    version = model.versions[champ.version]
    recorded = read(version.tags)
    if recorded is not None and recorded.digest == spec.digest:
        return _Work(agent, spec, model, champ, candidate, None, recorded.figures,
                     recorded.run_id, "recorded")  # fmt: skip
    if version.digest == src.digest:
        return _Work(agent, spec, model, champ, candidate, None, None, "", "same source")
    target = EvalTarget(
        label=f"v{champ.version}", model=model.name, version=champ.version,
        model_id=version.model_id,
    )  # fmt: skip
    return _Work(agent, spec, model, champ, candidate, target, None, "", "evaluated")


def evaluate_candidates(
    desired: Desired,
    observed: RegistrySnapshot,
    evaluator: Callable[[], Evaluator],
    *,
    owner: str,
    scope: Mapping[str, str] | None = None,
    written_by: str = "",
) -> EvalReport:
    """Evaluate each agent in ``scope`` (None: every agent) that has ``spec.evaluation``, one
    agent after another; ``evaluator`` is built only if there is something to evaluate. Raises
    what the evaluator raises (EvaluationError, BackendError): a pull request's evaluation is
    all or nothing."""
    skipped: list[tuple[str, str]] = []
    work: list[_Work] = []
    for agent in desired.agents:
        if scope is not None and agent.name not in scope:
            continue
        if agent.evaluation is None:
            skipped.append((agent.name, NO_EVALUATION))
            continue
        model = model_of(agent, observed, owner)
        planned = _plan(agent, agent.evaluation, model, owner, written_by)
        if isinstance(planned, str):
            skipped.append((agent.name, planned))
        else:
            work.append(planned)
    if not work:
        return EvalReport((), tuple(skipped))
    runner = evaluator()
    done = [_evaluate(w, runner, desired.root, owner, (scope or {}).get(w.agent.name, ""))
            for w in work]  # fmt: skip
    return EvalReport(tuple(done), tuple(skipped))


def _evaluate(w: _Work, runner: Evaluator, root: str, owner: str, why: str) -> AgentEvaluation:
    targets = (w.candidate,) + ((w.champion_target,) if w.champion_target else ())
    request = EvalRequest(
        agent=w.agent.name, root=root, spec=w.spec, targets=targets,
        experiment=experiment_name(w.agent.model_name), owner=owner,
    )  # fmt: skip
    outcomes = runner.evaluate(request)
    if len(outcomes) != len(targets):
        raise AssertionError(f"the evaluator gave {len(outcomes)} outcomes for {len(targets)}")
    mine: EvalOutcome = outcomes[0]
    champion_figures, champion_run = w.champion_figures, w.champion_run
    if w.champion_target is not None:
        theirs = outcomes[1]
        champion_figures, champion_run = _figures(theirs.figures), theirs.run_id
    elif w.champion_from == "same source":
        champion_figures, champion_run = _figures(mine.figures), mine.run_id
    checks, verdict = compare(w.spec, mine.figures, champion_figures)
    return AgentEvaluation(
        agent=w.agent.name, model=w.agent.model_name, dataset=w.spec.describe(),
        candidate=w.candidate.label, candidate_run=mine.run_id, champion=w.champion,
        champion_run=champion_run, champion_from=w.champion_from, checks=checks,
        verdict=verdict, scope=why,
    )  # fmt: skip


def _figures(figures: Mapping[str, ScorerFigures]) -> dict[str, float]:
    return {name: f.figure for name, f in figures.items()}
