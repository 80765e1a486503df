"""What a request asks of the router: the OpenAI model field, the conversation id."""

from __future__ import annotations

import pytest

from controller.adapters.local.asks import (
    BadRequest,
    ModelRef,
    conversation_id,
    openai_error,
    parse_model,
    request_id,
)


def test_the_model_field_names_an_agent_and_may_pin_a_version() -> None:
    assert parse_model("support-bot") == ModelRef("support-bot")
    assert parse_model("support-bot@3") == ModelRef("support-bot", version=3)
    assert parse_model("support-bot@v3") == ModelRef("support-bot", version=3)
    assert parse_model("support-bot@champion") == ModelRef("support-bot", alias="champion")


@pytest.mark.parametrize("value", [None, 3, "", "Support_Bot", "bot@", "bot@a b", "bot@0", ["x"]])
def test_a_bad_model_field_is_a_bad_request_on_model(value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_model(value)
    assert caught.value.param == "model"


def test_the_conversation_id_comes_from_the_body_then_header_then_cookie() -> None:
    both = ("x-session-id", "sid")
    body = {"context": {"conversation_id": "c-body"}, "conversation": "c-openai"}
    headers = {"x-session-id": "c-header", "cookie": "a=1; sid=c-cookie"}
    assert conversation_id(body, headers, *both) == "c-body"
    assert conversation_id({"conversation": "c-openai"}, headers, *both) == "c-openai"
    assert conversation_id({"conversation": {"id": "c-obj"}}, headers, *both) == "c-obj"
    assert conversation_id({}, headers, *both) == "c-header"
    assert conversation_id({}, {"cookie": 'a=1; sid="c-cookie"'}, *both) == "c-cookie"
    assert conversation_id({}, {"cookie": "garbled"}, *both) is None
    assert conversation_id({}, {}, *both) is None
    assert conversation_id({}, headers) is None  # only the body, without header or cookie


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"context": {"conversation_id": 42}}, "context.conversation_id"),
        ({"context": "c1"}, "context"),
        ({"conversation": ["c1"]}, "conversation"),
        ({"conversation": {"id": 7}}, "conversation.id"),
        ({"conversation": "x" * 5000}, "conversation"),
    ],
)
def test_a_conversation_id_that_is_not_a_string_is_a_bad_request(body: object, param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        conversation_id(body, {})
    assert caught.value.param == param


def test_request_ids_and_openai_errors() -> None:
    assert request_id({"x-request-id": "abc-123"}, "new") == "abc-123"
    assert request_id({"x-request-id": "bad id\n"}, "new") == "new"
    assert request_id({}, "new") == "new"
    assert openai_error(404, "no such agent", "model") == {
        "error": {
            "message": "no such agent",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert openai_error(503, "down")["error"]["type"] == "server_error"
