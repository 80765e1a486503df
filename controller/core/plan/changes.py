"""The plan as a value: ordered changes, each with action, before, after and reason. Pure data.

Borrowed from Terraform's ``internal/plans``: a plan is computed once, shown, and applied as
shown; it serialises to JSON with a format version, and reads back with :meth:`Plan.from_dict`.

Each change carries a typed payload before and after (Terraform's typed changes), one type per
kind: :class:`ModelState` (and :class:`ModelContents` for a model being deleted),
:class:`VersionCreate` / :class:`VersionState`, :class:`AliasTarget`, :class:`ServerState`,
:class:`TrafficSplit`, :class:`ShadowState` and :class:`RolloutRecord`. Apply, previews and
renderers read their attributes; ``to_dict`` / ``from_dict`` are the JSON form, lossless.
A value that apply will only learn (the number of a version it is about to create) is written as
``{"version": null, "digest": "sha256:…"}``: "known after apply".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from controller.core.diagnostics import Diagnostic, Diagnostics, Location, Severity
from controller.core.environment.step import Step
from controller.core.evaluation.spec import EvaluationSpec
from controller.core.plan.held import GatedVersion, HeldRollout
from controller.core.plan.views import AgentView, Share
from controller.core.prompt.binding import PromptPin
from controller.core.prompt.content import PromptContent

__all__ = [
    "FORMAT_VERSION",
    "PROMPT_KINDS",
    "SERVING_KINDS",
    "Action",
    "AgentView",
    "AliasTarget",
    "Change",
    "EvaluationRun",
    "Kind",
    "ModelContents",
    "ModelState",
    "Payload",
    "Pending",
    "Plan",
    "PromptPin",
    "PromptVersionCreate",
    "RolloutRecord",
    "RoutingState",
    "ServerState",
    "ShadowState",
    "Share",
    "Target",
    "TrafficSplit",
    "VersionCreate",
    "VersionState",
    "payload_type",
]

FORMAT_VERSION = "1"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    NOOP = "no-op"


class Kind(StrEnum):
    REGISTERED_MODEL = "registered_model"
    MODEL_VERSION = "model_version"
    ALIAS = "alias"
    SERVED_VERSION = "served_version"  # a model server for one version
    TRAFFIC = "traffic"  # the agent's route: version -> percent of live traffic
    SHADOW = "shadow"  # the version that receives copies of requests
    ROUTES = "routes"  # header routes to named versions, and conversation affinity
    ROLLOUT = "rollout"  # a canary rollout's state, recorded as registry tags on the model
    EVALUATION = "evaluation"  # a version evaluated on spec.evaluation, the verdict on its tags
    # kind: Prompt (MLflow's Prompt Registry): the prompt, its versions, its aliases. A prompt's
    # changes carry its document's name in ``Change.agent`` and the registered name in ``model``.
    PROMPT = "prompt"
    PROMPT_VERSION = "prompt_version"
    PROMPT_ALIAS = "prompt_alias"


#: The kinds a serving target carries out; the others are the registry's.
SERVING_KINDS = frozenset({Kind.SERVED_VERSION, Kind.TRAFFIC, Kind.SHADOW, Kind.ROUTES})
#: The kinds of a ``kind: Prompt`` document's changes: applied before any agent's, whose new
#: versions pin the prompt versions they make.
PROMPT_KINDS = frozenset({Kind.PROMPT, Kind.PROMPT_VERSION, Kind.PROMPT_ALIAS})


@dataclass(frozen=True, slots=True)
class Pending:
    """A version apply will create: its number is known after apply, its digest now."""

    digest: str


#: A resolved version: its registry number, or one that apply creates (known after apply).
Target = int | Pending


def _ref(target: Target) -> dict[str, Any]:
    """A version as plans write it: ``{"version": 3}``, or ``{"version": null, "digest": …}``."""
    if isinstance(target, Pending):
        return {"version": None, "digest": target.digest}
    return {"version": target}


# -- reading a payload back: strict, so that a hand-edited or truncated value is an error --------


def _obj(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"expected an object, not {data!r}")
    return data


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, not {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, not {value!r}")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    return _str(data[key]) if data.get(key) is not None else None


def _tags(value: Any) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in _obj(value).items()}


def _target(data: Mapping[str, Any]) -> Target:
    if data["version"] is None:
        return Pending(_str(data["digest"]))
    return _int(data["version"])


# -- the payloads: what each kind of change carries before and after -----------------------------


@dataclass(frozen=True, slots=True)
class ModelState:
    """A registered model's managed attributes: the tags agentctl manages (its inventory's keys),
    the description (None: the manifest leaves it alone) and, on create, its name."""

    tags: Mapping[str, str]
    description: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.name is None else {"name": self.name}
        out["tags"] = dict(self.tags)
        if self.description is not None:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ModelState:
        data = _obj(data)
        return cls(_tags(data["tags"]), _opt_str(data, "description"), _opt_str(data, "name"))


@dataclass(frozen=True, slots=True)
class ModelContents:
    """What a registered model holds as it is deleted: its versions and aliases."""

    name: str
    versions: tuple[int, ...] = ()
    aliases: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "versions": list(self.versions), "aliases": dict(self.aliases)}

    @classmethod
    def from_dict(cls, data: Any) -> ModelContents:
        data = _obj(data)
        return cls(
            _str(data["name"]),
            tuple(_int(v) for v in data["versions"]),
            tuple((_str(a), _int(v)) for a, v in _obj(data["aliases"]).items()),
        )


@dataclass(frozen=True, slots=True)
class VersionCreate:
    """A version apply logs and registers: the source it is logged from (paths relative to the
    root, pinned requirements, their digest), its tags and description. Its number is known
    after apply."""

    digest: str
    code: str
    config: str | None
    pip_requirements: tuple[str, ...]
    tags: Mapping[str, str]
    description: str | None = None
    #: The git commit the files are read at (a version whose source names a revision); None:
    #: the working tree.
    commit: str | None = None
    #: The agent's prompt bindings resolved (spec.prompts): pinned into the logged model config.
    prompts: tuple[PromptPin, ...] = ()
    #: The files' own digest when prompts are bound (``digest`` is then
    #: :func:`~controller.core.state.digest.bound_digest` over it and the pins); None: ``digest``.
    source_digest: str | None = None
    #: A promotion: the version is copied from this one (``models:/<model>/<version>``, also
    #: ``code``) with its tags and description, not logged from files.
    copy_from: str | None = None
    #: Where ``copy_from`` is when it is in another registry (the environment before lives on
    #: another tracking server or in another MLflow workspace): its files are copied over.
    copy_registry: str | None = None

    @property
    def target(self) -> Pending:
        return Pending(self.digest)

    @property
    def files_digest(self) -> str:
        """What the source files alone digest to (what apply's snapshot is checked against)."""
        return self.source_digest or self.digest

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": None,
            "digest": self.digest,
            "code": self.code,
            "config": self.config,
            "pip_requirements": list(self.pip_requirements),
            "tags": dict(self.tags),
        }
        if self.description is not None:
            out["description"] = self.description
        if self.commit is not None:
            out["commit"] = self.commit
        if self.prompts:
            out["prompts"] = [p.to_dict() for p in self.prompts]
            out["source_digest"] = self.source_digest
        if self.copy_from is not None:
            out["copy_from"] = self.copy_from
        if self.copy_registry is not None:
            out["copy_registry"] = self.copy_registry
        return out

    @classmethod
    def from_dict(cls, data: Any) -> VersionCreate:
        data = _obj(data)
        if data["version"] is not None:
            raise ValueError("a version to create has no number before apply")
        return cls(
            _str(data["digest"]),
            _str(data["code"]),
            _opt_str(data, "config"),
            tuple(_str(r) for r in data["pip_requirements"]),
            _tags(data["tags"]),
            _opt_str(data, "description"),
            _opt_str(data, "commit"),
            tuple(PromptPin.from_dict(_obj(p)) for p in data.get("prompts") or ()),
            _opt_str(data, "source_digest"),
            _opt_str(data, "copy_from"),
            _opt_str(data, "copy_registry"),
        )


