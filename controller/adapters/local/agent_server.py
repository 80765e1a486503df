"""The model server of one registered model version: MLflow's scoring server, and more.

Local serving runs it as ``python -m controller.adapters.local.agent_server --model-uri
models:/<model>/<version> --port N``; Kubernetes, in the stock MLflow image where agentctl is not
installed, as ``python -c "<this file>" --model-uri ...``. So it imports only the standard
library, mlflow and what mlflow depends on (fastapi, starlette, uvicorn, pydantic). The model is
loaded before the server listens: ``/ping`` answering 200 means ready.

- ``GET /ping``, ``/health``, ``/version``, ``POST /invocations``: ``mlflow models serve``'s own
  (``mlflow.pyfunc.scoring_server.init``, every input format), but for what follows.
- ``POST /invocations`` with ``"stream": true`` to a ResponsesAgent: ``text/event-stream``, a
  ``data: <event json>`` per event ``predict_stream`` yields, sent as it is yielded, then
  ``data: [DONE]`` (the format of ``mlflow.genai.agent_server.AgentServer``).
- ``POST /v1/responses`` (ResponsesAgent only): OpenAI's Responses API. ``input`` (a string, or
  items), ``instructions`` (a system message first), ``context``, ``custom_inputs`` and
  ``stream`` are read, ``model`` is echoed, other fields are ignored. It answers a ``Response``,
  or OpenAI's events (``event: <type>`` and ``data: <json>``): ``response.created``,
  ``response.in_progress``, the agent's events numbered, with the ``response.output_item.added``
  and ``response.content_part.added`` a client needs before a text delta, and
  ``response.completed``.
- ``POST /v1/chat/completions`` (ResponsesAgent only): text messages in, the text of the agent's
  output messages as the one choice; streamed as ``chat.completion.chunk`` events and ``[DONE]``.

No answer shows a stack trace: an error of ``/invocations`` is ``{"error_code": <status>,
"message": <at most 300 characters>, "agent", "version", "request_id"}`` with mlflow's status (400
for an agent that raises), one of ``/v1/*`` OpenAI's ``{"error": {"message", "type", "param",
"code"}}``, and a stream that fails ends with an error event. The traceback goes to stderr with
the request id: the caller's ``X-Request-Id`` if it is a plain token, else a new one, sent back
in ``X-Request-Id``.

Traces: mlflow traces ``predict`` and ``predict_stream`` as under ``mlflow models serve`` (the
experiment of ``MLFLOW_EXPERIMENT_NAME``/``_ID``, ``mlflow.modelId`` from the MLmodel). It would
take ``mlflow.source.*`` from this process (``sys.argv[0]``, the git checkout around the working
directory); ``mlflow.tracing.context`` makes them the version's: ``mlflow.source.name`` is the
model URI, ``mlflow.source.git.commit`` its ``agentctl.io/commit`` tag (else empty, as mlflow
writes outside a repository), and ``agentctl.io/source-digest`` its tag of that name.
"""

import argparse
import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

#: What Kubernetes Deployments record of this server (``agentctl.io/model-server``): raise it
#: when a change must reach running pods; other changes of this file roll no pod by themselves.
SERVER_VERSION = "1"
#: Version tags as controller.core.state.observed names them (copied: nothing is imported here).
COMMIT_TAG = "agentctl.io/commit"
DIGEST_TAG = "agentctl.io/source-digest"
REQUEST_ID_KEY = "agentctl.io/request-id"  # trace metadata: the request that made the trace
MESSAGE_MAX = 300
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_VERSION_URI = re.compile(r"models:/([^/@]+)/(\d+)")
_LIFECYCLE = ("created", "in_progress", "completed", "failed", "incomplete", "queued")
Event = dict[str, Any]


