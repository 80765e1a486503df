"""The manifest schema: ``apiVersion: agentctl.io/v1alpha1``, ``kind: Agent``. Pure data: no I/O.

Field names in YAML are camelCase (``registeredModel``); Python attributes are snake_case.
Unknown fields are errors, values are not coerced across types (``percent: "10"`` is an error),
and every model is frozen. Rules that span fields (traffic sums to 100, references resolve) live
in :mod:`controller.core.manifest.checks`, so that they can name the exact field that is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from controller.core.manifest.base import _Model
from controller.core.manifest.schema_evaluation import (
    DatasetRef,
    Evaluation,
    ScorerName,
    ScorerRef,
    Threshold,
)

__all__ = [
    "API_VERSION",
    "CURRENT",
    "KIND",
    "MODEL_NAME_PATTERN",
    "PROMPT_BINDING_PATTERN",
    "RESERVED_TAG_PREFIX",
    "VERSION_NAME_PATTERN",
    "Affinity",
    "AgentManifest",
    "AgentSpec",
    "Analysis",
    "AnalysisGate",
    "CanaryRef",
    "DatasetRef",
    "EntrySource",
    "Evaluation",
    "GatewayRef",
    "HeaderMatch",
    "HeaderRoute",
    "KubernetesServing",
    "Metadata",
    "MlflowConnection",
    "Resources",
    "Rollout",
    "RolloutStep",
    "ScorerRef",
    "Serving",
    "ServingDefaults",
    "ServingDefaultsSpec",
    "ShadowTarget",
    "Source",
    "Threshold",
    "TrafficTarget",
    "VersionEntry",
    "VersionName",
    "VersionRef",
    "seconds",
]

API_VERSION = "agentctl.io/v1alpha1"
KIND = "Agent"
#: The version built from ``spec.source``, whatever number the registry gives it.
CURRENT = "current"
#: Tags under this prefix are written by agentctl itself; manifests may not set them.
RESERVED_TAG_PREFIX = "agentctl.io/"

# A DNS-1123 label, so that an agent's name is also a valid Kubernetes object name and label.
AgentName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]
# A DNS-1123 subdomain: Kubernetes object names (Gateways, Secrets).
K8sName = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253
    ),
]
EnvName = Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=253)]
ResourceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9]([-./a-zA-Z0-9]*)$")]
# A Kubernetes quantity: 500m, 1Gi, 2, 1.5
Quantity = Annotated[
    str,
    StringConstraints(
        pattern=r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]i?|Ki)?$"
    ),
]
Hostname = Annotated[
    str,
    StringConstraints(
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    ),
]
#: A registered model name is served as ``models:/<name>/<version>`` (``mlflow models serve``
#: parses it as a URL), moved as ``models:/<name>@<alias>`` and sent in registry requests, so it
#: may not hold: '/' and ':' (MLflow refuses them), '?', '#' and '%' (a URL's query, fragment and
#: escapes), '@' (the alias separator), whitespace, control characters or invisible format
#: characters (a URL parser strips them). Everything else MLflow takes stays valid: letters in
#: any script, digits, '.', '_', '-', quotes (Unity Catalog's ``catalog.schema.model`` too).
MODEL_NAME_PATTERN = (
    r"^[^/:?#@%\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]+$"
)
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN, max_length=256)]
# MLflow's own alias rule (``[\w-]``), less the reserved ``latest`` and ``v<N>`` (checked in checks).
AliasName = Annotated[str, StringConstraints(pattern=r"^[\w\-]+$", max_length=255)]
# MLflow's tag-key rule: slashes, alphanumerics, underscores, periods, dashes and spaces.
TagKey = Annotated[str, StringConstraints(pattern=r"^[/\w.\- ]+$", max_length=250)]
TagValue = Annotated[str, StringConstraints(max_length=5000)]
Percent = Annotated[int, Field(ge=0, le=100, strict=True)]
VersionNumber = Annotated[int, Field(ge=1, strict=True)]
#: The pattern of a version's name: ``current`` (spec.source's version) or a name declared in
#: spec.versions with a source of its own (a DNS label that starts with a letter).
VERSION_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
VersionName = Annotated[str, StringConstraints(pattern=VERSION_NAME_PATTERN, max_length=63)]
#: A registry version number, or a name: ``current`` (the version whose content digest is that of
#: spec.source) or a version declared in spec.versions with a source of its own.
VersionRef = VersionNumber | VersionName

#: An agent's prompt binding: ``<prompt>@<alias>`` or ``<prompt>/<version>`` (MLflow's
#: ``prompts:/<prompt>@<alias>`` and ``prompts:/<prompt>/<version>`` without the scheme).
PROMPT_BINDING_PATTERN = r"^[a-zA-Z0-9_.-]+(@[\w\-]+|/[1-9][0-9]*)$"
PromptBinding = Annotated[str, StringConstraints(pattern=PROMPT_BINDING_PATTERN, max_length=512)]
#: The name an agent's code reads a bound prompt by (a key of the model config's ``prompts``).
BindingName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=100)
]

ALIAS_RESERVED = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)


class Metadata(_Model):
    """The document's identity."""

    name: AgentName = Field(
        description="The agent's name: a DNS label (lowercase letters, digits, '-'; at most 63), "
        "unique in the desired state; also the default registered model name and the prefix of "
        "its Kubernetes objects."
    )
    labels: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        description="Labels for people and tools reading the manifest; agentctl does not use them.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Notes for people and tools reading the manifest; agentctl does not use them.",
    )


