"""The manifest schema of ``kind: Prompt``: a prompt of MLflow's Prompt Registry, its template
(a file in the repository), its versions, aliases and tags. Pure data.

Field names follow the Agent's (:mod:`controller.core.manifest.schema`): ``current`` is the
version made from the template as it is in the repository, numbers pin versions the registry
already holds, aliases name one of them, tags and description are managed as for models and
ownership is the same (a prompt agentctl does not own is never written; ``adopt`` takes one
over).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from controller.core.manifest.base import _Model
from controller.core.manifest.schema import (
    AliasName,
    Metadata,
    TagKey,
    TagValue,
)

__all__ = [
    "PROMPT_KIND",
    "PROMPT_NAME_PATTERN",
    "PromptManifest",
    "PromptModelConfig",
    "PromptSpec",
    "PromptVersionEntry",
    "PromptVersionRef",
]

PROMPT_KIND = "Prompt"
#: MLflow's rule for a prompt's name (``mlflow.prompt.constants.PROMPT_NAME_RULE``).
PROMPT_NAME_PATTERN = r"^[a-zA-Z0-9_.-]+$"
PromptName = Annotated[str, StringConstraints(pattern=PROMPT_NAME_PATTERN, max_length=256)]
#: A variable of a template, as MLflow finds them: ``{{ name }}`` or ``{{ a.b }}``.
VariableName = Annotated[
    str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*$")
]
#: A registry version number, or ``current`` (the template as it is in the repository).
PromptVersionRef = Annotated[int, Field(ge=1, strict=True)] | Literal["current"]


class PromptModelConfig(_Model):
    """The model settings stored with each version (MLflow's ``PromptModelConfig``): for the
    code that calls the LLM with this prompt; agentctl only records them."""

    provider: str | None = Field(default=None, description="The LLM provider, e.g. openai.")
    model_name: str | None = Field(default=None, description="The model, e.g. gpt-4o-mini.")
    temperature: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Sampling temperature (at least 0)."
    )
    max_tokens: Annotated[int, Field(gt=0, strict=True)] | None = Field(
        default=None, description="The most tokens an answer may have."
    )
    top_p: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Nucleus sampling (0 to 1)."
    )
    top_k: Annotated[int, Field(gt=0, strict=True)] | None = Field(
        default=None, description="Top-k sampling."
    )
    frequency_penalty: float | None = Field(default=None, description="Frequency penalty.")
    presence_penalty: float | None = Field(default=None, description="Presence penalty.")
    stop_sequences: list[str] | None = Field(default=None, description="Stop sequences.")
    extra_params: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific settings, stored as they are."
    )

    def to_mlflow(self) -> dict[str, Any]:
        """As MLflow stores it (``PromptModelConfig.to_dict``): snake_case keys, unset ones
        left out, extra_params merged at the top level."""
        out = {
            k: v
            for k, v in self.model_dump(by_alias=False, exclude_none=True).items()
            if k != "extra_params"
        }
        out.update(self.extra_params)
        return out


class PromptVersionEntry(_Model):
    """A version the prompt keeps: ``current`` (the template file) or a registry number."""

    version: PromptVersionRef = Field(
        description="'current' (the version made from spec.template) or a registry number."
    )
    description: str | None = Field(
        default=None,
        description="The version's description (MLflow's commit message); unset leaves it alone.",
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        description="Tags on the prompt version; those agentctl set and the manifest no longer "
        "has are deleted, others are left alone.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, int | str) and not isinstance(data, bool):
            return {"version": data}
        return data


class PromptSpec(_Model):
    """What the prompt is: its registered name, its template, and the versions, aliases and
    tags agentctl keeps on it."""

    name: PromptName | None = Field(
        default=None,
        description="The prompt's name in MLflow's Prompt Registry (letters, digits, '_', '-', "
        "'.'); defaults to metadata.name. Agents bind it as <name>@<alias> or <name>/<version>.",
    )
    template: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="The template file, relative to the manifest, inside the repository: text "
        "with {{variables}}, or (format chat; .yaml/.yml/.json files) a list of messages "
        "{role, content}."
    )
    format: Literal["text", "chat"] | None = Field(
        default=None,
        description="text or chat; default: chat for a .yaml, .yml or .json file, else text.",
    )
    variables: list[VariableName] | None = Field(
        default=None,
        description="The variables the template may use; given, any other {{variable}} in the "
        "template is an error.",
    )
    response_format: dict[str, Any] | None = Field(
        default=None,
        description="The structured output expected (a JSON Schema), stored with each version.",
    )
    model_config_: PromptModelConfig | None = Field(
        default=None,
        alias="modelConfig",
        description="Model settings stored with each version (provider, modelName, "
        "temperature...).",
    )
    description: str | None = Field(
        default=None, description="The prompt's description; unset leaves it alone."
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        description="Prompt tags; those agentctl set and the manifest no longer has are "
        "deleted, others are left alone. Keys under agentctl.io/ are reserved.",
    )
    adopt: bool = Field(
        default=False,
        description="Take over a prompt that exists but is not managed by agentctl.",
    )
    versions: list[PromptVersionEntry] = Field(
        default_factory=list,
        description="The versions the prompt keeps: 'current' (the template; implied) and "
        "registry numbers; '- 3' and '- current' are shorthands.",
    )
    aliases: dict[AliasName, PromptVersionRef] = Field(
        default_factory=dict,
        description="Aliases -> 'current' or a declared version number; those agentctl set and "
        "the manifest no longer has are deleted. 'latest' and v<N> are reserved.",
    )


class PromptManifest(_Model):
    """``kind: Prompt``: a prompt of MLflow's Prompt Registry managed from the repository."""

    api_version: Literal["agentctl.io/v1alpha1"] = Field(description="agentctl.io/v1alpha1.")
    kind: Literal["Prompt"] = Field(description="Prompt.")
    metadata: Metadata = Field(description="The prompt's name (and labels agentctl ignores).")
    spec: PromptSpec = Field(description="The template, versions, aliases and tags.")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def prompt_name(self) -> str:
        return self.spec.name or self.metadata.name
