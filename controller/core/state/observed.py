"""What the registry holds, and what is being served, as frozen snapshots. Pure data: no I/O.

Adapters build it from bulk reads (one paged search per kind), never one call per agent.
Mappings inside are not to be mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.core.state.cluster import ClusterState

__all__ = [
    "AGENT_TAG",
    "ATTEMPT_TAG",
    "COMMIT_TAG",
    "DEFAULT_OWNER",
    "DIGEST_TAG",
    "ENVIRONMENT_TAG",
    "LOGGED_MODEL_TAG",
    "MANAGED_ALIASES_TAG",
    "MANAGED_TAGS_TAG",
    "OWNER_TAG",
    "PROMPT_TAG",
    "SOURCE_TAG",
    "WRITTEN_BY_TAG",
    "AgentServing",
    "ObservedModel",
    "ObservedVersion",
    "RegistrySnapshot",
    "ServedVersion",
    "ServingSnapshot",
    "Upstream",
    "experiment_name",
    "logged_model_of",
]

#: On a registered model: which agentctl instance owns it. Absent: not managed.
OWNER_TAG = "agentctl.io/owner"
#: The owner id agentctl writes when none is given (``--owner``, ``AGENTCTL_OWNER``).
DEFAULT_OWNER = "agentctl"
#: On a registered model: the agent (metadata.name) it belongs to.
AGENT_TAG = "agentctl.io/agent"
#: On a prompt: the Prompt document (metadata.name) it belongs to.
PROMPT_TAG = "agentctl.io/prompt"
#: On a version copied by a promotion: the logged model behind it (``m-...``), which its source
#: (``models:/<model>/<version>``) names only through the version it was copied from.
LOGGED_MODEL_TAG = "agentctl.io/logged-model"
#: On a registered model: the environment (kind: Environment) it is an agent's model in; none
#: for a model reconciled without --env. A prune in one environment never reaches another's.
ENVIRONMENT_TAG = "agentctl.io/environment"
#: On a model or version: the tag keys agentctl set from the manifest (its inventory), comma-separated.
MANAGED_TAGS_TAG = "agentctl.io/managed-tags"
#: On a registered model: the aliases agentctl set (its inventory), comma-separated.
MANAGED_ALIASES_TAG = "agentctl.io/managed-aliases"
#: On a version: the git commit its files were read at (a revision's, or the working tree's HEAD).
COMMIT_TAG = "agentctl.io/commit"
#: On a version: the content digest of the source it was logged from.
DIGEST_TAG = "agentctl.io/source-digest"
#: On a version: the id of the create attempt that registered it (one per request sent), so that
#: an apply can tell the versions it made from another's, a retried or late-committed create too.
ATTEMPT_TAG = "agentctl.io/create-attempt"
#: On a version: the code file it was logged from, relative to the repository root.
SOURCE_TAG = "agentctl.io/source-code"
#: On a model or version agentctl created or changed: ``agentctl <version>`` of the last write.
#: Written at apply time, never planned: it is no drift, and a newer agentctl rewrites nothing
#: just to change it (it is set again only along with a change).
WRITTEN_BY_TAG = "agentctl.io/written-by"


def experiment_name(model: str) -> str:
    """The MLflow experiment that holds an agent's logged models and its served versions' traces."""
    return f"/agentctl/{model}"


def _inventory(tags: Mapping[str, str], key: str) -> frozenset[str]:
    """The names listed, comma-separated, in an inventory tag (MANAGED_TAGS_TAG and the like)."""
    return frozenset(x for x in tags.get(key, "").split(",") if x)


READY = "READY"
FAILED = "FAILED_REGISTRATION"


def logged_model_of(source: str) -> str:
    """The logged model id a ``models:/m-...`` source names ("" for any other source)."""
    if source.startswith("models:/"):
        rest = source[len("models:/") :].strip("/")
        if rest.startswith("m-") and "/" not in rest:
            return rest
    return ""


@dataclass(frozen=True, slots=True)
class ObservedVersion:
    number: int
    status: str = READY
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    run_id: str | None = None
    #: When it was registered (epoch seconds; None: not known).
    created: float | None = None

    @property
    def digest(self) -> str | None:
        return self.tags.get(DIGEST_TAG)

    @property
    def model_id(self) -> str:
        """The logged model behind the version (its traces carry this id): ``source`` is
        ``models:/m-...``, or (a promotion's copy, whose source names the version it was copied
        from) the one :data:`LOGGED_MODEL_TAG` names; "" for a version registered from a run's
        artifacts."""
        return logged_model_of(self.source) or self.tags.get(LOGGED_MODEL_TAG, "")

    def inventory(self, key: str) -> frozenset[str]:
        return _inventory(self.tags, key)


@dataclass(frozen=True, slots=True)
class ObservedModel:
    name: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, int] = field(default_factory=dict)
    versions: Mapping[int, ObservedVersion] = field(default_factory=dict)

    @property
    def owner(self) -> str | None:
        return self.tags.get(OWNER_TAG)

    def inventory(self, key: str) -> frozenset[str]:
        return _inventory(self.tags, key)

    def version_with_digest(self, digest: str) -> ObservedVersion | None:
        """The lowest-numbered usable version logged from the source with this digest."""
        hits = [v for v in self.versions.values() if v.digest == digest and v.status != FAILED]
        return min(hits, key=lambda v: v.number) if hits else None


@dataclass(frozen=True, slots=True)
class Upstream:
    """The registry of the environment before, when it is another (tracking server or MLflow
    workspace): what it holds, and where it is, as a plan shows it (never with credentials)."""

    snapshot: RegistrySnapshot
    location: str


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Registered models, and (apart: model searches leave them out) the prompts of MLflow's
    Prompt Registry, each a registered model whose versions hold a template in their tags."""

    models: Mapping[str, ObservedModel] = field(default_factory=dict)
    prompts: Mapping[str, ObservedModel] = field(default_factory=dict)
    #: The registry of the environment before, when it is another one (None: this one).
    upstream: Upstream | None = None

    @property
    def before(self) -> RegistrySnapshot:
        """What the environment before holds: the upstream registry's snapshot, or this."""
        return self.upstream.snapshot if self.upstream is not None else self

    def agents(self, owner: str, environment: str | None = None) -> dict[str, ObservedModel]:
        """Agent -> the registered model ``owner`` manages for it in ``environment`` (None: the
        models reconciled without one): another owner's models, unmanaged ones and other
        environments' are not there (whatever their agent tag says)."""
        return {
            m.tags.get(AGENT_TAG, m.name): m
            for m in sorted(self.models.values(), key=lambda m: m.name)
            if m.owner == owner and m.tags.get(ENVIRONMENT_TAG) == environment
        }

    def others(self, agent: str, owner: str) -> dict[str, str]:
        """Model -> owner of the models other owners manage for ``agent`` (for a message that
        says why ``owner`` has none)."""
        return {
            m.name: m.owner
            for m in sorted(self.models.values(), key=lambda m: m.name)
            if m.owner is not None and m.owner != owner and m.tags.get(AGENT_TAG, m.name) == agent
        }


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """One served version: ``models:/<model>/<version>``.

    ``status`` says why it is not ready (empty: the target gives no reason); ``outdated`` why it
    does not run as the manifest now asks (empty: it does, or the target cannot tell), filled in
    by the planner from what the target read.
    """

    version: int
    model: str
    ready: bool = True
    restarts: int = 0
    url: str = ""
    status: str = ""
    outdated: str = ""


