"""agentctl's model server (controller/adapters/local/agent_server.py) as a real process, on
versions logged and registered against the real MLflow server: the example support bot (its
``fail_on`` fault set), an agent written here that streams slowly (and fails at load, or midway,
when asked to), and a plain pyfunc model, served both as ``python -m`` and as ``python -c
<source>``, with the real ``openai`` client, and beside ``mlflow models serve``."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.adapters.local import access_log
from controller.adapters.local.rundir import RunDir
from controller.adapters.local.tracebacks import agent_failure
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "controller" / "adapters" / "local" / "agent_server.py"
BOT = REPO / "manifests" / "agents" / "support_bot"
QUESTION = {"input": [{"role": "user", "content": "How do I get a refund?"}]}
REFUND = "Hi, this is the support bot. Refunds are issued within 5 business days."
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32

SLOW = """
import os, time
import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

WORDS = ["one", "two", "three", "four", "five"]
if os.environ.get("SLOW_FAIL_AT_LOAD"):
    raise ConnectionError("the vector store at 127.0.0.1:1 refused the connection")


def question(request):
    return str(request.input[-1].model_dump().get("content"))


class Slow(ResponsesAgent):
    def predict(self, request):
        text = " ".join(WORDS)
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=text, id="m1")])

    def predict_stream(self, request):
        for i, word in enumerate(WORDS):
            if i and "explode" in question(request):
                raise RuntimeError("injected fault mid-stream")
            if i:
                time.sleep(0.3)
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=word + " ", item_id="m1"),
                                            custom_outputs={"produced": time.time()})
        yield ResponsesAgentStreamEvent(type="response.output_item.done",
                                        item=self.create_text_output_item(text=" ".join(WORDS), id="m1"))


mlflow.models.set_model(Slow())
"""

#: A ResponsesAgent with predict only (as the example summarizer): "stream": true still answers.
PLAIN = """
import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse


class Plain(ResponsesAgent):
    def predict(self, request):
        item = self.create_text_output_item(text="all at once", id="p1")
        return ResponsesAgentResponse(output=[item], custom_outputs={"k": "v"})


mlflow.models.set_model(Plain())
"""

DOUBLE = """
import mlflow