@dataclass(frozen=True, slots=True)
class VersionState:
    """An existing version's managed tags and description (None: left alone)."""

    version: int
    tags: Mapping[str, str]
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "tags": dict(self.tags)}
        if self.description is not None:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Any) -> VersionState:
        data = _obj(data)
        return cls(_int(data["version"]), _tags(data["tags"]), _opt_str(data, "description"))


@dataclass(frozen=True, slots=True)
class PromptVersionCreate:
    """A prompt version apply registers: the template file's content (its digest identifies it;
    its number is known after apply), its tags and description; ``base`` is the version it
    follows (the one the first alias moving to it points at now, else the newest), with that
    version's content, for the plan's diff."""

    content: PromptContent
    template: str  # the template file, relative to the root
    tags: Mapping[str, str]
    description: str | None = None
    base: int | None = None
    base_content: PromptContent | None = None

    @property
    def digest(self) -> str:
        return self.content.digest

    @property
    def target(self) -> Pending:
        return Pending(self.digest)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": None,
            "digest": self.digest,
            "template": self.template,
            "content": self.content.to_dict(),
            "tags": dict(self.tags),
        }
        if self.description is not None:
            out["description"] = self.description
        if self.base is not None:
            out["base"] = self.base
            if self.base_content is not None:
                out["base_content"] = self.base_content.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PromptVersionCreate:
        data = _obj(data)
        if data["version"] is not None:
            raise ValueError("a version to create has no number before apply")
        content = PromptContent.from_dict(_obj(data["content"]))
        if content.digest != _str(data["digest"]):
            raise ValueError("the prompt's content does not have the digest the plan says")
        base = data.get("base")
        base_content = data.get("base_content")
        return cls(
            content,
            _str(data["template"]),
            _tags(data["tags"]),
            _opt_str(data, "description"),
            None if base is None else _int(base),
            None if base_content is None else PromptContent.from_dict(_obj(base_content)),
        )


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """The version an alias points to: a number, or the version this apply creates."""

    target: Target

    @property
    def pending(self) -> bool:
        return isinstance(self.target, Pending)

    def to_dict(self) -> dict[str, Any]:
        return _ref(self.target)

    @classmethod
    def from_dict(cls, data: Any) -> AliasTarget:
        return cls(_target(_obj(data)))