@dataclass(frozen=True, slots=True)
class AgentServing:
    """An agent's serving as the target reports it: its servers and its route.

    ``weights`` maps version -> percent of live traffic (empty: no route); ``shadow`` is the
    (version, percent) that receives copies of requests, if any; ``headers`` and ``affinity``
    what comes before the weights. ``route_outdated`` says why the
    route does not carry what the manifest asks for beyond its weights and shadow (empty: it does).
    """

    agent: str
    model: str
    versions: Mapping[int, ServedVersion] = field(default_factory=dict)
    weights: Mapping[int, int] = field(default_factory=dict)
    shadow: tuple[int, int] | None = None
    route_outdated: str = ""
    #: Header routes (header, value, version), tried in order before the weights.
    headers: tuple[tuple[str, str, int], ...] = ()
    #: Conversation affinity: (header, cookie) that may carry a conversation id; None: off.
    affinity: tuple[str | None, str | None] | None = None


@dataclass(frozen=True, slots=True)
class ServingSnapshot:
    """Every agent a serving target serves, from one read. ``endpoint`` is where callers go.

    A Kubernetes target also reports the objects it read (``cluster``): the planner decides from
    them, and the desired settings, which servers and routes are outdated
    (:func:`controller.core.plan.kube_outdated.mark_outdated`)."""

    agents: Mapping[str, AgentServing] = field(default_factory=dict)
    endpoint: str = ""
    cluster: ClusterState | None = None