class Double(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


mlflow.models.set_model(Double())
"""

#: Logs and registers each model, then asks each agent itself (predict, predict_stream).
LOG = """
import json, sys, mlflow
uri, specs = sys.argv[1], json.loads(sys.argv[2])
mlflow.set_tracking_uri(uri)
out = {}
for s in specs:
    mlflow.set_experiment(s["experiment"])
    info = mlflow.pyfunc.log_model(name="agent", python_model=s["code"], model_config=s.get("config"),
                                   registered_model_name=s["name"], pip_requirements=["mlflow==3.17.2"])
    out[s["name"]] = {"version": int(info.registered_model_version), "model_id": info.model_id}
    if s.get("ask"):
        model = mlflow.pyfunc.load_model(info.model_uri)
        out[s["name"]]["predict"] = model.predict(s["ask"])
        out[s["name"]]["stream"] = list(model.predict_stream(s["ask"]))
print("RESULT " + json.dumps(out))
"""


@dataclass
class Registered:
    tracking_uri: str
    names: dict[str, str]  # role -> registered model name
    info: dict[str, Any]  # name -> version, model_id, predict, stream

    def uri(self, role: str) -> str:
        name = self.names[role]
        return f"models:/{name}/{self.info[name]['version']}"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def server_env(registered: Registered, role: str, **extra: str) -> dict[str, str]:
    name = registered.names[role]
    return dict(os.environ, MLFLOW_TRACKING_URI=registered.tracking_uri,
                MLFLOW_EXPERIMENT_NAME=f"/agentctl/{name}", PYTHONSAFEPATH="1", **extra)  # fmt: skip


def start(argv: list[str], env: dict[str, str], cwd: Path, log: Path, port: int) -> Server:
    """Start a model server; wait for its /ping (it loads its model before listening)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    server = Server(proc, port, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return server
        try:
            if requests.get(f"{server.url}/ping", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"not ready:\n{server.output()[-4000:]}")


def agent_server(registered: Registered, role: str, tmp: Path, form: str, cwd: Path | None = None, **env: str) -> Server:  # fmt: skip
    port = free_port()
    args = ["--model-uri", registered.uri(role), "--port", str(port)]
    head = ["-m", "controller.adapters.local.agent_server"] if form == "-m" else ["-c", SOURCE.read_text()]  # fmt: skip
    return start([sys.executable, *head, *args], server_env(registered, role, **env),
                 cwd or tmp, tmp / f"{role}{form}.log", port)  # fmt: skip


@pytest.fixture(scope="module")
def registered(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    """The three models, logged and registered once for the module (names of their own)."""
    work = tmp_path_factory.mktemp("agents")
    suffix = uuid.uuid4().hex[:6]
    names = {"bot": f"as-bot-{suffix}", "slow": f"as-slow-{suffix}", "double": f"as-double-{suffix}",
             "plain": f"as-plain-{suffix}"}  # fmt: skip
    shutil.copy(BOT / "agent.py", work / "bot.py")
    (work / "bot.yaml").write_text((BOT / "config.yaml").read_text() + 'fail_on: "explode"\n')
    (work / "slow.py").write_text(SLOW)
    (work / "double.py").write_text(DOUBLE)
    (work / "plain.py").write_text(PLAIN)
    specs = [
        {
            "name": names["bot"],
            "code": str(work / "bot.py"),
            "config": str(work / "bot.yaml"),
            "ask": QUESTION,
        },
        {"name": names["slow"], "code": str(work / "slow.py"), "ask": QUESTION},
        {"name": names["double"], "code": str(work / "double.py")},
        {"name": names["plain"], "code": str(work / "plain.py")},
    ]
    for spec in specs:
        spec["experiment"] = f"/agentctl/{spec['name']}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", LOG, mlflow_server.url, json.dumps(specs)], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    bot = result[names["bot"]]["version"]
    client.set_model_version_tag(names["bot"], str(bot), "agentctl.io/commit", COMMIT)
    client.set_model_version_tag(names["bot"], str(bot), "agentctl.io/source-digest", DIGEST)
    return Registered(mlflow_server.url, names, result)


@pytest.fixture(scope="module")
def bot(registered: Registered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The support bot as ``python -m``, in this checkout (a git repository with a HEAD) as its
    working directory, logging as the local supervisor has uvicorn log."""
    tmp = tmp_path_factory.mktemp("bot")
    config = access_log.write_config(tmp)
    server = agent_server(registered, "bot", tmp, "-m", cwd=REPO, UVICORN_LOG_CONFIG=str(config))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow(registered: Registered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The slow agent as ``python -c <source>``, also in this checkout."""
    server = agent_server(registered, "slow", tmp_path_factory.mktemp("slow"), "-c", cwd=REPO)
    yield server
    server.stop()


def post(server: Server, path: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)


def sse(server: Server, path: str, body: Any) -> list[tuple[float, str | None, Any]]:
    """The events of a streamed answer: (wall-clock arrival, event name, data), as they come."""
    out: list[tuple[float, str | None, Any]] = []
    with requests.post(f"{server.url}{path}", json=body, stream=True, timeout=60) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        buffer = b""
        for chunk in resp.iter_content(chunk_size=None):
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.decode().splitlines())
                data = fields["data"]
                out.append((time.time(), fields.get("event"), data if data == "[DONE]" else json.loads(data)))  # fmt: skip
    return out


def test_both_forms_load_the_model_before_listening_and_answer_as_predict(
    registered: Registered, bot: Server, slow: Server
) -> None:
    for server, role in ((bot, "bot"), (slow, "slow")):
        assert server.proc.poll() is None, server.output()
        answer = post(server, "/invocations", QUESTION)
        assert answer.status_code == 200, answer.text
        assert answer.json() == registered.info[registered.names[role]]["predict"]
        assert len(answer.headers["X-Request-Id"]) == 32
        assert requests.get(f"{server.url}/version", timeout=10).text == "3.17.2"
        assert "serving " + registered.uri(role) in server.output()
    assert REFUND in json.dumps(post(bot, "/invocations", QUESTION).json())


def test_a_stream_is_predict_stream_s_events_sent_as_they_are_produced(
    registered: Registered, bot: Server, slow: Server
) -> None:
    events = sse(bot, "/invocations", {**QUESTION, "stream": True})
    assert [data for _, _, data in events] == [*registered.info[registered.names["bot"]]["stream"], "[DONE]"]  # fmt: skip
    events = sse(slow, "/invocations", {**QUESTION, "stream": True})
    deltas = [(at, data) for at, _, data in events if data != "[DONE]" and "delta" in data]
    assert "".join(d["delta"] for _, d in deltas) == "one two three four five "
    # Each arrived as it was produced (0.3 s apart), not when the next one or the end was.
    lags = [at - d["custom_outputs"]["produced"] for at, d in deltas]
    assert all(-0.05 < lag < 0.2 for lag in lags), lags
    assert deltas[-1][0] - deltas[0][0] > 1.0


def test_the_openai_client_creates_and_streams_responses_and_chat_completions(
    bot: Server, slow: Server
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{bot.url}/v1", api_key="x", max_retries=0)
    response = client.responses.create(model="gpt-x", input="How do I get a refund?")
    assert response.output_text == REFUND and response.model == "gpt-x"
    assert response.id.startswith("resp_") and response.status == "completed"
    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "refund?"}])  # fmt: skip
    assert chat.choices[0].message.content == REFUND
    chunks = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "refund?"}], stream=True)  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip() == REFUND

    slow_client = OpenAI(base_url=f"{slow.url}/v1", api_key="x", max_retries=0)
    for _ in range(2):  # the first: the client's own warm-up (imports, validators) takes ~1 s
        arrived = []
        with slow_client.responses.stream(model="x", input=[{"role": "user", "content": "go"}],
                                          instructions="count") as stream:  # fmt: skip
            for event in stream:
                if event.type == "response.output_text.delta":
                    arrived.append((time.monotonic(), event.delta, event.snapshot))
            final = stream.get_final_response()
    assert [d for _, d, _ in arrived] == ["one ", "two ", "three ", "four ", "five "]
    assert arrived[-1][2] == "one two three four five "
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrived)]
    assert all(gap > 0.15 for gap in gaps), gaps  # each delta as produced, 0.3 s apart
    assert final.output_text == "one two three four five" and final.status == "completed"


