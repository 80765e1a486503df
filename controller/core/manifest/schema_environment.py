"""The manifest schema of ``kind: Environment``: one stage of a promotion path (dev -> staging ->
prod), where each agent lives there and what a version must pass to enter it. Pure data.

An environment does not copy the agents' manifests: it names where each agent's registered model
is (a naming rule), its serving settings, and per agent an overlay of the fields that may
differ between environments (as a Kustomize overlay does for Flux and Argo CD). The first
environment (no ``after``) logs versions from source; every later one only takes the version the
environment before it serves under ``promotion.from``, once the step's gates hold, by copying it
(MLflow's ``copy_model_version`` convention: its source is ``models:/<model>/<version>``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from controller.core.manifest.base import _Model
from controller.core.manifest.schema import (
    AgentName,
    AliasName,
    AnalysisGate,
    Duration,
    K8sName,
    KubernetesServing,
    Metadata,
    ModelName,
    Rollout,
    Serving,
    TagKey,
    TagValue,
    VersionRef,
)

__all__ = [
    "DEFAULT_MODEL_RULE",
    "ENVIRONMENT_KIND",
    "MODEL_RULE_PATTERN",
    "OVERLAY_FIELDS",
    "AgentOverlay",
    "EnvironmentManifest",
    "EnvironmentServing",
    "EnvironmentSpec",
    "Promotion",
]

ENVIRONMENT_KIND = "Environment"
#: Where an agent's registered model is, unless the environment says otherwise.
DEFAULT_MODEL_RULE = "{agent}-{env}"
#: A naming rule: a registered model name with ``{agent}`` and ``{env}`` placeholders.
MODEL_RULE_PATTERN = r"^([^{}]|\{agent\}|\{env\})+$"
ModelRule = Annotated[
    str, StringConstraints(pattern=MODEL_RULE_PATTERN, min_length=1, max_length=256)
]


class Promotion(_Model):
    """What a version must pass in the environment before this one to enter this one."""

    from_: AliasName = Field(
        default="champion",
        alias="from",
        description="The alias, in the environment before, whose version is promoted.",
    )
    evaluation: bool = Field(
        default=True,
        description="The version's evaluation verdict (spec.evaluation) must be recorded and "
        "passed. Default true.",
    )
    soak: Duration | None = Field(
        default=None,
        description="How long the version must have held the alias in the environment before "
        "(e.g. 30m, 1h).",
    )
    analysis: list[AnalysisGate] = Field(
        default_factory=list,
        description="Gates measured on the version in the environment before, since it took "
        "the alias `from` (as a rollout's analysis gates: traces, router or prometheus); each "
        "must hold.",
    )
    approval: bool = Field(
        default=False,
        description="A person must approve the version for this environment (agentctl approve "
        "AGENT --env NAME).",
    )


class EnvironmentServing(_Model):
    """Where and how this environment serves (over ServingDefaults and the agents' own)."""

    namespace: K8sName | None = Field(
        default=None, description="The Kubernetes namespace (over --namespace)."
    )
    kubernetes: KubernetesServing | None = Field(
        default=None, description="Kubernetes settings for every agent of the environment."
    )


class AgentOverlay(_Model):
    """The fields of an agent that may differ in this environment: each replaces the agent's
    own (a mapping field is merged key by key, as a strategic merge patch does)."""

    registered_model: ModelName | None = Field(
        default=None, description="The agent's registered model here (over the naming rule)."
    )
    description: str | None = Field(default=None, description="The model's description.")
    tags: dict[TagKey, TagValue] | None = Field(
        default=None, description="Tags on the model (merged over the agent's)."
    )
    aliases: dict[AliasName, VersionRef] | None = Field(
        default=None, description="Aliases (merged over the agent's)."
    )
    serving: Serving | None = Field(default=None, description="Serving (replaces the agent's).")
    rollout: Rollout | None = Field(default=None, description="Rollout (replaces the agent's).")


#: The agent fields an environment may override, as written in YAML.
OVERLAY_FIELDS = tuple(f.alias or n for n, f in AgentOverlay.model_fields.items())


class EnvironmentSpec(_Model):
    """One environment of the promotion path."""

    after: AgentName | None = Field(
        default=None,
        description="The environment versions come from; none: the first, which logs them from "
        "source.",
    )
    registered_model: ModelRule = Field(
        default=DEFAULT_MODEL_RULE,
        description="Each agent's registered model here: {agent} and {env} are replaced (e.g. "
        "{agent}-{env}, or main.{env}.{agent} in Unity Catalog style).",
    )
    tracking_uri: str | None = Field(
        default=None,
        description="The MLflow tracking URI of this environment (over MLFLOW_TRACKING_URI; "
        "a --tracking-uri flag wins); its credentials come from the environment, never from "
        "here. A promotion from an environment on another server copies the version's files.",
    )
    workspace: K8sName | None = Field(
        default=None,
        description="The MLflow workspace this environment lives in (mlflow server "
        "--enable-workspaces; over MLFLOW_WORKSPACE).",
    )
    serving: EnvironmentServing | None = Field(
        default=None, description="Serving settings of this environment."
    )
    promotion: Promotion | None = Field(
        default=None, description="The gates of the step into this environment (needs after)."
    )
    agents: dict[AgentName, AgentOverlay] = Field(
        default_factory=dict, description="Per agent, the fields that differ here."
    )


class EnvironmentManifest(_Model):
    """A ``kind: Environment`` document."""

    api_version: Literal["agentctl.io/v1alpha1"] = Field(description="agentctl.io/v1alpha1.")
    kind: Literal["Environment"] = Field(description="Environment.")
    metadata: Metadata = Field(description="The environment's name (dev, staging, prod...).")
    spec: EnvironmentSpec = Field(
        default_factory=EnvironmentSpec,
        description="Where the agents live here, and how they get here (all optional).",
    )

    @property
    def name(self) -> str:
        return self.metadata.name

    def model_of(self, agent: str) -> str:
        """The registered model of ``agent`` here."""
        overlay = self.spec.agents.get(agent)
        if overlay is not None and overlay.registered_model:
            return overlay.registered_model
        return self.spec.registered_model.replace("{agent}", agent).replace("{env}", self.name)

    def overlay(self, agent: str) -> dict[str, Any]:
        """The fields ``agent``'s overlay sets, as written (camelCase), without registeredModel."""
        found = self.spec.agents.get(agent)
        if found is None:
            return {}
        out = found.model_dump(by_alias=True, exclude_unset=True, mode="json")
        out.pop("registeredModel", None)
        return out