class Source(_Model):
    """Where the agent's code lives, relative to the manifest file."""

    code: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="Python file that calls mlflow.models.set_model() (MLflow models from code)."
    )
    config: str | None = Field(
        default=None, description="Model config file (YAML or JSON) passed as model_config."
    )
    pip_requirements: list[str] | str = Field(
        description="Pinned requirements (name==version), or the path of a requirements file."
    )


class EntrySource(_Model):
    """A named version's own source: each field unset is spec.source's."""

    code: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None, description="Python file that calls mlflow.models.set_model(); unset: "
        "spec.source.code.",
    )  # fmt: skip
    config: str | None = Field(
        default=None, description="Model config file (YAML or JSON); unset: spec.source.config."
    )
    pip_requirements: list[str] | str | None = Field(
        default=None,
        description="Pinned requirements, or the path of a requirements file; unset: "
        "spec.source.pipRequirements.",
    )
    revision: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="A git revision (commit, tag, branch) of the manifests' repository: the "
        "files are read as they are at that revision, not from the working tree.",
    )


class VersionEntry(_Model):
    """A version the agent keeps: a registry number, ``current`` (built from spec.source), or a
    name with a source of its own."""

    version: VersionRef = Field(
        description="A registry version number; 'current' (the version built from spec.source); "
        "or a name (a lowercase label) for a version built from this entry's source."
    )
    source: EntrySource | None = Field(
        default=None,
        description="Only for a named version: its source, field by field over spec.source.",
    )
    description: str | None = Field(
        default=None, description="The model version's description; unset leaves it alone."
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        description="Tags set on the model version; those agentctl set and the manifest no "
        "longer has are deleted, others are left alone.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `- 3` and `- current` are shorthands for `- version: 3`.
        if isinstance(data, int | str) and not isinstance(data, bool):
            return {"version": data}
        return data


class _VersionOrAlias(_Model):
    """A version by number (or 'current'), or by alias: exactly one of them."""

    version: VersionRef | None = Field(
        default=None,
        description="A version declared in spec.versions (or 'current'); give this or alias.",
    )
    alias: AliasName | None = Field(
        default=None, description="An alias declared in spec.aliases; give this or version."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> _VersionOrAlias:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        return self

    @property
    def ref(self) -> str:
        return f"alias {self.alias}" if self.alias is not None else f"version {self.version}"


class _Target(_VersionOrAlias):
    percent: Percent = Field(description="The share of requests, 0 to 100.")


class TrafficTarget(_Target):
    """One share of live traffic: a version (by number, 'current' or alias) and its percent; the
    percents of spec.serving.traffic sum to 100."""


class ShadowTarget(_Target):
    """A version that receives a copy of ``percent`` of requests; its answers are discarded."""


#: An HTTP header name (RFC 9110 token, letters, digits and '-'), compared case-insensitively.
HeaderName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$", max_length=128)
]
#: A header value to match exactly: visible ASCII and spaces, no leading/trailing space.
HeaderValue = Annotated[
    str, StringConstraints(pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$", max_length=256)
]
#: A cookie name (RFC 6265 token).
CookieName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=128)
]