def log(text: str, rid: str = "", exc: BaseException | str | None = None) -> None:
    """A line on stderr (the server's log), with a request id and a traceback if given."""
    if isinstance(exc, BaseException):
        exc = "".join(traceback.format_exception(exc))
    text = f"request {rid}: {text}" if rid else text
    trace = f":\n{exc.rstrip()}" if exc else ""
    print(f"agent_server: {text}{trace}", file=sys.stderr, flush=True)


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def request_id(header: str | None) -> str:
    """The caller's ``X-Request-Id`` when it is a sane token, else a new uuid4 hex."""
    return header if header is not None and _TOKEN.fullmatch(header) else uuid.uuid4().hex


def short(text: str) -> str:
    """An error message fit for a caller: no traceback, at most MESSAGE_MAX characters."""
    for marker in ("Traceback (most recent call last)", '  File "'):
        text = text.split(marker)[0]
    text = text.strip() or "error"
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def invocations_error(status: int, message: str, agent: str, version: str, rid: str) -> Event:
    return {"error_code": status, "message": short(message), "agent": agent, "version": version,
            "request_id": rid}  # fmt: skip


def openai_error(status: int, message: str, param: str | None = None) -> Event:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": short(message), "type": kind, "param": param, "code": None}}


def safe_error(
    path: str, status: int, body: bytes, agent: str, version: str, rid: str
) -> tuple[bytes, str | None]:
    """What to send instead of an error answer's ``body`` (itself when it is safe already), and
    the stack trace mlflow put in it, for the log."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    v1 = path.startswith("/v1/")
    ours = isinstance(data, dict) and ("error" if v1 else "request_id") in data
    if ours:
        return body, None
    message, trace = body.decode("utf-8", "replace") or f"HTTP {status}", None
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("detail") or message)
        trace = str(data.get("stack_trace") or "") or None
    if v1:
        return json.dumps(openai_error(status, message)).encode(), trace
    return json.dumps(invocations_error(status, message, agent, version, rid)).encode(), trace


def wants_stream(content_type: str | None, body: bytes) -> bool:
    """Whether an /invocations request asks for a stream: a JSON object with ``"stream": true``."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        return False
    return isinstance(data, dict) and data.get("stream") is True


def agent_request(body: Any, chat: bool) -> dict[str, Any]:
    """The ResponsesAgentRequest of an OpenAI Responses (or Chat Completions) request body."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    raw = body.get("input")
    items: list[Any]
    if chat:
        items = [chat_message(i, m) for i, m in enumerate(body.get("messages") or [None])]
    elif isinstance(raw, str):
        items = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and all(isinstance(item, dict) for item in raw):
        items = list(raw)
    else:
        raise BadRequest("'input' must be a string or a list of items", "input")
    if not chat and body.get("instructions") is not None:
        if not isinstance(body["instructions"], str):
            raise BadRequest("'instructions' must be a string", "instructions")
        items.insert(0, {"role": "system", "content": body["instructions"]})
    out: dict[str, Any] = {"input": items}
    for key in ("context", "custom_inputs"):
        if body.get(key) is not None:
            if not isinstance(body[key], dict):
                raise BadRequest(f"'{key}' must be an object", key)
            out[key] = body[key]
    if not isinstance(body.get("stream"), bool | None):
        raise BadRequest("'stream' must be a boolean", "stream")
    return out


def chat_message(i: int, message: Any) -> dict[str, Any]:
    """A chat message as an input item: a system, developer, user or assistant text."""
    message = message if isinstance(message, dict) else {}
    role, content = message.get("role"), message.get("content")
    if isinstance(content, list) and all(_is_text(p, "text") for p in content):
        content = "".join(str(p.get("text", "")) for p in content)
    if role not in ("system", "developer", "user", "assistant") or not isinstance(content, str):
        roles = "system, developer, user or assistant"
        raise BadRequest(f"messages[{i}] must be a text message of a {roles}", "messages")
    return {"role": role, "content": content}


def _is_text(part: Any, kind: str = "output_text") -> bool:
    return isinstance(part, dict) and part.get("type") == kind


def openai_item(item: Any) -> Any:
    """An agent's output item with the fields OpenAI's types require and mlflow leaves out."""
    if not isinstance(item, dict) or item.get("type") != "message":
        return item
    content = [{"annotations": [], **c} if _is_text(c) else c for c in item.get("content") or []]
    status = item.get("status") or "completed"
    return {**item, "role": "assistant", "status": status, "content": content}


def output_text(items: Any) -> str:
    """The text of the output messages among ``items``."""
    messages = [m for m in items or [] if isinstance(m, dict) and m.get("type") == "message"]
    return "".join(str(c["text"]) for m in messages for c in m.get("content") or [] if _is_text(c))


def response_object(
    rid: str, created: int, model: str, output: list[Any], status: str, usage: Any = None
) -> Event:
    """An OpenAI ``Response``, with every field its type requires."""
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "model": model,
        "output": [openai_item(i) for i in output], "error": None, "incomplete_details": None,
        "instructions": None, "metadata": {}, "parallel_tool_calls": False, "temperature": None,
        "top_p": None, "tool_choice": "auto", "tools": [],
        "usage": usage if isinstance(usage, dict) else None,
    }  # fmt: skip


def chat_completion(completion_id: str, created: int, model: str, output: list[Any]) -> Event:
    message = {"role": "assistant", "content": output_text(output)}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [choice], "usage": None}  # fmt: skip


def sse(data: Any, event: str | None = None) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


class InvocationsStream:
    """What a stream sends, event by event; /invocations: the agent's events as they are."""

    def __init__(self, error: Event) -> None:
        self.error = error  # what a failure says, but its message

    def start(self) -> list[Any]:
        return []

    def feed(self, event: Event) -> list[Any]:
        return [event]

    def finish(self) -> list[Any]:
        return ["[DONE]"]

    def fail(self, message: str) -> list[Any]:
        return [{"error": {**self.error, "message": short(message)}}, "[DONE]"]

    def frame(self, event: Any) -> str:
        return sse(event)


