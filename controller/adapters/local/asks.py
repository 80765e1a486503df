"""What a request asks of the router, read from its body and headers. Pure data: no I/O.

- :func:`parse_model`: the OpenAI ``model`` field, ``<agent>``, ``<agent>@<version>`` (a number,
  or ``v<number>``) or ``<agent>@<alias>``.
- :func:`conversation_id`: the id that keeps a conversation on one version: the ResponsesAgent
  request's ``context.conversation_id``, else the OpenAI ``conversation`` (a string, or an object
  with an ``id``), else the affinity's header, else its cookie.
- :func:`openai_error`: OpenAI's error body, ``{"error": {"message", "type", "param", "code"}}``.

A value of the wrong type is :class:`BadRequest`, which the router answers with 400 in the
caller's API's error shape, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadRequest",
    "ModelRef",
    "conversation_id",
    "cookie_value",
    "openai_error",
    "parse_model",
    "request_id",
]

_AGENT = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_VERSION = re.compile(r"^v?([1-9][0-9]{0,8})$")
_ALIAS = re.compile(r"^[\w\-]{1,255}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: The longest conversation id the router hashes: a longer one is a caller's mistake.
MAX_CONVERSATION_ID = 1024


class BadRequest(ValueError):
    """The request cannot be routed as sent: answered 400 (``param``: the field at fault)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ModelRef:
    """An agent, and optionally one of its versions by number or alias."""

    agent: str
    version: int | None = None
    alias: str | None = None


def parse_model(value: Any) -> ModelRef:
    """The agent (and pinned version) an OpenAI request's ``model`` names."""
    if not isinstance(value, str) or not value:
        raise BadRequest("'model' must be a string: <agent>, <agent>@<version> or "
                         "<agent>@<alias>", "model")  # fmt: skip
    agent, at, pin = value.partition("@")
    if not _AGENT.match(agent) or len(agent) > 63:
        raise BadRequest(f"'{value[:100]}' does not name an agent", "model")
    if not at:
        return ModelRef(agent)
    number = _VERSION.match(pin)
    if number:
        return ModelRef(agent, version=int(number.group(1)))
    if _ALIAS.match(pin) and not pin.isdigit():
        return ModelRef(agent, alias=pin)
    raise BadRequest(f"'{value[:100]}': after '@' comes a version number or an alias", "model")


def _string_id(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {type(value).__name__}", field)
    if len(value) > MAX_CONVERSATION_ID:
        raise BadRequest(f"{field} is longer than {MAX_CONVERSATION_ID} characters", field)
    return value


def conversation_id(
    body: Any, headers: Mapping[str, str], header: str | None = None, cookie: str | None = None
) -> str | None:
    """The request's conversation id, or None (split by weight): from the body (a JSON object),
    else ``header``, else ``cookie``. Called only when the route keeps conversations together."""
    if isinstance(body, Mapping):
        context = body.get("context")
        if context is not None:
            if not isinstance(context, Mapping):
                raise BadRequest("context must be an object", "context")
            found = context.get("conversation_id")
            if found is not None:
                return _string_id(found, "context.conversation_id")
        conversation = body.get("conversation")
        if isinstance(conversation, Mapping):
            conversation = conversation.get("id")
            if conversation is not None:
                return _string_id(conversation, "conversation.id")
        elif conversation is not None:
            return _string_id(conversation, "conversation")
    if header is not None:
        found = headers.get(header)
        if found:
            return found[:MAX_CONVERSATION_ID]
    if cookie is not None:
        found = cookie_value(headers.get("cookie", ""), cookie)
        if found:
            return found[:MAX_CONVERSATION_ID]
    return None


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (RFC 6265 5.4: ``a=1; b=2``; a
    double-quoted value is unquoted), or None."""
    for pair in header.split(";"):
        key, eq, value = pair.strip().partition("=")
        if eq and key == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def request_id(headers: Mapping[str, str], new: str) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token, else ``new``."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else new


def openai_error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``invalid_request_error`` for 4xx, ``server_error`` for 5xx."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 404 and code is None:
        code = "model_not_found"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
