"""The seams between orchestration and the outside world: one small Protocol each.

Adapters (``controller.adapters``) implement them; tests may pass in-memory fakes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec
from controller.core.evaluation.verdict import ScorerFigures
from controller.core.plan.changes import Change
from controller.core.plan.preview import ObjectPreview
from controller.core.prompt.content import PromptContent
from controller.core.rollout.gates import Measurement
from controller.core.state.logged import LoggedSnapshot
from controller.core.state.observed import ObservedVersion, RegistrySnapshot, ServingSnapshot

__all__ = [
    "Clock",
    "EvalOutcome",
    "EvalRequest",
    "EvalTarget",
    "Evaluator",
    "EventSink",
    "GateQuery",
    "MetricProvider",
    "Previewer",
    "Registry",
    "Scoring",
    "ServingBackend",
    "ServingTarget",
    "SourceHistory",
    "SystemClock",
    "TraceReader",
    "TrafficRouter",
    "VersionSource",
]


@dataclass(frozen=True, slots=True)
class VersionSource:
    """What to log as a new version: absolute paths and pinned requirements. At apply time the
    paths are those of a snapshot whose content has this digest (:mod:`controller.engine.snapshot`);
    ``code_ref`` is the code file as the repository names it, for messages."""

    agent: str
    code_path: str
    config_path: str | None
    pip_requirements: tuple[str, ...]
    digest: str
    code_ref: str = ""
    owner: str = ""  # tagged on the run and the logged model (what `gc` goes by)
    written_by: str = ""  # ``agentctl <version>``, tagged on the run and the logged model
    #: The agent's bound prompts, resolved: binding key -> ``prompts:/<prompt>/<n>``; merged
    #: into the logged model config under ``prompts`` and linked to the logged model.
    prompts: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The code file for messages: as the repository names it, else its path."""
        return self.code_ref or self.code_path


class SourceHistory(Protocol):
    """The files of the manifests' repository as they were at a revision (git). Both methods
    raise :class:`LookupError`, with a message for the manifest's author, when they cannot."""

    def commit(self, root: str, revision: str) -> str:
        """The commit ``revision`` names in the repository that holds ``root``."""
        ...

    def read(self, root: str, commit: str, path: str, limit: int) -> bytes:
        """The regular file ``path`` (relative to ``root``) at ``commit``, of at most ``limit``
        bytes."""
        ...