class HeaderMatch(_Model):
    """Requests whose ``header`` is exactly ``value``."""

    header: HeaderName = Field(description="The header's name (case-insensitive).")
    value: HeaderValue = Field(description="The header's value, matched exactly.")


class HeaderRoute(HeaderMatch, _VersionOrAlias):
    """Requests matching a header go to a named version whatever the weights (Argo Rollouts'
    setHeaderRoute): a tester's user id, or ``x-agent-version: canary``. The version is served
    even at 0 % of the split."""


class Affinity(_Model):
    """Keep each conversation on one version: a request's conversation id is read from the
    ResponsesAgent request's ``context.conversation_id`` (or the OpenAI request's
    ``conversation``), else from ``header``, else from ``cookie``; requests without one are split
    by weight. Conversations are spread over the versions by weight (stateless hashing): a
    change of weights moves only the conversations it must."""

    header: HeaderName | None = Field(
        default=None, description="A header that carries the conversation id, e.g. x-session-id."
    )
    cookie: CookieName | None = Field(
        default=None, description="A cookie that carries the conversation id."
    )


class GatewayRef(_Model):
    """The Gateway an agent's HTTPRoute attaches to (Gateway API ``parentRefs``)."""

    name: K8sName = Field(description="The Gateway's name.")
    namespace: K8sName | None = Field(
        default=None, description="Defaults to the namespace agentctl serves in."
    )
    section_name: K8sName | None = Field(default=None, description="A listener of the Gateway.")


class MlflowConnection(_Model):
    """How model servers in the cluster reach MLflow to load ``models:/<name>/<version>``."""

    tracking_uri: str | None = Field(default=None, description="Set as MLFLOW_TRACKING_URI.")
    secret: K8sName | None = Field(
        default=None,
        description="A Secret whose keys become environment variables (MLFLOW_TRACKING_URI, "
        "MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD...).",
    )


class Resources(_Model):
    """The model server container's resources (Kubernetes requests and limits)."""

    requests: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="Resource requests, e.g. {cpu: 500m, memory: 1Gi}."
    )
    limits: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="Resource limits, e.g. {memory: 2Gi}."
    )


class KubernetesServing(_Model):
    """How ``--target kubernetes`` serves the agent; unset fields take agentctl's defaults."""

    image: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None,
        description="Model server image; it must have mlflow and the agent's deps. Default: "
        "ghcr.io/mlflow/mlflow:v3.17.2.",
    )
    replicas: Annotated[int, Field(ge=0, le=1000, strict=True)] | None = Field(
        default=None,
        description="Pods per served version (default 1; at least 1 with router gateway); with "
        "router service, the agent's total, split by the traffic percents.",
    )
    resources: Resources | None = Field(
        default=None, description="Taken whole from the agent, else from ServingDefaults."
    )
    env: dict[EnvName, str] = Field(
        default_factory=dict,
        description="Environment variables of the model server; merged over ServingDefaults' "
        "(the agent's keys win).",
    )
    mlflow: MlflowConnection | None = Field(
        default=None, description="How the model servers reach MLflow; taken whole."
    )
    gateway: GatewayRef | None = Field(
        default=None,
        description="The Gateway the HTTPRoute attaches to (router gateway). Default: the "
        "Gateway 'agentctl' in the serving namespace.",
    )
    hostnames: list[Hostname] = Field(
        default_factory=list,
        max_length=16,
        description="The HTTPRoute's hostnames (at most 16); none: every hostname the Gateway "
        "listener takes.",
    )
    router: Literal["auto", "gateway", "service"] | None = Field(
        default=None,
        description="gateway: a Gateway API HTTPRoute (weighted backendRefs, RequestMirror). "
        "service: one Service over the versions, the split approximated by replica ratio "
        "(replicas is then the agent's total), no shadow. auto (the default): gateway where the "
        "cluster serves the Gateway API, else service.",
    )


Duration = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"),
]


def seconds(duration: str) -> float:
    """``"90s"``, ``"5m"``, ``"1.5h"``, ``"500ms"`` -> seconds."""
    number, unit = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", duration).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