@dataclass(frozen=True, slots=True)
class ServerState:
    """A model server for one version of ``model``; ``ready`` is said only when it is what
    differs (a server that is up but not yet ready)."""

    target: Target
    model: str
    ready: bool | None = None

    @property
    def pending(self) -> bool:
        return isinstance(self.target, Pending)

    def to_dict(self) -> dict[str, Any]:
        out = {**_ref(self.target), "model": self.model}
        if self.ready is not None:
            out["ready"] = self.ready
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ServerState:
        data = _obj(data)
        ready = data.get("ready")
        if ready is not None and not isinstance(ready, bool):
            raise ValueError(f"expected true or false, not {ready!r}")
        return cls(_target(data), _str(data["model"]), ready)


@dataclass(frozen=True, slots=True)
class TrafficSplit:
    """An agent's route: (version, percent) pairs, numbered versions first, in order."""

    weights: tuple[tuple[Target, int], ...]

    @property
    def pending(self) -> bool:
        return any(isinstance(t, Pending) for t, _ in self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": [{**_ref(t), "percent": p} for t, p in self.weights]}

    @classmethod
    def from_dict(cls, data: Any) -> TrafficSplit:
        rows = _obj(data)["weights"]
        if not isinstance(rows, list):
            raise ValueError(f"expected a list of weights, not {rows!r}")
        return cls(tuple((_target(_obj(w)), _int(w["percent"])) for w in rows))


@dataclass(frozen=True, slots=True)
class ShadowState:
    """The version that receives copies of ``percent`` of requests (answers discarded)."""

    target: Target
    percent: int

    @property
    def pending(self) -> bool:
        return isinstance(self.target, Pending)

    def to_dict(self) -> dict[str, Any]:
        return {**_ref(self.target), "percent": self.percent}

    @classmethod
    def from_dict(cls, data: Any) -> ShadowState:
        data = _obj(data)
        return cls(_target(data), _int(data["percent"]))


@dataclass(frozen=True, slots=True)
class RoutingState:
    """What comes before an agent's weights: header routes, (header, value, version) tried in
    order, and conversation affinity (None: off; else the header and cookie that may carry a
    conversation id, besides the request body's)."""

    headers: tuple[tuple[str, str, Target], ...] = ()
    affinity: tuple[str | None, str | None] | None = None

    @property
    def pending(self) -> bool:
        return any(isinstance(t, Pending) for _, _, t in self.headers)

    @property
    def empty(self) -> bool:
        return not self.headers and self.affinity is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "headers": [{"header": h, "value": v, **_ref(t)} for h, v, t in self.headers]
        }
        if self.affinity is not None:
            out["affinity"] = {"header": self.affinity[0], "cookie": self.affinity[1]}
        return out

    @classmethod
    def from_dict(cls, data: Any) -> RoutingState:
        data = _obj(data)
        rows = data.get("headers") or []
        if not isinstance(rows, list):
            raise ValueError(f"expected a list of header routes, not {rows!r}")
        headers = tuple((_str(_obj(r)["header"]), _str(r["value"]), _target(r)) for r in rows)
        found = data.get("affinity")
        affinity = None
        if found is not None:
            found = _obj(found)
            affinity = (_opt_str(found, "header"), _opt_str(found, "cookie"))
        return cls(headers, affinity)


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A rollout's state as the registry tags that record it on the model."""

    tags: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.tags)

    @classmethod
    def from_dict(cls, data: Any) -> RolloutRecord:
        return cls(_tags(data))