class ResponsesStream(InvocationsStream):
    """/v1/responses: OpenAI's events of one response, from a ResponsesAgent's events."""

    def __init__(self, response_id: str, model: str, created: int) -> None:
        self.ids, self.seq = (response_id, created, model), 0
        self.index: dict[str, int] = {}  # item id -> output_index
        self.added: dict[int, Any] = {}  # output_index -> the item as added
        self.done: dict[int, Any] = {}  # output_index -> the item as done
        self.text: dict[str, str] = {}  # item id -> its text so far, when its part opened here
        self.parts: set[str] = set()  # item ids whose text part the agent opened itself

    def _event(self, kind: str, **fields: Any) -> Event:
        self.seq += 1
        return {**fields, "type": kind, "sequence_number": self.seq - 1}

    def _add(self, item: dict[str, Any]) -> tuple[int, list[Event]]:
        key = str(item.get("id") or item.get("call_id") or f"#{len(self.added)}")
        if key in self.index:
            return self.index[key], []
        self.index[key] = index = len(self.added)
        self.added[index] = item = openai_item({**item, "status": "in_progress"})
        return index, [self._event("response.output_item.added", output_index=index, item=item)]

    def _done(self, index: int, item: Any) -> list[Event]:
        self.done[index] = item = openai_item(item)
        out = []
        key = next((k for k, i in self.index.items() if i == index), "")
        if key in self.text:  # the text part this server opened: closed before its item
            text = output_text([item]) or self.text[key]
            ids = {"item_id": key, "output_index": index, "content_index": 0}
            part = {"type": "output_text", "text": text, "annotations": []}
            out += [self._event("response.output_text.done", **ids, text=text, logprobs=[]),
                    self._event("response.content_part.done", **ids, part=part)]  # fmt: skip
        return [*out, self._event("response.output_item.done", output_index=index, item=item)]

    def start(self) -> list[Any]:
        response = response_object(*self.ids, [], "in_progress")
        return [self._event(f"response.{s}", response=response) for s in _LIFECYCLE[:2]]

    def feed(self, event: Event) -> list[Any]:
        kind, item, key = str(event.get("type")), event.get("item"), str(event.get("item_id"))
        fields = {k: v for k, v in event.items() if k not in ("type", "sequence_number")}
        if kind in {f"response.{s}" for s in _LIFECYCLE}:
            return []  # this server tells the response's own life
        if kind in ("response.output_item.added", "response.output_item.done"):
            if not isinstance(item, dict):
                return []
            message = item.get("type") == "message"  # first told done: added empty
            index, out = self._add({**item, "content": []} if message else item)
            if kind.endswith("done"):
                out += self._done(index, item)
            return out
        if kind == "response.output_text.delta":
            index, out = self._add({"type": "message", "id": key, "content": []})
            if key not in self.text and key not in self.parts and index not in self.done:
                part = {"type": "output_text", "text": "", "annotations": []}
                ids = {"item_id": key, "output_index": index, "content_index": 0}
                out.append(self._event("response.content_part.added", **ids, part=part))
                self.text[key] = ""
            if key in self.text:
                self.text[key] += str(event.get("delta", ""))
            fields = {"logprobs": [], "content_index": 0, **fields, "output_index": index}
            return [*out, self._event(kind, **fields)]
        if "item_id" in event:
            if key not in self.index:
                return []  # e.g. a function call's argument deltas: its done item has them all
            fields = {"content_index": 0, **fields, "output_index": self.index[key]}
            if kind == "response.content_part.added":
                self.parts.add(key)
        return [self._event(kind, **fields)]

    def finish(self) -> list[Any]:
        out = []
        for key, index in self.index.items():  # messages told by deltas only
            if index not in self.done and key in self.text:
                part = {"type": "output_text", "text": self.text[key]}
                out += self._done(index, {"type": "message", "id": key, "content": [part]})
        output = [self.done.get(i, self.added[i]) for i in sorted(self.added)]
        response = response_object(*self.ids, output, "completed")
        return [*out, self._event("response.completed", response=response)]

    def fail(self, message: str) -> list[Any]:
        said = short(message)
        output = [self.done.get(i, self.added[i]) for i in sorted(self.added)]
        response = response_object(*self.ids, output, "failed")
        response["error"] = {"code": "server_error", "message": said}
        return [self._event("error", code="server_error", message=said, param=None),
                self._event("response.failed", response=response)]  # fmt: skip

    def frame(self, event: Any) -> str:
        return sse(event, event["type"])


