"""A prompt version's content: its template (text, or chat messages), response format and model
config; its digest, its variables, the registry tags that hold it, and a text form for diffs.
Pure data: no I/O.

MLflow 3.17.2 stores a prompt as a registered model tagged ``mlflow.prompt.is_prompt=true``
whose versions carry the template in the tag ``mlflow.prompt.text`` (a chat template as JSON),
its type in ``_mlflow_prompt_type`` and the response format and model config as JSON in
``_mlflow_prompt_response_format`` / ``_mlflow_prompt_model_config``. The digest is computed
from that content, not from a tag of agentctl's: a version made by hand with the same content is
the same version, and a template already registered is never registered again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "IS_PROMPT_TAG",
    "MODEL_CONFIG_TAG",
    "PROMPT_TEXT_TAG",
    "PROMPT_TYPE_TAG",
    "RESERVED_PROMPT_TAGS",
    "RESPONSE_FORMAT_TAG",
    "VARIABLE",
    "PromptContent",
]

IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
PROMPT_TEXT_TAG = "mlflow.prompt.text"
PROMPT_TYPE_TAG = "_mlflow_prompt_type"
RESPONSE_FORMAT_TAG = "_mlflow_prompt_response_format"
MODEL_CONFIG_TAG = "_mlflow_prompt_model_config"
#: Tags MLflow keeps for itself on a prompt or its versions (not a user's tags).
RESERVED_PROMPT_TAGS = frozenset(
    {IS_PROMPT_TAG, PROMPT_TEXT_TAG, PROMPT_TYPE_TAG, RESPONSE_FORMAT_TAG, MODEL_CONFIG_TAG}
)
#: MLflow's variable pattern (``PROMPT_TEMPLATE_VARIABLE_PATTERN``): ``{{ name }}``, ``{{a.b}}``.
VARIABLE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")
_FORMAT = 1

Message = tuple[tuple[str, str], ...]  # ((key, value), ...) of one chat message, sorted


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PromptContent:
    """What a prompt version holds. ``template`` is the text, or (chat) the messages as
    ``({"role": ..., "content": ...}, ...)``; ``response_format`` and ``model_config`` are JSON
    values (None: not set)."""

    type: Literal["text", "chat"]
    template: str | tuple[Mapping[str, str], ...]
    response_format: Mapping[str, Any] | None = None
    model_config: Mapping[str, Any] | None = None

    @property
    def messages(self) -> tuple[Mapping[str, str], ...]:
        return self.template if isinstance(self.template, tuple) else ()

    def _json_template(self) -> str | list[dict[str, str]]:
        if isinstance(self.template, str):
            return self.template
        return [dict(m) for m in self.template]

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` over the type, template, response format and model config."""
        payload = {
            "format": _FORMAT,
            "type": self.type,
            "template": self._json_template(),
            "response_format": self.response_format,
            "model_config": self.model_config,
        }
        return "sha256:" + hashlib.sha256(_canonical(payload).encode()).hexdigest()

    @property
    def variables(self) -> frozenset[str]:
        texts = [self.template] if isinstance(self.template, str) else [
            m.get("content", "") for m in self.template
        ]  # fmt: skip
        return frozenset(v for t in texts for v in VARIABLE.findall(t))

    def text(self, shown: Callable[[Any], Any] = lambda tree: tree) -> str:
        """The template as lines to diff: the text itself, or each message as ``[role]``
        followed by its content; then the response format and model config, if any, each as
        ``shown`` gives it (a redaction)."""
        if isinstance(self.template, str):
            out = self.template
        else:
            out = "\n".join(f"[{m.get('role', '')}]\n{m.get('content', '')}" for m in self.template)
        if self.response_format is not None:
            out += f"\n[response format]\n{json.dumps(shown(self.response_format), indent=2, sort_keys=True)}"
        if self.model_config is not None:
            out += f"\n[model config]\n{json.dumps(shown(self.model_config), indent=2, sort_keys=True)}"
        return out

    def tags(self) -> dict[str, str]:
        """The version tags that store it, as MLflow's own ``create_prompt_version`` writes
        them."""
        out = {
            IS_PROMPT_TAG: "true",
            PROMPT_TEXT_TAG: self.template
            if isinstance(self.template, str)
            else json.dumps(self._json_template()),
            PROMPT_TYPE_TAG: self.type,
        }
        if self.response_format is not None:
            out[RESPONSE_FORMAT_TAG] = json.dumps(self.response_format)
        if self.model_config is not None:
            out[MODEL_CONFIG_TAG] = json.dumps(self.model_config)
        return out

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> PromptContent | None:
        """The content a registry version's tags hold; None when they hold no usable
        template (not a prompt version, or JSON that does not parse)."""
        text = tags.get(PROMPT_TEXT_TAG)
        if text is None:
            return None
        kind = tags.get(PROMPT_TYPE_TAG, "text")
        try:
            template: str | tuple[Mapping[str, str], ...] = text
            if kind == "chat":
                parsed = json.loads(text)
                if not isinstance(parsed, list) or not all(isinstance(m, dict) for m in parsed):
                    return None
                template = tuple({str(k): str(v) for k, v in m.items()} for m in parsed)
            rf = tags.get(RESPONSE_FORMAT_TAG)
            mc = tags.get(MODEL_CONFIG_TAG)
            return cls(
                "chat" if kind == "chat" else "text",
                template,
                json.loads(rf) if rf is not None else None,
                json.loads(mc) if mc is not None else None,
            )
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "template": self._json_template()}
        if self.response_format is not None:
            out["response_format"] = self.response_format
        if self.model_config is not None:
            out["model_config"] = self.model_config
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptContent:
        kind = data["type"]
        if kind not in ("text", "chat"):
            raise ValueError(f"a prompt's type is text or chat, not {kind!r}")
        raw = data["template"]
        template: str | tuple[Mapping[str, str], ...]
        if isinstance(raw, str):
            template = raw
        elif isinstance(raw, Sequence):
            template = tuple({str(k): str(v) for k, v in dict(m).items()} for m in raw)
        else:
            raise ValueError(f"a prompt's template is text or a list of messages, not {raw!r}")
        return cls(kind, template, data.get("response_format"), data.get("model_config"))