@dataclass(frozen=True, slots=True)
class EvaluationRun:
    """A version to evaluate (``mlflow.genai.evaluate``) before an alias or traffic moves to
    it: the whole evaluation (rows, scorers, thresholds: what apply runs, as planned), and the
    champion it is compared with (the version it takes the place of) with the champion's
    figures when they are recorded for the same evaluation digest (else apply evaluates the
    champion too)."""

    target: Target
    spec: EvaluationSpec
    champion: int | None = None
    champion_figures: Mapping[str, float] | None = None

    @property
    def pending(self) -> bool:
        return isinstance(self.target, Pending)

    def describe(self, name: str) -> str:
        """``evaluate v4 on eval/q.jsonl (12 rows, pii_detection, answers)``."""
        version = "the new version" if isinstance(self.target, Pending) else f"v{self.target}"
        if isinstance(self.target, Pending) and name:
            version = f"{name} (known after apply)"
        versus = f", against v{self.champion}" if self.champion is not None else ""
        return f"evaluate {version} on {self.spec.describe()}{versus}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**_ref(self.target), "evaluation": self.spec.to_dict()}
        out["champion"] = self.champion
        if self.champion_figures is not None:
            out["champion_figures"] = dict(self.champion_figures)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationRun:
        data = _obj(data)
        champion = data.get("champion")
        figures = data.get("champion_figures")
        return cls(
            _target(data),
            EvaluationSpec.from_dict(_obj(data["evaluation"])),
            None if champion is None else _int(champion),
            None if figures is None else {_str(k): float(v) for k, v in _obj(figures).items()},
        )


Payload = (
    ModelState
    | ModelContents
    | VersionCreate
    | VersionState
    | AliasTarget
    | ServerState
    | TrafficSplit
    | ShadowState
    | RoutingState
    | RolloutRecord
    | EvaluationRun
    | PromptVersionCreate
)
P = TypeVar("P", bound=Payload)


def payload_type(kind: Kind, action: Action, after: bool) -> type[Payload]:
    """The payload a change of ``kind`` and ``action`` carries before (``after=False``) or after."""
    if kind in (Kind.REGISTERED_MODEL, Kind.PROMPT):
        return ModelContents if action is Action.DELETE and not after else ModelState
    if kind is Kind.MODEL_VERSION:
        return VersionCreate if action is Action.CREATE and after else VersionState
    if kind is Kind.PROMPT_VERSION:
        return PromptVersionCreate if action is Action.CREATE and after else VersionState
    return _PAYLOAD[kind]


_PAYLOAD: dict[Kind, type[Payload]] = {
    Kind.ALIAS: AliasTarget,
    Kind.PROMPT_ALIAS: AliasTarget,
    Kind.SERVED_VERSION: ServerState,
    Kind.TRAFFIC: TrafficSplit,
    Kind.SHADOW: ShadowState,
    Kind.ROUTES: RoutingState,
    Kind.ROLLOUT: RolloutRecord,
    Kind.EVALUATION: EvaluationRun,
}