class ChatStream(InvocationsStream):
    """/v1/chat/completions: ``chat.completion.chunk`` events of the agent's text."""

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        self.head = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                     "model": model}  # fmt: skip
        self.streamed: set[str] = set()  # message ids whose text came as deltas
        self.first = True

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Event:
        if self.first:
            delta, self.first = {"role": "assistant", **delta}, False
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {**self.head, "choices": [choice]}

    def feed(self, event: Event) -> list[Any]:
        text, item = "", event.get("item")
        if event.get("type") == "response.output_text.delta":
            self.streamed.add(str(event.get("item_id")))
            text = str(event.get("delta", ""))
        elif event.get("type") == "response.output_item.done" and isinstance(item, dict):
            text = "" if str(item.get("id")) in self.streamed else output_text([item])
        return [self._chunk({"content": text})] if text else []

    def finish(self) -> list[Any]:
        return [self._chunk({}, "stop"), "[DONE]"]

    def fail(self, message: str) -> list[Any]:
        return [openai_error(500, message)]


async def in_thread(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """The items of the iterator ``make()`` returns, as it yields them, from a thread of its own
    (the event loop never waits on the agent) run in a copy of the caller's context; its
    exception is raised here, and stopping early closes it at its next item."""
    loop, queue, stop = asyncio.get_running_loop(), asyncio.Queue[Any](), threading.Event()

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def run() -> None:
        try:
            items = make()
            try:
                for item in items:
                    put("item", item)
                    if stop.is_set():
                        break
            finally:
                getattr(items, "close", lambda: None)()
            put("end", None)
        except BaseException as exc:
            put("error", exc)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name="agent", daemon=True).start()
    try:
        while (got := await queue.get())[0] == "item":
            yield got[1]
        if got[0] == "error":
            raise got[1]
    finally:
        stop.set()


