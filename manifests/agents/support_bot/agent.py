"""Support bot: answers from a fixed FAQ in its config. Deterministic: no LLM.

Logged with MLflow "models from code": MLflow records this file and loads it by running it,
so the module ends with ``set_model``. The config (``config.yaml``) is passed as model_config.

Its greeting is its system prompt, a ``kind: Prompt`` of MLflow's Prompt Registry
(manifests/support-system.yaml). agentctl resolves the binding ``spec.prompts: {system:
support-system@production}`` when it logs a version and pins it into the model config
(``prompts: {system: prompts:/support-system/<n>}``), so a served version reads the prompt
version it was logged with, whatever the alias does later. Without ``prompts`` in the config (a
run from the working tree), it reads the template file beside this one (prompts/system.txt);
without that file either (a version logged without the binding), the config's ``greeting``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from mlflow.models import ModelConfig, set_model
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEV_CONFIG = os.path.join(_HERE, "config.yaml")
#: The system prompt's template in the working tree (what manifests/support-system.yaml declares).
TEMPLATE = os.path.join(_HERE, "prompts", "system.txt")


def load_greeting(config: dict[str, Any]) -> str:
    """The greeting: the prompt version pinned in the config, else the template file beside
    this one, else the config's ``greeting``."""
    uri = (config.get("prompts") or {}).get("system")
    if uri:
        import mlflow

        return str(mlflow.genai.load_prompt(uri).format()).strip()
    if os.path.isfile(TEMPLATE):
        from mlflow.entities.model_registry import PromptVersion

        with open(TEMPLATE, encoding="utf-8") as f:
            return str(PromptVersion("support-system", 1, f.read()).format()).strip()
    return str(config["greeting"])


def last_user_text(request: ResponsesAgentRequest) -> str:
    for item in reversed(request.input):
        data: dict[str, Any] = item.model_dump()
        if data.get("role") != "user":
            continue
        content = data.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class SupportBot(ResponsesAgent):
    def __init__(self) -> None:
        config = ModelConfig(development_config=_DEV_CONFIG).to_dict() or {}
        self.greeting: str = load_greeting(config)
        self.faq: dict[str, str] = config["faq"]
        self.fallback: str = config["fallback"]
        # A fault to inject (rollout tests): questions containing this text raise.
        self.fail_on: str | None = config.get("fail_on")

    def answer(self, question: str) -> str:
        lowered = question.lower()
        for keyword in sorted(self.faq):
            if keyword in lowered:
                return f"{self.greeting} {self.faq[keyword]}"
        return f"{self.greeting} {self.fallback}"

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        question = last_user_text(request)
        if not question.strip():
            # The model server answers an exception from predict with HTTP 400.
            raise ValueError("the request has no user message to answer")
        if self.fail_on and self.fail_on in question.lower():
            raise RuntimeError(f"injected fault: questions about {self.fail_on!r} fail")
        text = self.answer(question)
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=text, id="msg-1")])

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        text = self.answer(last_user_text(request))
        for word in text.split(" "):
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=word + " ", item_id="msg-1"))
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done",
            item=self.create_text_output_item(text=text, id="msg-1"),
        )


set_model(SupportBot())