class Registry(Protocol):
    """A model registry. Every method raises :class:`~controller.core.errors.BackendError` on failure."""

    def observe(self) -> RegistrySnapshot:
        """All registered models with their tags, aliases and versions, and (apart) every
        prompt of the Prompt Registry with its versions, in bulk."""
        ...

    def create_model(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        """Create it; succeed if it already exists with the same owner tag (a retried create)."""
        ...

    def set_model_tag(self, name: str, key: str, value: str) -> None: ...

    def delete_model_tag(self, name: str, key: str) -> None:
        """Delete it; succeed if it is already gone."""
        ...

    def set_model_description(self, name: str, description: str) -> None: ...

    def delete_model(self, name: str) -> None: ...

    def find_version(self, name: str, digest: str) -> int | None:
        """The number of a usable version of ``name`` logged from ``digest``, if any."""
        ...

    def log_version(
        self,
        name: str,
        source: VersionSource,
        tags: Mapping[str, str],
        description: str | None,
    ) -> int:
        """Log the source as a model and register it as a new version; return its number.
        A create sent without an answer raises :class:`~controller.core.errors.OutcomeUnknown`:
        the version may exist, now or later."""
        ...

    def copy_version(
        self, name: str, source: str, tags: Mapping[str, str], from_registry: str | None = None
    ) -> int:
        """Register a new version of ``name`` copied from ``source`` (``models:/<model>/<n>``,
        MLflow's ``copy_model_version`` convention): its source is that URI, its run, tags and
        description the source version's (its agentctl create attempt left out), ``tags`` over
        them; return its number. ``from_registry``: ``source`` is in that other registry (the
        upstream this adapter was built with, by its location): its files are copied into a new
        logged model here, which is the version's source."""
        ...

    def versions_with_digest(self, name: str, digest: str) -> list[ObservedVersion]:
        """Every usable version of ``name`` logged from ``digest``, lowest number first."""
        ...

    def delete_version(self, name: str, version: int) -> None:
        """Delete it; succeed if it is already gone."""
        ...

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None: ...

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        """Delete it; succeed if it is already gone."""
        ...

    def set_version_description(self, name: str, version: int, description: str) -> None: ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None:
        """Delete it; succeed if it is already gone."""
        ...

    # Prompts (MLflow's Prompt Registry): registered models tagged as prompts. Their tags,
    # aliases, versions' tags and deletion go through the methods above.

    def create_prompt(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        """Create the prompt; succeed if it already exists with the same owner tag (a retried
        create)."""
        ...

    def create_prompt_version(
        self,
        name: str,
        content: PromptContent,
        tags: Mapping[str, str],
        description: str | None,
    ) -> int:
        """Register ``content`` as a new version of prompt ``name``; return its number. A create
        sent without an answer raises :class:`~controller.core.errors.OutcomeUnknown`."""
        ...

    def prompt_versions(self, name: str) -> list[ObservedVersion]:
        """Every version of prompt ``name``, lowest number first (empty if it does not
        exist)."""
        ...

    def observe_logged(self) -> LoggedSnapshot:
        """Every active run and logged model in agentctl's experiments, in bulk."""
        ...

    def delete_logged_model(self, model_id: str) -> None:
        """Delete it; succeed if it is already gone."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Delete it; succeed if it is already gone."""
        ...

    # The registry lock (:mod:`controller.core.state.lock`): registered models used as records.

    def create_lock(self, name: str, tags: Mapping[str, str]) -> bool:
        """Create registered model ``name`` with ``tags``; False if it exists (exclusive)."""
        ...

    def read_lock(self, name: str) -> Mapping[str, str] | None:
        """The tags of registered model ``name``; None if there is none."""
        ...

    def rename_lock(self, name: str, new_name: str) -> bool:
        """Rename it; False if ``name`` is gone or ``new_name`` exists (exclusive)."""
        ...


class ServingBackend(Protocol):
    """Where served versions run (local processes, a cluster). Raises BackendError on failure."""

    def observe(self) -> ServingSnapshot:
        """Every served agent: its servers (ready or not) and its route, in one read. Reading
        starts nothing: with nothing running, the snapshot is empty."""
        ...

    def start_version(self, agent: str, model: str, version: int) -> str:
        """Serve ``models:/<model>/<version>`` for ``agent`` and return once it is ready; return
        its address. Leave a ready server of that version alone; replace one of another model."""
        ...

    def stop_version(self, agent: str, version: int) -> None:
        """Let requests in flight finish, then stop it; succeed if it is already gone."""
        ...


class TrafficRouter(Protocol):
    """Argo Rollouts' traffic-router protocol, one implementation per serving target."""

    def set_weights(self, agent: str, model: str, weights: Mapping[int, int]) -> None:
        """Route live traffic by version -> percent. Requests in flight are not dropped."""
        ...

    def verify_weight(self, agent: str, weights: Mapping[int, int]) -> bool:
        """Whether the live route says what :meth:`set_weights` set, read back from where the
        router keeps it (Argo Rollouts' ``VerifyWeight``); False while it has not caught up."""
        ...

    def set_mirror(self, agent: str, shadow: tuple[int, int] | None) -> None:
        """Copy ``percent`` of requests to ``version`` (answers discarded); None stops it."""
        ...

    def set_routing(
        self,
        agent: str,
        headers: Sequence[tuple[str, str, int]],
        affinity: tuple[str | None, str | None] | None,
    ) -> None:
        """What comes before the weights: header routes (header, value, version), tried in
        order (Argo Rollouts' ``SetHeaderRoute``), and conversation affinity ((header, cookie)
        that may carry a conversation id; None: off). Empty and None clear them."""
        ...

    def remove_route(self, agent: str) -> None:
        """Stop routing to the agent; succeed if it has no route."""
        ...


class ServingTarget(ServingBackend, TrafficRouter, Protocol):
    """A serving backend with its traffic router: what ``apply`` drives for ``spec.serving``."""


@runtime_checkable
class Previewer(Protocol):
    """A serving target that can dry-run its writes (server-side), to show and check them."""

    def preview(self, changes: Sequence[Change]) -> list[ObjectPreview]:
        """What ``changes`` would write, per object; raise what the writes would raise."""
        ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The process's own clock: what every Clock defaults to outside tests."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class EventSink(Protocol):
    """Where the controller reports what it saw and did, beside its log (Kubernetes Events)."""

    def event(self, agent: str, reason: str, message: str, warning: bool = False) -> None:
        """Record one event about ``agent`` ("" for the controller itself). Never raises: a
        report that cannot be made is logged, and reconciling goes on."""
        ...


@dataclass(frozen=True, slots=True)
class GateQuery:
    """One gate to measure for a canary: ``metric`` (errorRate, latencyP50/P95/P99, passRate)
    of version ``version`` of ``model``, over what it served since ``since`` (Unix seconds)."""

    agent: str
    model: str
    version: int
    model_id: str  # the logged model behind the version ("m-..."), "" if the registry has none
    metric: str
    since: float
    query: str | None = None  # PromQL, for a prometheus gate
    #: A scorers gate: what to score with and on how many traces, the stable version to compare
    #: with, and what the results logged on the traces say they are from.
    scoring: Scoring | None = None


@dataclass(frozen=True, slots=True)
class Scoring:
    """What a ``source: scorers`` gate needs beyond the canary: its scorer (a code scorer's file
    is relative to ``root``), the most traces one measurement scores, the stable version (its
    number and logged model, "" if none) scored for comparison, and the gate's name and the
    rollout's step, kept on each result logged."""

    scorer: ScorerSpec
    root: str
    sample: int
    gate: str
    step: int
    stable: int | None = None
    stable_model_id: str = ""


class MetricProvider(Protocol):
    """Where a gate's evidence comes from: MLflow traces, Prometheus, the local router."""

    def measure(self, q: GateQuery) -> Measurement:
        """The metric and the number of samples it rests on (``Measurement(None, 0)``: no
        data). Raises BackendError when the source cannot be read."""
        ...


class TraceReader(Protocol):
    """A registry that can read the traces its served versions write (MLflow tracing)."""

    def traces(
        self, model: str, model_id: str, since_ms: int, limit: int
    ) -> list[tuple[str, float]]:
        """(state ``OK`` / ``ERROR``, duration in ms) of each trace of logged model ``model_id``
        (in ``model``'s experiment) that started after ``since_ms``; at most ``limit``."""
        ...


@dataclass(frozen=True, slots=True)
class EvalTarget:
    """What one evaluation predicts with: a registered version (``model`` and ``version``; its
    logged model ``model_id`` gets the metrics), or a source that is not registered
    (``source``: ``agentctl eval`` on a pull request's working tree)."""

    label: str  # for messages: "v4", "current (working tree)"
    model: str = ""
    version: int | None = None
    model_id: str = ""
    source: VersionSource | None = None


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """Evaluate each target on ``spec``'s dataset with its scorers. Code scorers' files are
    relative to ``root``; ``experiment`` names the MLflow experiment of the evaluation runs."""

    agent: str
    root: str
    spec: EvaluationSpec
    targets: tuple[EvalTarget, ...]
    experiment: str = ""
    owner: str = ""  # tagged on the evaluation runs


@dataclass(frozen=True, slots=True)
class EvalOutcome:
    """One target's evaluation: its MLflow run and each scorer's figures."""

    target: EvalTarget
    run_id: str
    figures: Mapping[str, ScorerFigures]


class Evaluator(Protocol):
    """Runs ``mlflow.genai.evaluate`` for an agent's versions, never in agentctl's own process
    (the agent's code and the code scorers run in a child)."""

    def evaluate(self, request: EvalRequest) -> list[EvalOutcome]:
        """One outcome per target, in order. Raises
        :class:`~controller.core.errors.EvaluationError` (naming the agent and the dataset or
        scorer) when the evaluation cannot be made for a reason in the repository, and
        :class:`~controller.core.errors.BackendError` when the tracking server fails."""
        ...
