"""The model server's parts that need no model: request ids, safe error bodies, OpenAI requests
and answers (checked against the ``openai`` package's own types), the event streams, the thread
that runs a generator, the ASGI guard, provenance, and that the module stands alone."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from controller.adapters.local import agent_server as s
from controller.adapters.local.supervisor import agent_serve, cwd_for

SOURCE = Path(s.__file__)
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
TRACE = (
    'Traceback (most recent call last):\n  File "/x/agent.py", line 3, in predict\nValueError: no'
)


def deltas(text: str, item_id: str = "msg-1") -> list[dict[str, Any]]:
    return [{"type": "response.output_text.delta", "item_id": item_id, "delta": w + " "}
            for w in text.split(" ")]  # fmt: skip


def done(text: str, item_id: str = "msg-1") -> dict[str, Any]:
    item = {"type": "message", "id": item_id, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
    return {"type": "response.output_item.done", "item": item}


# -- request ids and error bodies ---------------------------------------------------------------


def test_a_sane_request_id_is_kept_and_any_other_replaced_by_a_new_one() -> None:
    for good in ("abc", "req-1.2:3_x", "a" * 128):
        assert s.request_id(good) == good
    for bad in (None, "", "a" * 129, "has space", "new\nline", "x;y", "é"):
        new = s.request_id(bad)
        assert new != bad and len(new) == 32 and int(new, 16) >= 0
    assert s.request_id(None) != s.request_id(None)


def test_a_message_for_the_caller_is_short_and_has_no_traceback() -> None:
    assert s.short("boom") == "boom"
    long = s.short("x" * 1000)
    assert len(long) == s.MESSAGE_MAX and long.endswith("…")
    assert s.short(f"it failed\n{TRACE}") == "it failed"
    assert s.short(TRACE) == "error"


def test_mlflow_s_error_body_loses_its_stack_trace_and_keeps_its_status_and_message() -> None:
    mlflow_body = json.dumps({"error_code": "BAD_REQUEST", "message": "Encountered an unexpected "
                              "error while evaluating the model.", "stack_trace": TRACE}).encode()  # fmt: skip
    body, trace = s.safe_error("/invocations", 400, mlflow_body, "bot", "3", "rid-1")
    assert json.loads(body) == {
        "error_code": 400, "message": "Encountered an unexpected error while evaluating the model.",
        "agent": "bot", "version": "3", "request_id": "rid-1",
    }  # fmt: skip
    assert trace == TRACE and "Traceback" not in body.decode()
    # Already safe: kept as is.
    assert s.safe_error("/invocations", 400, body, "bot", "3", "rid-1") == (body, None)


@pytest.mark.parametrize(
    ("path", "status", "body", "message"),
    [
        (
            "/invocations",
            415,
            b"This predictor only supports JSON",
            "This predictor only supports JSON",
        ),
        ("/nope", 404, b'{"detail": "Not Found"}', "Not Found"),
        (
            "/invocations",
            504,
            b"Request processing time exceeded",
            "Request processing time exceeded",
        ),
        ("/invocations", 500, b"", "HTTP 500"),
        ("/v1/nope", 404, b'{"detail": "Not Found"}', "Not Found"),
        ("/v1/responses", 500, b"Internal Server Error", "Internal Server Error"),
    ],
)
def test_every_other_error_answer_gets_the_shape_of_its_route(
    path: str, status: int, body: bytes, message: str
) -> None:
    out, trace = s.safe_error(path, status, body, "bot", "3", "rid-1")
    data = json.loads(out)
    assert trace is None
    if path.startswith("/v1/"):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        assert data == {"error": {"message": message, "type": kind, "param": None, "code": None}}
        assert s.safe_error(path, status, out, "bot", "3", "rid-1") == (out, None)
    else:
        assert data == s.invocations_error(status, message, "bot", "3", "rid-1")


def test_only_a_json_object_with_stream_true_asks_for_a_stream() -> None:
    body = json.dumps({"input": [], "stream": True}).encode()
    assert s.wants_stream("application/json", body)
    assert s.wants_stream("application/json; charset=utf-8", body)
    assert not s.wants_stream("text/csv", body)
    assert not s.wants_stream(None, body)
    for other in (b'{"input": [], "stream": false}', b'{"input": []}', b'{"stream": "true"}',
                  b"[1]", b"not json", b'{"stream": 1}'):  # fmt: skip
        assert not s.wants_stream("application/json", other), other


# -- OpenAI requests ------------------------------------------------------------------------------


def test_a_responses_request_becomes_a_responses_agent_request() -> None:
    from mlflow.types.responses import ResponsesAgentRequest

    assert s.agent_request({"model": "m", "input": "hi", "temperature": 0.2, "store": True,
                            "metadata": {"a": "b"}}, chat=False) == {
        "input": [{"role": "user", "content": "hi"}]
    }  # fmt: skip
    items = [{"role": "user", "content": "a"}, {"type": "function_call_output", "call_id": "c",
                                                "output": "x"}]  # fmt: skip
    req = s.agent_request({"input": items, "instructions": "be brief", "stream": True,
                           "context": {"user_id": "u"}, "custom_inputs": {"k": 1}}, chat=False)  # fmt: skip
    assert req == {"input": [{"role": "system", "content": "be brief"}, *items],
                   "context": {"user_id": "u"}, "custom_inputs": {"k": 1}}  # fmt: skip
    ResponsesAgentRequest(**req)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None), ({"model": "m"}, "input"), ({"input": 3}, "input"), ({"input": [1]}, "input"),
        ({"input": "x", "instructions": 1}, "instructions"), ({"input": "x", "context": "c"}, "context"),
        ({"input": "x", "custom_inputs": [1]}, "custom_inputs"), ({"input": "x", "stream": "yes"}, "stream"),
    ],
)  # fmt: skip
def test_a_malformed_responses_request_is_refused_naming_its_field(body: Any, param: str) -> None:
    with pytest.raises(s.BadRequest) as err:
        s.agent_request(body, chat=False)
    assert err.value.param == param


def test_chat_messages_become_input_items_and_other_messages_are_refused() -> None:
    body = {"model": "m", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"}], "n": 1}  # fmt: skip
    assert s.agent_request(body, chat=True) == {"input": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "c"}]}  # fmt: skip
    for bad in ({"messages": []}, {"messages": [{"role": "tool", "content": "x"}]},
                {"messages": [{"role": "user", "content": None}]}, {"messages": "hi"},
                {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}):  # fmt: skip
        with pytest.raises(s.BadRequest):
            s.agent_request(bad, chat=True)


# -- OpenAI answers -------------------------------------------------------------------------------


def test_the_response_object_is_an_openai_response() -> None:
    output = [done("Hello there.")["item"],
              {"type": "function_call", "id": "fc1", "call_id": "c1", "name": "f", "arguments": "{}"}]  # fmt: skip
    output[0] = {k: v for k, v in output[0].items() if k != "role"}  # as mlflow may leave it
    data = s.response_object("resp_1", 1700000000, "gpt-x", output, "completed")
    parsed = Response.model_validate(data)  # strict: every required field, every type
    assert parsed.output_text == "Hello there." and parsed.status == "completed"
    assert parsed.id == "resp_1" and parsed.model == "gpt-x" and parsed.error is None
    assert data["usage"] is None


def test_the_chat_completion_is_an_openai_chat_completion() -> None:
    data = s.chat_completion("chatcmpl-1", 1700000000, "m", [done("Hi.")["item"], done(" Bye.", "m2")["item"]])  # fmt: skip
    parsed = ChatCompletion.model_validate(data)
    assert parsed.choices[0].message.content == "Hi. Bye."
    assert parsed.choices[0].finish_reason == "stop"


def check_responses_stream(events: list[dict[str, Any]]) -> Response:
    """Each event an OpenAI stream event, numbered from 0; created and in_progress first,
    completed last; every text delta after its item and its content part."""
    for e in events:
        STREAM_EVENT.validate_python(e)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.completed"
    opened: set[tuple[int, int]] = set()
    items: set[int] = set()
    for e in events:
        if e["type"] == "response.output_item.added":
            items.add(e["output_index"])
        elif e["type"] == "response.content_part.added":
            assert e["output_index"] in items
            opened.add((e["output_index"], e["content_index"]))
        elif e["type"] == "response.output_text.delta":
            assert (e["output_index"], e["content_index"]) in opened
        elif e["type"] == "response.output_item.done":
            assert e["output_index"] in items
    return Response.model_validate(events[-1]["response"])


def test_deltas_and_a_done_item_become_openai_s_events() -> None:
    stream = s.ResponsesStream("resp_1", "m", 1700000000)
    events = stream.start()
    for e in [*deltas("Hi there."), done("Hi there.")]:
        events += stream.feed(e)
    events += stream.finish()
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 2,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]  # fmt: skip
    text_done = next(e for e in events if e["type"] == "response.output_text.done")
    assert text_done["text"] == "Hi there." and text_done["output_index"] == 0
    final = check_responses_stream(events)
    assert final.output_text == "Hi there." and final.id == "resp_1"
    assert (
        events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    )
    assert [e["delta"] for e in events if "delta" in e] == ["Hi ", "there. "]


def test_deltas_without_a_done_item_are_finished_by_the_server() -> None:
    stream = s.ResponsesStream("resp_1", "m", 1)
    events = stream.start() + [o for e in deltas("a b c") for o in stream.feed(e)] + stream.finish()
    final = check_responses_stream(events)
    assert final.output_text == "a b c "
    assert [e["type"] for e in events[-2:]] == ["response.output_item.done", "response.completed"]


def test_items_told_only_when_done_are_added_first_and_kept_in_order() -> None:
    call = {"type": "function_call", "id": "fc1", "call_id": "c1", "name": "f", "arguments": "{}"}
    agent = [
        {"type": "response.created", "response": {}},  # the agent's own life events: dropped
        {"type": "response.function_call_arguments.delta", "item_id": "fc1", "delta": "{"},  # before its item: dropped
        {"type": "response.output_item.done", "item": call},
        done("First."), *deltas("Second.", "msg-2"), done("Second.", "msg-2"),
        {"type": "response.output_text.annotation.added", "item_id": "msg-2", "annotation_index": 0,
         "annotation": {"type": "url_citation", "url": "u", "title": "t", "start_index": 0, "end_index": 1}},
        {"type": "response.completed", "response": {}},
    ]  # fmt: skip
    stream = s.ResponsesStream("resp_1", "m", 1)
    events = stream.start() + [o for e in agent for o in stream.feed(e)] + stream.finish()
    final = check_responses_stream(events)
    assert [o.type for o in final.output] == ["function_call", "message", "message"]
    assert final.output_text == "First.Second."
    assert sum(e["type"] == "response.completed" for e in events) == 1
    assert not any(e["type"].startswith("response.function_call_arguments") for e in events)
    annotation = next(e for e in events if e["type"] == "response.output_text.annotation.added")
    assert annotation["output_index"] == 2 and annotation["content_index"] == 0
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[1]["content"] == [] and added[1]["status"] == "in_progress"


def test_a_failure_in_a_stream_is_an_error_then_a_failed_response_without_a_traceback() -> None:
    stream = s.ResponsesStream("resp_1", "m", 1)
    events = stream.start() + stream.feed(deltas("a")[0])
    error, failed = stream.fail(f"the agent raised ValueError\n{TRACE}")
    STREAM_EVENT.validate_python(error)
    STREAM_EVENT.validate_python(failed)
    assert error == {"type": "error", "code": "server_error", "param": None,
                     "message": "the agent raised ValueError", "sequence_number": len(events)}  # fmt: skip
    assert stream.frame(error) == f"event: error\ndata: {json.dumps(error)}\n\n"
    assert failed["type"] == "response.failed" and failed["sequence_number"] == len(events) + 1
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error",
                                           "message": "the agent raised ValueError"}  # fmt: skip
    assert "Traceback" not in json.dumps(failed)


def test_invocations_stream_events_as_they_are_then_done() -> None:
    stream = s.InvocationsStream({"agent": "bot", "version": "3", "request_id": "r"})
    event = deltas("a")[0]
    assert stream.start() == [] and stream.feed(event) == [event]
    assert [stream.frame(x) for x in stream.finish()] == ["data: [DONE]\n\n"]
    error, end = stream.fail(TRACE + "\nmore")
    assert error == {
        "error": {"agent": "bot", "version": "3", "request_id": "r", "message": "error"}
    }
    assert end == "[DONE]"


def test_chat_chunks_carry_the_deltas_or_the_text_of_an_item_told_only_when_done() -> None:
    stream = s.ChatStream("chatcmpl-1", "m", 1)
    events = [*deltas("Hi you."), done("Hi you."), done("Later.", "msg-2")]
    chunks = [c for e in events for c in stream.feed(e)] + stream.finish()
    assert chunks[-1] == "[DONE]"
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks[:-1]]
    assert "".join(p.choices[0].delta.content or "" for p in parsed) == "Hi you. Later."
    assert (
        parsed[0].choices[0].delta.role == "assistant" and parsed[1].choices[0].delta.role is None
    )
    assert parsed[-1].choices[0].finish_reason == "stop"
    assert stream.frame(chunks[-1]) == "data: [DONE]\n\n"
    assert s.ChatStream("c", "m", 1).fail("boom")[0]["error"]["type"] == "server_error"


# -- the thread that runs a generator ------------------------------------------------------------


def test_a_generator_runs_in_a_thread_of_its_own_and_its_items_come_as_it_yields_them() -> None:
    seen: list[tuple[str, float]] = []
    main = threading.get_ident()

    def produce() -> Iterator[int]:
        for i in range(3):
            assert threading.get_ident() != main
            yield i
            time.sleep(0.2)

    async def consume() -> list[int]:
        out = []
        async for i in s.in_thread(produce):
            seen.append(("got", time.monotonic()))
            out.append(i)
        return out

    assert asyncio.run(consume()) == [0, 1, 2]
    assert seen[-1][1] - seen[0][1] >= 0.35  # each as yielded, not all at the end


def test_its_exception_is_raised_to_the_consumer_and_stopping_early_closes_it() -> None:
    closed = threading.Event()

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("no")

    def endless() -> Iterator[int]:
        try:
            while True:
                yield 1
                time.sleep(0.01)
        finally:
            closed.set()

    async def run() -> None:
        got = []
        with pytest.raises(ValueError, match="no"):
            async for i in s.in_thread(failing):
                got.append(i)
        assert got == [1]
        stream = s.in_thread(endless)
        assert await anext(stream) == 1
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert closed.wait(5)


# -- the ASGI guard -------------------------------------------------------------------------------


def call(app: Any, path: str = "/invocations", headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[bytes, bytes], bytes, list[str]]:  # fmt: skip
    """Run ``app`` behind a Guard for one request: status, headers, body, the request ids the
    trace context was entered with."""
    contexts: list[str] = []

    @contextlib.contextmanager
    def trace_context(rid: str) -> Iterator[None]:
        contexts.append(rid)
        yield

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers or []}
    asyncio.run(s.Guard(app, "bot", "3", trace_context)(scope, receive, send))
    start, *bodies = sent
    return start["status"], dict(start["headers"]), b"".join(b["body"] for b in bodies), contexts


def test_the_guard_sends_the_request_id_back_and_passes_good_answers_through() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["state"]["request_id"] == "abc"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"no")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"1", "more_body": True})
        await send({"type": "http.response.body", "body": b"2"})

    status, headers, body, contexts = call(app, headers=[(b"x-request-id", b"abc")])
    assert (status, headers[b"x-request-id"], body, contexts) == (200, b"abc", b"12", ["abc"])


def test_the_guard_replaces_mlflow_s_stack_trace_and_logs_it(capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    body = json.dumps(
        {"error_code": "BAD_REQUEST", "message": "bad", "stack_trace": TRACE}
    ).encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})  # fmt: skip
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    status, headers, out, _ = call(app, headers=[(b"x-request-id", b"bad id")])
    rid = headers[b"x-request-id"].decode()
    assert rid != "bad id" and len(rid) == 32
    assert status == 400 and json.loads(out) == s.invocations_error(400, "bad", "bot", "3", rid)
    assert headers[b"content-length"] == str(len(out)).encode()
    err = capsys.readouterr().err
    assert f"request {rid}: bot version 3 answered 400:\n{TRACE}" in err


@pytest.mark.parametrize("path", ["/invocations", "/v1/responses"])
def test_the_guard_answers_an_exception_with_a_safe_500(path: str, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret detail")

    status, headers, out, _ = call(app, path)
    assert status == 500 and "secret" not in out.decode() and "Traceback" not in out.decode()
    data = json.loads(out)
    assert (
        data["error"]["type"] == "server_error" if path.startswith("/v1/") else data["request_id"]
    )
    err = capsys.readouterr().err
    assert "RuntimeError: secret detail" in err and headers[b"x-request-id"].decode() in err


def test_the_guard_leaves_lifespan_alone() -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(s.Guard(app, "a", "1", lambda rid: contextlib.nullcontext())({"type": "lifespan"}, None, None))  # type: ignore[arg-type]  # fmt: skip
    assert seen == ["lifespan"]


# -- provenance, the command line, and the module standing alone -------------------------------


def test_traces_say_the_version_s_commit_or_none_never_this_host_s() -> None:
    tags = {s.COMMIT_TAG: "c0ffee", s.DIGEST_TAG: "sha256:1", "other": "x"}
    assert s.provenance("models:/bot/3", tags) == {
        "mlflow.source.name": "models:/bot/3", "mlflow.source.git.commit": "c0ffee",
        "mlflow.source.git.branch": "", "mlflow.source.git.repoURL": "",
        "agentctl.io/source-digest": "sha256:1",
    }  # fmt: skip
    assert s.provenance("models:/bot/3", {})["mlflow.source.git.commit"] == ""
    assert "agentctl.io/source-digest" not in s.provenance("models:/bot/3", {})


def test_the_tag_keys_are_the_ones_agentctl_writes() -> None:
    from controller.core.state.observed import COMMIT_TAG, DIGEST_TAG

    assert (s.COMMIT_TAG, s.DIGEST_TAG) == (COMMIT_TAG, DIGEST_TAG)


def test_the_supervisor_runs_this_module_for_a_version_in_a_directory_beside_its_log() -> None:
    assert agent_serve("bot", 3, 8000) == [
        sys.executable, "-m", "controller.adapters.local.agent_server",
        "--model-uri", "models:/bot/3", "--host", "127.0.0.1", "--port", "8000",
    ]  # fmt: skip
    assert cwd_for(Path("/run/logs/bot-v3.log")) == Path("/run/logs/cwd/bot-v3")


def test_pings_are_left_out_of_the_access_log() -> None:
    import logging

    def record(path: str) -> logging.LogRecord:
        args = ("127.0.0.1:1", "GET", path, "1.1", 200)
        return logging.LogRecord(
            "uvicorn.access", 20, "f", 1, '%s - "%s %s HTTP/%s" %d', args, None
        )

    f = s.NoPings()
    assert not f.filter(record("/ping")) and not f.filter(record("/health?x=1"))
    assert f.filter(record("/invocations"))


def test_the_module_imports_only_the_standard_library_and_mlflow_s_own_dependencies() -> None:
    """It runs as ``python -c "<its source>"`` where agentctl is not installed."""
    allowed = {"mlflow", "fastapi", "starlette", "uvicorn", "pydantic"}
    tree = ast.parse(SOURCE.read_text())
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])  # fmt: skip
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in allowed, name
        assert not (isinstance(node, ast.Name) and node.id == "__file__")