def test_an_agent_that_raises_gets_a_short_body_and_its_traceback_goes_to_the_log(
    registered: Registered, bot: Server
) -> None:
    bad = {"input": [{"role": "user", "content": "please explode"}]}
    answer = post(bot, "/invocations", bad, **{"X-Request-Id": "call-42"})
    assert answer.status_code == 400  # as mlflow answers: the rollout gates count it
    body = answer.json()
    assert set(body) == {"error_code", "message", "agent", "version", "request_id"}
    assert body["error_code"] == 400 and body["request_id"] == "call-42" == answer.headers["X-Request-Id"]  # fmt: skip
    assert body["agent"] == registered.names["bot"] and body["version"] == str(registered.info[registered.names["bot"]]["version"])  # fmt: skip
    assert "Traceback" not in answer.text and 'File "' not in answer.text and len(body["message"]) <= 300  # fmt: skip
    log = bot.output()
    at = log.index("request call-42:")
    assert "Traceback" in log[at:] and "RuntimeError: injected fault" in log[at:]

    openai_answer = post(bot, "/v1/responses", {"model": "m", "input": "please explode"},
                         **{"X-Request-Id": "x" * 129})  # fmt: skip
    assert openai_answer.status_code == 500
    assert openai_answer.json() == {"error": {"message": "the agent raised RuntimeError",
                                              "type": "server_error", "param": None, "code": None}}  # fmt: skip
    assert len(openai_answer.headers["X-Request-Id"]) == 32  # not a sane id: a new one
    malformed = post(bot, "/v1/responses", {"model": "m", "input": 7})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "invalid_request_error"
    assert malformed.json()["error"]["param"] == "input"
    not_json = requests.post(f"{bot.url}/v1/responses", data=b"{", timeout=10)
    assert not_json.status_code == 400 and "error" in not_json.json()


def test_a_stream_that_fails_midway_ends_with_an_error_event_and_no_traceback(slow: Server) -> None:
    bad = {"input": [{"role": "user", "content": "explode"}], "stream": True}
    events = sse(slow, "/invocations", bad)
    assert [data for _, _, data in events][-2:] == [
        {"error": {"message": "the agent raised RuntimeError", "agent": events[-2][2]["error"]["agent"],
                   "version": events[-2][2]["error"]["version"], "request_id": events[-2][2]["error"]["request_id"]}},
        "[DONE]",
    ]  # fmt: skip
    assert "delta" in events[0][2]
    events = sse(slow, "/v1/responses", {"model": "m", "input": "explode", "stream": True})
    name, data = events[-2][1], events[-2][2]
    assert name == "error" and data["type"] == "error" and data["code"] == "server_error"
    name, data = events[-1][1], events[-1][2]
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert "Traceback" not in json.dumps([e[2] for e in events])
    assert "RuntimeError: injected fault mid-stream" in slow.output()