class CanaryRef(_Model):
    """The version a rollout brings in: by alias or by number (or ``current``)."""

    version: VersionRef | None = Field(
        default=None, description="A declared version (or 'current'); give this or alias."
    )
    alias: AliasName | None = Field(
        default=None, description="An alias declared in spec.aliases; give this or version."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        return self

    def resolve(self, aliases: Mapping[str, VersionRef]) -> VersionRef | None:
        """The version it names, through ``aliases`` (None: an undeclared alias)."""
        return aliases.get(self.alias) if self.alias is not None else self.version


class RolloutStep(_Model):
    """One step of a rollout: the canary's share of traffic, and how long it is held."""

    weight: Annotated[int, Field(ge=0, le=100, strict=True)] = Field(
        description="The canary's percent of traffic at this step (1 to 100; a first step may "
        "be 0 with a headerRoute); weights increase and the last step is 100."
    )
    pause: Duration | None = Field(
        default=None, description="How long at this weight; unset: until `agentctl promote`."
    )


class AnalysisGate(_Model):
    """A metric of the canary, measured every interval: an error rate or a latency that must
    stay at or under ``max``, or (``source: scorers``) the pass rate of a scorer of
    spec.evaluation on the canary's live answers, which must stay at or over ``min``."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] = Field(
        description="The gate's name, unique in the rollout (a DNS label)."
    )
    metric: Literal["errorRate", "latencyP50", "latencyP95", "latencyP99", "passRate"] = Field(
        description="errorRate: the ratio of failed requests; latencyP50/P95/P99: a latency "
        "percentile, in milliseconds (both take max); passRate: the share of the canary's "
        "answers a scorer passes (source: scorers; takes min)."
    )
    source: Literal["traces", "prometheus", "router", "scorers"] = Field(
        default="traces",
        description="traces: the canary version's MLflow traces; prometheus: `query`; router: "
        "the local router's per-version metrics; scorers: `scorer` run on a sample of the "
        "canary's traces (each result logged on its trace as feedback).",
    )
    max: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="The most the canary may show: a ratio (errorRate) or milliseconds "
        "(latency). Required for those metrics; not for passRate.",
    )
    min: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None,
        description="The least pass rate (0 to 1) the canary must keep: passRate only, where "
        "it is required.",
    )
    scorer: ScorerName | None = Field(
        default=None,
        description="source: scorers only: the name of a scorer listed in "
        "spec.evaluation.scorers, run on the canary's (and the stable's) traces.",
    )
    sample: Annotated[int, Field(ge=1, le=1000, strict=True)] | None = Field(
        default=None,
        description="source: scorers only: the most traces one measurement scores (the "
        "newest since the step began; a trace already scored is not scored again). Default: "
        "50; at least minSamples.",
    )
    min_samples: Annotated[int, Field(ge=1, strict=True)] = Field(
        default=20,
        description="Fewer requests than this is inconclusive and holds the step (not for "
        "prometheus).",
    )
    failure_limit: Annotated[int, Field(ge=1, strict=True)] = Field(
        default=1, description="This many failed measurements roll the canary back."
    )
    query: str | None = Field(
        default=None, description="PromQL with {{version}} for the canary's number (prometheus)."
    )


class Analysis(_Model):
    """The gates a rollout measures, and how often."""

    interval: Duration = Field(
        default="1m",
        description="How often the gates are measured (e.g. 30s, 5m, 1h). Default: 1m.",
    )
    gates: list[AnalysisGate] = Field(min_length=1, description="At least one gate.")


class Rollout(_Model):
    """A canary that walks its steps by itself and rolls back when a gate fails."""

    canary: CanaryRef = Field(description="The version the rollout brings in.")
    promote_alias: AliasName = Field(
        description="The alias that moves to the canary once the last step is done."
    )
    steps: list[RolloutStep] = Field(
        min_length=1, max_length=20, description="1 to 20 steps of increasing weight, the last 100."
    )
    analysis: Analysis | None = Field(
        default=None, description="Gates that roll the canary back; unset: no automatic analysis."
    )
    header_route: HeaderMatch | None = Field(
        default=None,
        description="While the rollout runs, requests matching this header go to the canary, "
        "whatever its weight (Argo Rollouts' setHeaderRoute); with a first step of weight 0, "
        "testers reach the canary before any weighted traffic does.",
    )
    scale_down_delay: Duration = Field(
        default="30s", description="How long the old version keeps serving after promotion."
    )


class Serving(_Model):
    """How the agent's versions are served: the traffic split, a shadow, Kubernetes settings."""

    traffic: list[TrafficTarget] = Field(
        min_length=1,
        description="The split of live traffic over versions; the percents sum to 100 and each "
        "version or alias appears once.",
    )
    shadow: ShadowTarget | None = Field(
        default=None,
        description="A version that gets a copy of some requests (router gateway or local).",
    )
    routes: list[HeaderRoute] = Field(
        default_factory=list,
        max_length=15,
        description="Header routes, tried in order before the weights: a request matching one "
        "goes to its version (at most 15, a rollout's headerRoute included).",
    )
    affinity: Affinity | None = Field(
        default=None,
        description="Keep a conversation on one version while that version takes traffic.",
    )
    kubernetes: KubernetesServing | None = Field(
        default=None,
        description="Settings for --target kubernetes, over ServingDefaults' and agentctl's.",
    )


class AgentSpec(_Model):
    """What the agent is: its registered model, the versions it keeps (from source, or pinned
    by number), its aliases and how it is served. It names something to manage: source, a
    version, or (registry-only) registeredModel, description or tags."""

    registered_model: ModelName | None = Field(
        default=None, description="MLflow registered model name; defaults to metadata.name."
    )
    description: str | None = Field(
        default=None, description="Registered model description; unset leaves it alone."
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        description="Registered model tags; those agentctl set and the manifest no longer has are "
        "deleted, others are left alone. Keys under agentctl.io/ are reserved.",
    )
    adopt: bool = Field(
        default=False,
        description="Take over a registered model that exists but is not managed by agentctl.",
    )
    source: Source | None = Field(
        default=None,
        description="The agent's code: logged as the version 'current' when its content digest "
        "is not registered yet.",
    )
    versions: list[VersionEntry] = Field(
        default_factory=list,
        description="The versions the agent keeps, for aliases and traffic to name: 'current' "
        "(from spec.source), names with a source of their own, or registry numbers; '- 3' and "
        "'- current' are shorthands.",
    )
    aliases: dict[AliasName, VersionRef] = Field(
        default_factory=dict,
        description="Registry aliases -> a declared version (or 'current'); those agentctl set "
        "and the manifest no longer has are deleted. 'latest' and v<N> are reserved.",
    )
    serving: Serving | None = Field(
        default=None, description="How the versions are served; unset: registry only."
    )
    rollout: Rollout | None = Field(
        default=None,
        description="A progressive canary towards the traffic declared (needs spec.serving).",
    )
    evaluation: Evaluation | None = Field(
        default=None,
        description="A quality gate each version passes before an alias or traffic moves to it.",
    )
    prompts: dict[BindingName, PromptBinding] = Field(
        default_factory=dict,
        description="Prompts of MLflow's Prompt Registry the agent's code reads: name -> "
        "<prompt>@<alias> or <prompt>/<version>. Resolved to a version number when a version is "
        "logged and pinned into its model config (prompts: {name: prompts:/<prompt>/<n>}); the "
        "resolved prompt contents are part of the version's digest, so a prompt change makes a "
        "new agent version.",
    )


class ServingDefaultsSpec(_Model):
    """The settings every agent takes where its own spec.serving does not set them."""

    kubernetes: KubernetesServing | None = Field(
        default=None, description="Kubernetes serving settings under each agent's own."
    )


class ServingDefaults(_Model):
    """``kind: ServingDefaults``: serving settings for every agent of the desired state, under
    each agent's own ``spec.serving``. At most one per desired state."""

    api_version: Literal["agentctl.io/v1alpha1"] = Field(description="agentctl.io/v1alpha1.")
    kind: Literal["ServingDefaults"] = Field(description="ServingDefaults.")
    metadata: Metadata = Field(description="The document's name.")
    spec: ServingDefaultsSpec = Field(description="The defaults.")


class AgentManifest(_Model):
    """``kind: Agent``: one LLM agent packaged as an MLflow model, its versions, aliases and
    serving."""

    api_version: Literal["agentctl.io/v1alpha1"] = Field(description="agentctl.io/v1alpha1.")
    kind: Literal["Agent"] = Field(description="Agent.")
    metadata: Metadata = Field(description="The agent's name (and labels agentctl ignores).")
    spec: AgentSpec = Field(description="What to register and serve.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def model_name(self) -> str:
        return self.spec.registered_model or self.metadata.name
