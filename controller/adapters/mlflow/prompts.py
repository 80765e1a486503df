"""MLflow's Prompt Registry as both registry adapters speak it (no mlflow import).

In MLflow 3.17.2 a prompt is a registered model tagged ``mlflow.prompt.is_prompt=true``; its
versions are model versions with that tag, the placeholder source ``dummy-source`` (the server
refuses any other source for a prompt version) and the content in their tags
(:meth:`~controller.core.prompt.content.PromptContent.tags`). Registered-model and
model-version searches leave prompts out unless their filter names the prompt tag: a search
filtered on :data:`PROMPT_FILTER` finds only prompts. Prompts and models share one namespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from controller.core.errors import PermanentBackendError
from controller.core.prompt.content import IS_PROMPT_TAG
from controller.core.state.observed import OWNER_TAG

__all__ = [
    "PROMPT_FILTER",
    "PROMPT_NAME",
    "PROMPT_SOURCE",
    "existing_model_error",
    "existing_prompt_error",
    "prompt_versions_filter",
]

#: The search filter that finds prompts (and their versions) only.
PROMPT_FILTER = f"tags.`{IS_PROMPT_TAG}` = 'true'"
#: The source MLflow's own client gives a prompt version (``_CLIENT_PROMPT_SOURCE_PLACEHOLDER``).
PROMPT_SOURCE = "dummy-source"
#: MLflow's rule for a prompt's name (``validate_prompt_name``): safe inside a quoted filter.
PROMPT_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")


def prompt_versions_filter(name: str) -> str:
    """The filter of one prompt's versions; a name MLflow would not give a prompt is refused
    (it could not be quoted safely)."""
    if not PROMPT_NAME.match(name):
        raise PermanentBackendError(
            f"not a prompt name: {name!r} (letters, digits, '_', '.' and '-' only)",
            operation="search prompt versions",
            target=name,
        )
    return f"name = '{name}' AND {PROMPT_FILTER}"


def existing_prompt_error(
    name: str, existing: Mapping[str, str], tags: Mapping[str, str]
) -> PermanentBackendError | None:
    """Creating prompt ``name`` (with ``tags``) found a registered model of that name, tagged
    ``existing``: None if it is this prompt (a retried create), else why it cannot be ours."""
    if existing.get(IS_PROMPT_TAG, "").lower() != "true":
        return PermanentBackendError(
            f"a registered model named '{name}' exists; prompts and models share one namespace "
            "in MLflow",
            operation="create prompt",
            target=name,
        )
    if existing.get(OWNER_TAG) != tags.get(OWNER_TAG):
        return PermanentBackendError(
            f"prompt '{name}' was created by someone else since the plan",
            operation="create prompt",
            target=name,
        )
    return None


def existing_model_error(
    name: str, existing: Mapping[str, str], tags: Mapping[str, str]
) -> PermanentBackendError | None:
    """Creating registered model ``name`` (with ``tags``) found one of that name, tagged
    ``existing``: None if it is this model (a retried create), else why it cannot be ours."""
    if existing.get(IS_PROMPT_TAG, "").lower() == "true":
        return PermanentBackendError(
            f"a prompt named '{name}' exists; prompts and models share one namespace in MLflow",
            operation="create registered model",
            target=name,
        )
    if existing.get(OWNER_TAG) != tags.get(OWNER_TAG):
        return PermanentBackendError(
            f"registered model '{name}' was created by someone else since the plan",
            operation="create registered model",
            target=name,
        )
    return None