def test_a_plain_pyfunc_model_answers_as_mlflow_models_serve(
    registered: Registered, tmp_path: Path
) -> None:
    ours = agent_server(registered, "double", tmp_path, "-m")
    port = free_port()
    env = server_env(registered, "double")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    theirs = start([sys.executable, "-m", "mlflow", "models", "serve", "-m", registered.uri("double"),
                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                   env, tmp_path, tmp_path / "mlflow-serve.log", port)  # fmt: skip
    try:
        split = {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}
        bodies: list[tuple[str, bytes]] = [
            ("application/json", json.dumps({"dataframe_split": split}).encode()),
            ("application/json", json.dumps({"dataframe_records": [{"a": 1}, {"a": 5}]}).encode()),
            ("application/json", json.dumps({"inputs": [[1, 2], [3, 4]]}).encode()),
            ("text/csv", b"a,b\n1,2\n3,4\n"),
            ("application/json", json.dumps({"stream": True, "inputs": [[1]]}).encode()),
        ]
        for content_type, body in bodies:
            a, b = (requests.post(f"{s.url}/invocations", data=body, timeout=60,
                                  headers={"content-type": content_type}) for s in (ours, theirs))  # fmt: skip
            assert (a.status_code, a.json()) == (b.status_code, b.json()), body
            assert a.status_code == 200
        # A model that raises: mlflow's status and message, less its stack trace.
        a, b = (
            post(s, "/invocations", {"inputs": {"a": [1, 2]}}) for s in (ours, theirs)
        )  # dict * 2
        assert a.status_code == b.status_code == 400
        assert "Traceback" in b.json()["stack_trace"] and "Traceback" not in a.text
        assert a.json()["message"] == b.json()["message"]
        assert "TypeError" in ours.output()
        # A wrong input: its message cut at 300 characters.
        a, b = (post(s, "/invocations", {"nothing": 1}) for s in (ours, theirs))
        assert a.status_code == b.status_code == 400
        cut, whole = a.json()["message"], b.json()["message"]
        assert len(whole) > 300 and len(cut) == 300 and cut.endswith("…")
        assert cut.startswith("The input must be a JSON dictionary with exactly one of")
        openai_answer = post(ours, "/v1/responses", {"model": "m", "input": "hi"})
        assert openai_answer.status_code == 404
        assert openai_answer.json()["error"]["type"] == "invalid_request_error"
    finally:
        ours.stop()
        theirs.stop()


def wait_for_trace(registered: Registered, role: str, rid: str) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient(registered.tracking_uri)
    experiment = client.get_experiment_by_name(f"/agentctl/{registered.names[role]}")
    assert experiment is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for trace in client.search_traces(locations=[experiment.experiment_id], max_results=100):
            if trace.info.trace_metadata.get("agentctl.io/request-id") == rid:
                return trace
        time.sleep(0.5)
    raise AssertionError(f"no trace of request {rid}")


def test_traces_carry_the_served_version_s_provenance_not_the_checkout_s(
    registered: Registered, bot: Server, slow: Server
) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    assert post(bot, "/invocations", QUESTION, **{"X-Request-Id": "trace-bot"}).status_code == 200
    sse(slow, "/invocations", {**QUESTION, "stream": True})  # predict_stream's trace too
    assert post(slow, "/v1/responses", {"model": "m", "input": "hi"}, **{"X-Request-Id": "trace-slow"}).status_code == 200  # fmt: skip
    bot_trace = wait_for_trace(registered, "bot", "trace-bot").info.trace_metadata
    assert bot_trace["mlflow.source.git.commit"] == COMMIT != head
    assert bot_trace["mlflow.source.name"] == registered.uri("bot")
    assert bot_trace["agentctl.io/source-digest"] == DIGEST
    assert bot_trace["mlflow.modelId"] == registered.info[registered.names["bot"]]["model_id"]
    assert bot_trace["mlflow.source.git.branch"] == bot_trace["mlflow.source.git.repoURL"] == ""
    slow_trace = wait_for_trace(registered, "slow", "trace-slow").info.trace_metadata
    assert slow_trace["mlflow.source.git.commit"] == ""  # no tag: no commit, not the checkout's
    assert slow_trace["mlflow.source.name"] == registered.uri("slow")
    assert slow_trace["mlflow.modelId"] == registered.info[registered.names["slow"]]["model_id"]
    assert "agentctl.io/source-digest" not in slow_trace


def test_the_supervisor_runs_it_in_a_directory_of_its_own_without_pings_in_its_log(
    registered: Registered, tmp_path: Path
) -> None:
    """ModelServer's default command, as the daemon would run it (no cwd given)."""
    import aiohttp

    from controller.adapters.local.supervisor import ModelServer, cwd_for

    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    name, version = registered.names["bot"], registered.info[registered.names["bot"]]["version"]
    env = {k: v for k, v in server_env(registered, "bot").items() if not k.startswith("UVICORN_")}

    async def main() -> tuple[str, Path]:
        async with aiohttp.ClientSession() as session:
            server = ModelServer("bot", name, version, env=env, session=session, interval=0.05,
                                 log_path=run_dir.server_log("bot", version))  # fmt: skip
            server.start()
            try:
                await server.wait_ready(180)
                async with session.post(f"{server.url}/invocations", json=QUESTION) as resp:
                    assert resp.status == 200
                await asyncio.sleep(0.5)  # ten pings more
                assert server.pid is not None
                return os.readlink(f"/proc/{server.pid}/cwd"), server.log_path
            finally:
                await server.stop(drain=0, grace=10)

    cwd, log_path = asyncio.run(asyncio.wait_for(main(), 240))
    own = cwd_for(log_path)
    assert cwd == str(own) and oct(own.stat().st_mode & 0o777) == "0o700"
    log = log_path.read_text()
    assert "controller.adapters.local.agent_server" in log and "/ping" not in log
    assert '"POST /invocations HTTP/1.1" 200' in log


def test_an_agent_that_fails_to_load_never_listens_and_the_supervisor_names_its_frame(
    registered: Registered, tmp_path: Path
) -> None:
    server = agent_server(registered, "slow", tmp_path, "-m", SLOW_FAIL_AT_LOAD="1")
    assert server.proc.wait(timeout=60) == 1
    said = agent_failure(server.output())
    assert said is not None and said.startswith("slow.py:"), server.output()[-3000:]
    assert "ConnectionError: the vector store" in said and "agent_server" not in said, said


def test_an_agent_without_predict_stream_streams_its_predict_answer(
    registered: Registered, tmp_path: Path
) -> None:
    """As `mlflow models serve` answered "stream": true with predict's output: one event per
    output item, and OpenAI's stream, custom outputs kept on the non-streamed response."""
    from openai import OpenAI

    server = agent_server(registered, "plain", tmp_path, "-m")
    try:
        events = sse(server, "/invocations", {**QUESTION, "stream": True})
        assert [d["type"] for _, _, d in events[:-1]] == ["response.output_item.done"]
        assert events[0][2]["item"]["content"][0]["text"] == "all at once"
        assert events[-1][2] == "[DONE]"
        client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        with client.responses.stream(model="plain", input="hi") as stream:
            final = stream.get_final_response()
        assert final.output_text == "all at once"
        answer = client.responses.create(model="plain", input="hi")
        assert answer.model_extra is not None and answer.model_extra["custom_outputs"] == {"k": "v"}
    finally:
        server.stop()


def test_through_the_router_each_event_arrives_as_it_is_produced(slow: Server) -> None:
    """The real router (as the daemon runs it) in front of the real server of the slow agent:
    each streamed event reaches the caller when the agent yields it, not when the next does."""
    import aiohttp
    from aiohttp import web

    from controller.adapters.local.router import Router
    from controller.adapters.local.routing import Route
    from controller.adapters.local.supervisor import ModelServer

    async def run() -> list[tuple[float, dict[str, Any]]]:
        async with aiohttp.ClientSession() as session:
            served = ModelServer("slow", "slow", 1, env={}, log_path=Path(os.devnull),
                                 session=session, port=slow.port)  # fmt: skip
            served.ready = True
            router = Router({"slow": {1: served}})
            router.set_route("slow", Route.of({1: 100}))
            runner = web.AppRunner(router.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/agents/slow/invocations"
            out: list[tuple[float, dict[str, Any]]] = []
            try:
                async with session.post(url, json={**QUESTION, "stream": True}) as resp:
                    assert resp.status == 200 and resp.headers["X-Agentctl-Version"] == "1"
                    buffer = b""
                    async for chunk in resp.content.iter_any():
                        buffer += chunk
                        while b"\n\n" in buffer:
                            block, buffer = buffer.split(b"\n\n", 1)
                            data = block.decode().removeprefix("data: ")
                            if data != "[DONE]":
                                out.append((time.time(), json.loads(data)))
            finally:
                await runner.cleanup()
            return out

    events = asyncio.run(run())
    deltas = [(at, d) for at, d in events if "delta" in d]
    assert len(deltas) == 5
    lags = [at - d["custom_outputs"]["produced"] for at, d in deltas]
    assert all(-0.05 < lag < 0.2 for lag in lags), lags
    assert deltas[-1][0] - deltas[0][0] > 1.0