@dataclass(frozen=True, slots=True)
class Change:
    agent: str
    model: str
    kind: Kind
    name: str  # the object within the agent: "", a version ref ("current", "3"), an alias name
    action: Action
    before: Payload | None
    after: Payload | None
    reason: str

    def __post_init__(self) -> None:
        for side, value in ((False, self.before), (True, self.after)):
            want = payload_type(self.kind, self.action, side)
            if value is not None and not isinstance(value, want):
                raise TypeError(
                    f"{self.address}: {'after' if side else 'before'} is a "
                    f"{type(value).__name__}, not a {want.__name__}"
                )

    @property
    def address(self) -> str:
        suffix = f".{self.name}" if self.name else ""
        return f"{self.agent}.{self.kind.value}{suffix}"

    def before_as(self, cls: type[P]) -> P:
        """The value before, which a change of this kind carries as ``cls``."""
        if not isinstance(self.before, cls):
            raise TypeError(f"{self.address}: no {cls.__name__} before the change")
        return self.before

    def after_as(self, cls: type[P]) -> P:
        """The value after, which a change of this kind carries as ``cls``."""
        if not isinstance(self.after, cls):
            raise TypeError(f"{self.address}: no {cls.__name__} after the change")
        return self.after

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "agent": self.agent,
            "model": self.model,
            "kind": self.kind.value,
            "name": self.name,
            "action": self.action.value,
            "before": self.before.to_dict() if self.before is not None else None,
            "after": self.after.to_dict() if self.after is not None else None,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        kind, action = Kind(data["kind"]), Action(data["action"])
        before, after = data["before"], data["after"]
        return cls(
            agent=_str(data["agent"]),
            model=_str(data["model"]),
            kind=kind,
            name=_str(data["name"]),
            action=action,
            before=None if before is None else payload_type(kind, action, False).from_dict(before),
            after=None if after is None else payload_type(kind, action, True).from_dict(after),
            reason=_str(data["reason"]),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    owner: str
    changes: tuple[Change, ...] = ()
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    agents: tuple[str, ...] = ()
    unchanged: int = 0  # objects compared and found as desired
    views: tuple[AgentView, ...] = ()
    #: Rollouts the controller will not move on by itself (failed, aborted, paused until
    #: promoted): the manifest asks for what apply will not reach.
    held: tuple[HeldRollout, ...] = ()
    #: Rollouts under way (a timed pause, gates measured, a scale-down delay): pending work.
    rolling: tuple[HeldRollout, ...] = ()
    #: Versions that failed their evaluation: the aliases and traffic the manifest gives them
    #: are withheld.
    gated: tuple[GatedVersion, ...] = ()
    #: The ``kind: Prompt`` documents planned (their metadata.name).
    prompts: tuple[str, ...] = ()
    #: The environment planned (``--env``; None: the manifests as written), and each agent's
    #: promotion into it from the environment before (none for a first environment).
    environment: str | None = None
    promotions: tuple[Step, ...] = ()

    @property
    def waiting(self) -> tuple[Step, ...]:
        """Promotions whose candidate waits for a gate."""
        return tuple(s for s in self.promotions if s.waits)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def reached(self) -> bool:
        """What the manifests ask for is reached: no change pending, no rollout held or under
        way (``plan --detailed-exitcode`` exits 2 otherwise)."""
        return (
            not self.changes
            and not self.held
            and not self.rolling
            and not self.gated
            and not self.waiting
        )

    @property
    def has_errors(self) -> bool:
        return self.diagnostics.has_errors

    def summary(self) -> dict[str, int]:
        """Terraform's "N to add, N to change, N to destroy", and how many versions are
        evaluated."""
        objects = [c for c in self.changes if c.kind is not Kind.EVALUATION]
        add = sum(c.action in (Action.CREATE, Action.REPLACE) for c in objects)
        change = sum(c.action is Action.UPDATE for c in objects)
        destroy = sum(c.action in (Action.DELETE, Action.REPLACE) for c in objects)
        evaluate = len(self.changes) - len(objects)
        return {"add": add, "change": change, "destroy": destroy, "evaluate": evaluate}

    def for_agent(self, agent: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.agent == agent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "owner": self.owner,
            "summary": self.summary(),
            "unchanged": self.unchanged,
            "agents": list(self.agents),
            "prompts": list(self.prompts),
            "changes": [c.to_dict() for c in self.changes],
            "views": [v.to_dict() for v in self.views],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "held_rollouts": [h.to_dict() for h in self.held],
            "rollouts_in_progress": [h.to_dict() for h in self.rolling],
            "failed_evaluations": [g.to_dict() for g in self.gated],
            **({"environment": self.environment} if self.environment is not None else {}),
            **({"promotions": [p.to_dict() for p in self.promotions]} if self.promotions else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"plan format {data.get('format_version')!r} is not {FORMAT_VERSION!r}"
            )
        diags = []
        for d in data.get("diagnostics", []):
            loc = Location(d["file"], d["line"], d["column"] or 1) if d.get("file") else None
            diags.append(
                Diagnostic(
                    Severity(d["severity"]),
                    d["message"],
                    loc,
                    d.get("field") or "",
                    d.get("agent") or "",
                )
            )
        return cls(
            owner=data["owner"],
            changes=tuple(Change.from_dict(c) for c in data["changes"]),
            diagnostics=Diagnostics.of(diags),
            agents=tuple(data.get("agents", ())),
            unchanged=int(data.get("unchanged", 0)),
            views=tuple(AgentView.from_dict(v) for v in data.get("views", ())),
            held=tuple(HeldRollout.from_dict(h) for h in data.get("held_rollouts", ())),
            rolling=tuple(HeldRollout.from_dict(h) for h in data.get("rollouts_in_progress", ())),
            gated=tuple(GatedVersion.from_dict(g) for g in data.get("failed_evaluations", ())),
            prompts=tuple(data.get("prompts", ())),
            environment=data.get("environment"),
            promotions=tuple(Step.from_dict(p) for p in data.get("promotions", ())),
        )