def as_events(answer: Any) -> Iterator[Event]:
    """A ResponsesAgent's whole answer as the events a stream of it ends with: each output
    item done."""
    answer = answer if isinstance(answer, Mapping) else dict(answer)
    for item in answer.get("output") or []:
        yield {"type": "response.output_item.done", "item": item}


def is_responses_agent(model: Any) -> bool:
    from mlflow.pyfunc.model import ResponsesAgent

    try:
        raw = model.get_raw_model()
    except Exception:  # a flavor without one
        raw = None
    task = (model.metadata.metadata or {}).get("task")
    return isinstance(raw, ResponsesAgent) or task == "agent/v1/responses"


def build_app(model: Any, agent: str, version: str, aliases: bool = True) -> Any:
    """mlflow's scoring server app for ``model``, with streams on /invocations and /v1/*."""
    import pydantic
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.types.responses import ResponsesAgentRequest

    app = scoring_server.init(model)
    route = next(r for r in app.router.routes if getattr(r, "path", "") == "/invocations")
    app.router.routes.remove(route)
    mlflow_invocations, agentic = route.endpoint, is_responses_agent(model)

    def failure(exc: BaseException, rid: str, v1: bool) -> tuple[int, str]:
        """The status and message of the agent's exception, logged with its traceback."""
        log(f"{agent} version {version} failed", rid, exc)
        # Its first line only ("1 validation error for ResponsesAgentRequest"), and MLflow's
        # error code: nothing of the values or internals the agent's own code may carry.
        if isinstance(exc, pydantic.ValidationError):
            return 400, str(exc).splitlines()[0]
        if isinstance(exc, MlflowException):
            status = exc.get_http_status_code()  # type: ignore[no-untyped-call]
            return status, f"the agent raised MlflowException ({exc.error_code})"
        return (500 if v1 else 400), f"the agent raised {type(exc).__name__}"

    def error(v1: bool, rid: str, status: int, message: str, param: str | None = None) -> Response:
        if v1:
            return JSONResponse(openai_error(status, message, param), status)
        return JSONResponse(invocations_error(status, message, agent, version, rid), status)

    async def stream(payload: Event, rid: str, codec: InvocationsStream, v1: bool) -> Response:
        events = in_thread(lambda: model.predict_stream(payload))
        try:  # the first event before the answer starts: so early, a failure keeps its status
            first = [await anext(events)]
        except StopAsyncIteration:
            first = []
        except NotImplementedError:
            # An agent without predict_stream: its predict's answer, one event per output item
            # (as `mlflow models serve` answered "stream": true with predict's output).
            events = in_thread(lambda: as_events(model.predict(payload)))
            try:
                first = [await anext(events)]
            except StopAsyncIteration:
                first = []
            except Exception as exc:
                return error(v1, rid, *failure(exc, rid, v1))
        except Exception as exc:
            return error(v1, rid, *failure(exc, rid, v1))

        async def body() -> AsyncIterator[str]:
            try:
                outs = codec.start() + [out for event in first for out in codec.feed(event)]
                yield "".join(map(codec.frame, outs))
                async for event in events:
                    if outs := codec.feed(event):
                        yield "".join(map(codec.frame, outs))
                outs = codec.finish()
            except Exception as exc:
                outs = codec.fail(failure(exc, rid, v1)[1])
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            yield "".join(map(codec.frame, outs))

        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    @app.post("/invocations")  # type: ignore[untyped-decorator]
    async def invocations(request: Request) -> Response:
        body, rid = await request.body(), request.state.request_id
        if agentic and wants_stream(request.headers.get("content-type"), body):
            said = {"agent": agent, "version": version, "request_id": rid}
            return await stream(json.loads(body), rid, InvocationsStream(said), False)
        return await mlflow_invocations(request)  # type: ignore[no-any-return]

    async def openai(request: Request, chat: bool) -> Response:
        rid = request.state.request_id
        if not agentic:
            path = request.url.path
            return error(True, rid, 404, f"{path} serves ResponsesAgent models only")
        try:
            body = json.loads(await request.body())
            payload = agent_request(body, chat)
            ResponsesAgentRequest(**payload)
        except (ValueError, RecursionError) as exc:  # not JSON, or pydantic's ValidationError
            said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return error(True, rid, 400, f"invalid request: {said}")
        except BadRequest as exc:
            return error(True, rid, 400, exc.message, exc.param)
        name = body["model"] if isinstance(body.get("model"), str) and body["model"] else agent
        answer_id = f"chatcmpl-{uuid.uuid4().hex}" if chat else f"resp_{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream"):
            codec = (ChatStream if chat else ResponsesStream)(answer_id, name, created)
            return await stream(payload, rid, codec, True)
        try:
            result = await asyncio.to_thread(model.predict, payload)
        except Exception as exc:
            return error(True, rid, *failure(exc, rid, True))
        output = list(result.get("output") or [])
        if chat:
            return JSONResponse(chat_completion(answer_id, created, name, output))
        usage = result.get("usage")
        answer = response_object(answer_id, created, name, output, "completed", usage)
        if result.get("custom_outputs") is not None:  # the SDK keeps it in model_extra
            answer["custom_outputs"] = result["custom_outputs"]
        return JSONResponse(answer)

    async def alias_version(alias: str) -> Response:
        """The version an alias of this version's registered model names now (the local router
        pins OpenAI's ``model: <agent>@<alias>`` with it): 200 ``{"version"}``, 404 if none."""
        found = _VERSION_URI.fullmatch(sys.argv[0])
        if found is None or not re.fullmatch(r"[\w\-]{1,255}", alias):
            return JSONResponse({"message": f"no alias '{alias[:100]}'"}, 404)
        try:
            named = await asyncio.to_thread(aliased, found.group(1), alias)
        except Exception as exc:  # the registry did not answer: not a 404, the router asks again
            log(f"alias {alias} of {found.group(1)} could not be read", "", exc)
            return JSONResponse({"message": "the registry did not answer"}, 503)
        if named is None:
            return JSONResponse({"message": f"no alias '{alias}'"}, 404)
        return JSONResponse({"version": named})

    if aliases:  # for the local router only: a server on 127.0.0.1, not one behind a Gateway
        app.get("/agentctl/aliases/{alias}")(alias_version)

    @app.post("/v1/responses")  # type: ignore[untyped-decorator]
    async def responses(request: Request) -> Response:
        return await openai(request, chat=False)

    @app.post("/v1/chat/completions")  # type: ignore[untyped-decorator]
    async def chat_completions(request: Request) -> Response:
        return await openai(request, chat=True)

    return app


