"""Support bot: answers from a fixed FAQ in its config. Deterministic: no LLM, no network.

Logged with MLflow "models from code": MLflow records this file and loads it by running it,
so the module ends with ``set_model``. The config (``config.yaml``) is passed as model_config.
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

_DEV_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.yaml")


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
        config = ModelConfig(development_config=_DEV_CONFIG)
        self.greeting: str = config.get("greeting")
        self.faq: dict[str, str] = config.get("faq")
        self.fallback: str = config.get("fallback")
        # A fault to inject (rollout tests): questions containing this text raise.
        self.fail_on: str | None = (config.to_dict() or {}).get("fail_on")

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
