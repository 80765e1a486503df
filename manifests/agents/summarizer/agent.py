"""Summarizer: keeps the first sentences of the user's text, up to a word budget.

Deterministic: no LLM, no network. Logged with MLflow "models from code" (ends with set_model).
"""

from __future__ import annotations

import os
import re
from typing import Any

from mlflow.models import ModelConfig, set_model
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

_DEV_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.yaml")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def last_user_text(request: ResponsesAgentRequest) -> str:
    for item in reversed(request.input):
        data: dict[str, Any] = item.model_dump()
        if data.get("role") == "user" and isinstance(data.get("content"), str):
            return str(data["content"])
    return ""


class Summarizer(ResponsesAgent):
    def __init__(self) -> None:
        config = ModelConfig(development_config=_DEV_CONFIG)
        self.max_words: int = int(config.get("max_words"))
        self.prefix: str = config.get("prefix")

    def summarize(self, text: str) -> str:
        kept: list[str] = []
        words = 0
        for sentence in _SENTENCE.split(text.strip()):
            n = len(sentence.split())
            if kept and words + n > self.max_words:
                break
            kept.append(sentence)
            words += n
        summary = " ".join(kept)
        if len(summary.split()) > self.max_words:
            summary = " ".join(summary.split()[: self.max_words]) + " ..."
        return f"{self.prefix}{summary}"

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        text = self.summarize(last_user_text(request))
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=text, id="msg-1")])


set_model(Summarizer())
