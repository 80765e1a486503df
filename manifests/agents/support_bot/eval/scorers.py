"""Code scorers for the support bot's evaluation (``spec.evaluation`` in support-bot.yaml).

agentctl runs them in a child process with ``mlflow.genai.evaluate``: before a version gets an
alias or traffic, on each row of ``questions.jsonl``; and, with a ``source: scorers`` rollout
gate, on a sample of the canary's live traces.
"""

from __future__ import annotations

from typing import Any

from mlflow.genai.scorers import scorer


def _text(outputs: Any) -> str:
    """The answer's text out of a ResponsesAgent response (a dict with ``output`` items)."""
    if isinstance(outputs, str):
        return outputs
    if not isinstance(outputs, dict):
        return ""
    parts = []
    for item in outputs.get("output", []):
        for content in item.get("content", []) if isinstance(item, dict) else []:
            if isinstance(content, dict) and isinstance(content.get("text"), str):
                parts.append(content["text"])
    return " ".join(parts)


@scorer
def mentions_expected(outputs: Any, expectations: dict[str, Any]) -> bool:
    """The answer says what the row expects it to mention (case-insensitive)."""
    expected = str((expectations or {}).get("mentions", ""))
    return bool(expected) and expected.lower() in _text(outputs).lower()


@scorer
def polite(outputs: Any) -> bool:
    """The answer opens with the bot's greeting."""
    return _text(outputs).startswith("Hi")