class Guard:
    """ASGI middleware around the app: the request id (``scope["state"]["request_id"]``, the
    answer's ``X-Request-Id``), the trace metadata while the request runs, and no error answer
    without a safe body (:func:`safe_error`), an exception's too."""

    def __init__(
        self, app: Any, agent: str, version: str, trace_context: Callable[[str], Any]
    ) -> None:
        self.app, self.agent, self.version, self.trace_context = app, agent, version, trace_context

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]
        raw = dict(scope.get("headers") or []).get(b"x-request-id")
        rid = request_id(raw.decode("latin-1") if raw is not None else None)
        scope.setdefault("state", {})["request_id"] = rid
        who = f"{self.agent} version {self.version}"
        held: dict[str, Any] = {}  # an error answer's start, and its body so far
        sent = False

        async def error(status: int, body: bytes, headers: list[Any]) -> None:
            nonlocal sent
            body, trace = safe_error(scope["path"], status, body, self.agent, self.version, rid)
            if trace:
                log(f"{who} answered {status}", rid, trace)
            drop = (b"content-length", b"content-type")
            headers = [(k, v) for k, v in headers if k.lower() not in drop]
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", b"%d" % len(body))]
            sent = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        async def guarded(message: Any) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
                if message["status"] >= 400:  # read its body whole, then replace it if need be
                    held.update(start=message, body=b"")
                    return
                sent = True
            elif message["type"] == "http.response.body" and held:
                held["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    start = held.pop("start")
                    await error(start["status"], held.pop("body"), start["headers"])
                return
            await send(message)

        with self.trace_context(rid):
            try:
                await self.app(scope, receive, guarded)
            except Exception as exc:
                log(f"{who} failed", rid, exc)
                if not sent:
                    await error(500, b"", [(b"x-request-id", rid.encode())])
        return None


def provenance(model_uri: str, tags: Mapping[str, str]) -> dict[str, str]:
    """The trace metadata that says which version answered, over what mlflow finds around this
    process: the git commit the version was logged at, else none ("", as mlflow writes outside
    a repository), and neither this host's branch nor its repository."""
    out = {"mlflow.source.name": model_uri, "mlflow.source.git.commit": tags.get(COMMIT_TAG, ""),
           "mlflow.source.git.branch": "", "mlflow.source.git.repoURL": ""}  # fmt: skip
    return {**out, DIGEST_TAG: tags[DIGEST_TAG]} if DIGEST_TAG in tags else out


def version_tags(name: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return dict(MlflowClient().get_model_version(name, version).tags)
    except MlflowException as exc:
        log(f"the tags of {name} version {version} could not be read: {short(str(exc))}")
        return {}


def aliased(name: str, alias: str) -> int | None:
    """The version ``alias`` names in registered model ``name``; None if it names none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return int(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


class NoPings(logging.Filter):
    """Drops uvicorn's access lines of ``GET /ping`` and ``/health``: readiness probes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            return args[2].split("?", 1)[0] not in ("/ping", "/health")
        return True


def serve(app: Any, host: str, port: int) -> None:
    """uvicorn, one worker, as ``mlflow models serve`` runs it (its default log level), logging
    as ``UVICORN_LOG_CONFIG`` says when it is set (the local supervisor's), without the pings."""
    import uvicorn

    log_config = os.environ.get("UVICORN_LOG_CONFIG") or uvicorn.config.LOGGING_CONFIG
    config = uvicorn.Config(app, host=host, port=port, log_config=log_config)
    logging.getLogger("uvicorn.access").addFilter(NoPings())
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The model server of one model version.")
    parser.add_argument("--model-uri", required=True, help="models:/<model>/<version>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--agent", help="the agent's name (default: the model's)")
    parser.add_argument("--version", help="the version (default: the URI's)")
    args = parser.parse_args(argv)
    found = _VERSION_URI.fullmatch(args.model_uri)
    agent = args.agent or (found.group(1) if found else args.model_uri)
    version = args.version or (found.group(2) if found else "")
    sys.argv[0] = args.model_uri  # mlflow's default source: not this file's path on the host

    import mlflow
    from mlflow.pyfunc import scoring_server

    load = scoring_server.load_model_with_mlflow_config
    try:  # before listening
        model = load(args.model_uri)  # type: ignore[no-untyped-call]
    except Exception as exc:  # its traceback from mlflow's frame on: the supervisor takes the
        # frames outside the Python installation for the agent's, and this file may be one
        frames = exc.__traceback__
        traceback.print_exception(exc.with_traceback(frames.tb_next if frames else None))
        sys.exit(1)
    metadata = provenance(args.model_uri, version_tags(*found.groups()) if found else {})

    context = getattr(mlflow.tracing, "context", None)
    if context is None:  # an MLflow older than 3.x's tracing.context (a custom image)
        log("this MLflow has no mlflow.tracing.context: traces keep MLflow's own provenance")

    def trace_context(rid: str) -> Any:
        if context is None:
            return contextlib.nullcontext()
        return context(metadata={**metadata, REQUEST_ID_KEY: rid})

    kind = "a ResponsesAgent" if is_responses_agent(model) else "a pyfunc model"
    where = f"http://{args.host}:{args.port}"
    log(f"serving {args.model_uri} ({kind}; agent {agent}, version {version}) on {where}")
    log(f"its traces' metadata: {json.dumps(metadata)}")
    loopback = args.host in ("127.0.0.1", "::1", "localhost")
    app = Guard(build_app(model, agent, version, loopback), agent, version, trace_context)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
