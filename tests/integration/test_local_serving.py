"""Local serving with real model servers (`mlflow models serve`) of the example support bot,
behind the real router, driven by the installed `agentctl` against the real MLflow server.

Three versions of the support bot differ only in their greeting, its system prompt ("v1 says",
"v2 says", ...), so both the answer and the X-Agentctl-Version header tell which version answered.
"""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.controller import AGENTCTL
from tests.support.local import LOCAL, QUESTION, processes_of
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration

MANIFEST = """\
apiVersion: agentctl.io/v1alpha1
kind: Agent
metadata:
  name: support-bot
spec:
  source:
    code: agents/support_bot/agent.py
    config: agents/support_bot/config.yaml
    pipRequirements: [mlflow==3.17.2]
  versions: [1, 2, 3]
  aliases:
    champion: 1
    challenger: 2
    candidate: 3
  serving:
{serving}
"""


SPLIT_80_20 = """
traffic:
  - alias: champion
    percent: 80
  - alias: challenger
    percent: 20
"""


def write_manifest(manifests: Path, serving: str) -> None:
    body = MANIFEST.format(serving=textwrap.indent(textwrap.dedent(serving).strip(), "    "))
    (manifests / "support-bot.yaml").write_text(body)


def binomial_ok(hits: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """``hits`` out of ``n`` is within ``sigmas`` standard deviations of n*p (4 sigma: a correct
    router fails this about once in 16,000 runs)."""
    return abs(hits - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@dataclass
class Serving:
    root: Path
    manifests: Path
    run_dir: Path
    agentctl: Any
    client: Any
    tracking_uri: str

    @property
    def router(self) -> str:
        info = json.loads((self.run_dir / "daemon.json").read_text())
        return str(info["router"])

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir / "state.json").read_text()))

    def ask(self, session: requests.Session, body: Any = QUESTION) -> requests.Response:
        return session.post(f"{self.router}/agents/support-bot/invocations", json=body, timeout=60)


@pytest.fixture
def serving(examples: Path, agentctl: Any, client: Any, proxy: CountingProxy) -> Iterator[Serving]:
    """Versions 1-3 of the support bot, registered by `agentctl apply`; `agentctl down` and a
    check that no process is left behind after the test."""
    root = examples.parent
    (examples / "summarizer.yaml").unlink()
    # The greeting is the support bot's system prompt (the Prompt support-system, bound by the
    # example's manifest): each edit is a new prompt version and a new agent version pinned to it.
    system = examples / "agents" / "support_bot" / "prompts" / "system.txt"
    for v in (1, 2, 3):
        system.write_text(f"v{v} says hi.\n")
        result = agentctl("apply", str(examples))  # the registry target: one new version each
        assert result.code == 0, result.err
        assert f"version {v}" in result.out, result.out
    run_dir = examples.parent.parent / ".agentctl"  # the agentctl fixture pins it there
    s = Serving(root, examples, run_dir, agentctl, client, proxy.url)
    try:
        yield s
    finally:
        down = agentctl("down", env=LOCAL)
        assert down.code == 0, down.err
        deadline = time.monotonic() + 15
        while processes_of(run_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(run_dir) == [], "agentctl down left processes behind"


def test_split_shadow_metrics_traces_and_a_second_apply_that_touches_nothing(
    serving: Serving, proxy: CountingProxy
) -> None:
    write_manifest(serving.manifests, SPLIT_80_20 + "shadow:\n  alias: candidate\n  percent: 30\n")
    applied = serving.agentctl("apply", str(serving.manifests), env=LOCAL)
    assert applied.code == 0, applied.err + applied.out
    assert "support-bot.traffic: created (v1 80%, v2 20%)" in applied.out
    assert "support-bot.shadow: created (v3 30%)" in applied.out

    n = 1000
    with requests.Session() as http, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: serving.ask(http), range(n)))
    assert all(a.status_code == 200 for a in answers)
    by_header = Counter(a.headers["X-Agentctl-Version"] for a in answers)
    by_text = Counter(a.json()["output"][0]["content"][0]["text"].split(" ")[0] for a in answers)
    assert by_header.keys() <= {"1", "2"}, "callers saw the shadow's answers"
    assert by_text == {"v1": by_header["1"], "v2": by_header["2"]}
    assert binomial_ok(by_header["2"], n, 0.20), by_header

    # The shadow got about 30 % of the requests as copies: counted by the router, and each one
    # received by version 3's own model server (its access log). Copies are not waited for, so
    # the last few may still be in flight when the callers have their answers: read both until
    # they agree (or 15 s pass, and the assertion below shows the difference).
    deadline = time.monotonic() + 15
    while True:
        metrics = requests.get(f"{serving.router}/metrics", timeout=10).text
        shadow = _sample(metrics, "agentctl_router_requests_total", version="3", role="shadow")
        received = {
            v: (serving.run_dir / "logs" / f"support-bot-v{v}.log")
            .read_text()
            .count('"POST /invocations HTTP/1.1" 200')
            for v in ("1", "2", "3")
        }
        if received["3"] == shadow or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # The router chose about 30 % for a copy; a copy beyond its bound of copies in flight is
    # dropped and counted (a loaded machine: the shadow's server answers slower), never queued.
    dropped = _sample(metrics, "agentctl_router_shadow_dropped_total", agent="support-bot")
    assert binomial_ok(int(shadow + dropped), n, 0.30), (shadow, dropped)
    primary = sum(
        _sample(metrics, "agentctl_router_requests_total", version=v, role="primary")
        for v in ("1", "2")
    )
    assert primary == n
    assert received == {"1": by_header["1"], "2": by_header["2"], "3": shadow}
    # The run directory is private, and the model servers' logs hold no readiness pings.
    assert stat.S_IMODE(serving.run_dir.stat().st_mode) == 0o700
    for v in ("1", "2", "3"):
        log = serving.run_dir / "logs" / f"support-bot-v{v}.log"
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert "/ping" not in log.read_text()

    # Their traces reach the tracking server, in the agent's experiment. (A single-worker sqlite
    # tracking server flooded with 1,300 traces in seconds may drop a few: MLflow logs each.)
    v3 = serving.client.get_model_version("support-bot", "3")
    v3_model_id = v3.model_id or v3.source.removeprefix("models:/")  # REST leaves model_id out
    exp = serving.client.get_experiment_by_name("/agentctl/support-bot")
    deadline, traced, last = time.monotonic() + 120, 0, -1
    while traced < shadow and time.monotonic() < deadline:
        if traced >= 0.9 * shadow and traced == last:
            break  # the rest were dropped, not late
        last = traced
        time.sleep(3)
        traced = _count_traces(serving.client, exp.experiment_id, v3_model_id)
    assert traced >= 0.9 * shadow, (traced, shadow)

    # An agent that raises is answered with 400, and the router counts it as an error.
    bad = serving.ask(requests.Session(), {"input": [{"role": "assistant", "content": "?"}]})
    assert bad.status_code == 400, bad.text
    metrics = requests.get(f"{serving.router}/metrics", timeout=10).text
    errors = sum(
        _sample(metrics, "agentctl_router_request_errors_total", version=v, role="primary")
        for v in ("1", "2")
    )
    assert errors == 1

    # A second apply, from a new process, changes nothing and restarts nothing.
    pids = {v: s["pid"] for v, s in serving.state()["agents"]["support-bot"]["versions"].items()}
    writes = len(_registry_writes(proxy))
    again = serving.agentctl("apply", str(serving.manifests), env=LOCAL)
    assert again.code == 0, again.err
    assert "No changes." in again.out
    after = serving.state()["agents"]["support-bot"]["versions"]
    assert {v: s["pid"] for v, s in after.items()} == pids
    assert all(s["restarts"] == 0 for s in after.values())
    assert len(_registry_writes(proxy)) == writes
    plan = serving.agentctl("plan", str(serving.manifests), "--detailed-exitcode", env=LOCAL)
    assert plan.code == 0, plan.out + plan.err

    # The daemon dies without cleaning up (SIGKILL): its servers run on, and `agentctl down`
    # (in the fixture's teardown, which checks that nothing is left) still finds and stops them.
    daemon = json.loads((serving.run_dir / "daemon.json").read_text())["pid"]
    os.kill(daemon, signal.SIGKILL)
    _wait_for(lambda: daemon not in processes_of(serving.run_dir), 10, "the daemon's death")
    assert processes_of(serving.run_dir), "its model servers outlive it"


def _registry_writes(proxy: CountingProxy) -> list[Any]:
    """Writes to the registry (model servers also write their traces through the proxy)."""
    return [
        w for w in proxy.writes() if "registered-models" in w.path or "model-versions" in w.path
    ]


def _count_traces(client: Any, experiment_id: str, model_id: str) -> int:
    count, token = 0, None
    while True:
        page = client.search_traces(
            locations=[experiment_id],
            filter_string=f"metadata.`mlflow.modelId` = '{model_id}'",
            max_results=500,
            page_token=token,
            include_spans=False,
        )
        count += len(page)
        token = page.token
        if not token:
            return count


def _sample(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


@dataclass
class Stream:
    """Requests in a loop from 4 threads, recording (time, status, version) of each."""

    serving: Serving
    results: list[tuple[float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Stream:
        self.threads = [threading.Thread(target=self._run) for _ in range(4)]
        for t in self.threads:
            t.start()
        return self

    def _run(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                try:
                    r = self.serving.ask(http)
                    self.results.append(
                        (time.monotonic(), r.status_code, r.headers.get("X-Agentctl-Version", ""))
                    )
                except requests.RequestException:
                    self.results.append((time.monotonic(), 0, ""))

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def _ready(serving: Serving) -> list[int]:
    r = requests.get(f"{serving.router}/agents/support-bot/ping", timeout=5)
    return list(r.json().get("ready", [])) if r.status_code == 200 else []


def test_up_live_edit_without_failures_restart_after_kill_and_no_orphans(
    serving: Serving,
) -> None:
    write_manifest(serving.manifests, SPLIT_80_20)
    env = {
        **os.environ, **LOCAL, "MLFLOW_TRACKING_URI": serving.tracking_uri,
        "AGENTCTL_RUN_DIR": str(serving.run_dir),
    }  # fmt: skip
    log = (serving.root / "up.log").open("w")
    up = subprocess.Popen(
        [AGENTCTL, "up", str(serving.manifests), "--debounce", "200"],
        cwd=serving.run_dir.parent, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: "Watching" in (serving.root / "up.log").read_text(), 180, "up")
        assert sorted(_ready(serving)) == [1, 2]

        # Kill version 2's model server (its whole process group), then ask at once: the router
        # finds it refused, marks it down and answers from version 1; nothing fails.
        pid = serving.state()["agents"]["support-bot"]["versions"]["2"]["pid"]
        os.killpg(pid, signal.SIGKILL)
        time.sleep(0.1)  # let the kernel close its socket: a request mid-kill would be cut off
        with requests.Session() as http:
            during = [serving.ask(http) for _ in range(100)]
        assert [r.status_code for r in during] == [200] * 100
        assert {r.headers["X-Agentctl-Version"] for r in during} == {"1"}
        _wait_for(lambda: 2 in _ready(serving), 120, "version 2 restarted")
        v2 = serving.state()["agents"]["support-bot"]["versions"]["2"]
        assert v2["restarts"] == 1 and v2["pid"] != pid
        with Stream(serving) as stream:
            time.sleep(2)
        assert all(code == 200 for _, code, _ in stream.results)
        assert "2" in {v for _, _, v in stream.results}, "the restarted server takes traffic again"

        # Edit the split to 0/100 under a steady stream of requests: zero failures.
        with Stream(serving) as stream:
            time.sleep(1)
            write_manifest(
                serving.manifests,
                """
                traffic:
                  - alias: champion
                    percent: 0
                  - alias: challenger
                    percent: 100
                """,
            )
            _wait_for(
                lambda: serving.state()["agents"]["support-bot"]["weights"] == {"1": 0, "2": 100},
                60,
                "the new split",
            )
            switched = time.monotonic()
            time.sleep(2)
        assert len(stream.results) > 50
        assert [r for r in stream.results if r[1] != 200] == []
        late = [v for t, _, v in stream.results if t > switched + 0.5]
        assert late and set(late) == {"2"}
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
        log.close()
    output = (serving.root / "up.log").read_text()
    assert code == 0, output
    assert "Stopped the router and every model server." in output
    assert processes_of(serving.run_dir) == [], "agentctl up left processes behind"


def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError, requests.RequestException):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_served_version_missing_from_the_registry_starts_nothing(
    serving: Serving,
) -> None:
    manifest = serving.manifests / "support-bot.yaml"
    write_manifest(
        serving.manifests,
        """
        traffic:
          - version: 1
            percent: 50
          - version: 9
            percent: 50
        """,
    )
    manifest.write_text(manifest.read_text().replace("[1, 2, 3]", "[1, 2, 3, 9]"))
    result = serving.agentctl("apply", str(serving.manifests), env=LOCAL)
    assert result.code == 1
    assert "support-bot.yaml:" in result.err
    assert "spec.serving.traffic[1].version" in result.err, result.err
    assert "version 9" in result.err
    assert not (serving.run_dir / "daemon.json").exists()
    assert processes_of(serving.run_dir) == []


AFFINITY_80_20 = (
    SPLIT_80_20
    + """
routes:
  - header: X-Agent-Version
    value: canary
    alias: candidate
affinity:
  header: X-Session-Id
"""
)


def test_conversations_stay_on_one_version_header_routes_and_the_openai_sdk(
    serving: Serving,
) -> None:
    """Real model servers behind the router: 1,000 conversations of 5 turns under 80/20 each
    see one version, with the share of conversations within 4 sigmas; 50/50 moves only the
    conversations it must (from v1 to v2); a header route reaches v3 at 0 %; the OpenAI SDK
    (responses.create, responses.stream, an unknown model) talks to the router."""
    from openai import NotFoundError, OpenAI

    write_manifest(serving.manifests, AFFINITY_80_20)
    applied = serving.agentctl("apply", str(serving.manifests), env=LOCAL)
    assert applied.code == 0, applied.err + applied.out
    assert "support-bot.routes: created" in applied.out, applied.out

    def conversations(n: int, turns: int) -> dict[int, set[str]]:
        def talk(c: int) -> set[str]:
            seen = set()
            with requests.Session() as http:
                for turn in range(turns):
                    body = {**QUESTION, "context": {"conversation_id": f"conv-{c}"}}
                    if turn % 2:  # some turns carry the id in the header only
                        body = dict(QUESTION)
                    got = http.post(
                        f"{serving.router}/agents/support-bot/invocations",
                        json=body,
                        headers={"X-Session-Id": f"conv-{c}"},
                        timeout=60,
                    )
                    assert got.status_code == 200, got.text
                    seen.add(got.headers["X-Agentctl-Version"])
            return seen

        with ThreadPoolExecutor(8) as pool:
            return dict(enumerate(pool.map(talk, range(n))))

    n = 1000
    before = conversations(n, 5)
    assert all(len(v) == 1 for v in before.values()), [v for v in before.values() if len(v) > 1]
    on_v2 = sum(v == {"2"} for v in before.values())
    assert binomial_ok(on_v2, n, 0.20), on_v2

    # A header route reaches the candidate (v3) at 0 % of the split.
    canary = requests.post(
        f"{serving.router}/agents/support-bot/invocations",
        json=QUESTION,
        headers={"X-Agent-Version": "canary"},
        timeout=60,
    )
    assert canary.status_code == 200 and canary.headers["X-Agentctl-Version"] == "3"
    assert canary.json()["output"][0]["content"][0]["text"].startswith("v3 says")

    # The OpenAI SDK: by model name, pinned by version and by alias, streamed, and unknown.
    client = OpenAI(base_url=f"{serving.router}/v1", api_key="unused", max_retries=0)
    answer = client.responses.create(model="support-bot@3", input="how do I get a refund?")
    assert answer.output_text.startswith("v3 says"), answer
    pinned = client.responses.create(model="support-bot@challenger", input="refund?")
    assert pinned.output_text.startswith("v2 says"), pinned
    deltas = []
    with client.responses.stream(model="support-bot@1", input="how do I get a refund?") as s:
        for event in s:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = s.get_final_response()
    assert len(deltas) > 1 and "".join(deltas).strip() == final.output_text.strip()
    assert final.output_text.startswith("v1 says")
    with pytest.raises(NotFoundError) as missing:
        client.responses.create(model="no-such-agent", input="hi")
    assert missing.value.body["param"] == "model", missing.value.body  # type: ignore[index]

    # 80/20 -> 50/50: conversations move only from v1 to v2, about 30 % of them.
    write_manifest(
        serving.manifests,
        AFFINITY_80_20.replace("percent: 80", "percent: 50").replace("percent: 20", "percent: 50"),
    )
    applied = serving.agentctl("apply", str(serving.manifests), env=LOCAL)
    assert applied.code == 0, applied.err + applied.out
    after = conversations(n, 1)
    moved = Counter((next(iter(before[c])), next(iter(after[c]))) for c in range(n))
    assert {k for k in moved if k[0] != k[1]} <= {("1", "2")}, moved
    assert binomial_ok(moved[("1", "2")], n, 0.30), moved


def test_a_stream_comes_through_the_router_as_produced_and_errors_are_short(
    serving: Serving,
) -> None:
    write_manifest(serving.manifests, SPLIT_80_20)
    applied = serving.agentctl("apply", str(serving.manifests), env=LOCAL)
    assert applied.code == 0, applied.err + applied.out
    with requests.post(
        f"{serving.router}/agents/support-bot/invocations",
        json={**QUESTION, "stream": True},
        stream=True,
        timeout=60,
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = [
            json.loads(line[len("data: ") :])
            for line in resp.iter_lines(decode_unicode=True)
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    deltas = [e["delta"] for e in events if e.get("type") == "response.output_text.delta"]
    done = [e for e in events if e.get("type") == "response.output_item.done"]
    assert len(deltas) > 1 and done, events
    assert "".join(deltas).strip() == done[-1]["item"]["content"][0]["text"].strip()

    bad = requests.post(
        f"{serving.router}/agents/support-bot/invocations",
        json={"input": [{"role": "assistant", "content": "?"}]},
        headers={"X-Request-Id": "test-req-1"},
        timeout=60,
    )
    assert bad.status_code == 400, bad.text
    assert "Traceback" not in bad.text and 'File "' not in bad.text, bad.text
    body = bad.json()
    assert body["request_id"] == "test-req-1" and body["agent"] == "support-bot", body
    assert str(body["version"]) == bad.headers["X-Agentctl-Version"]
    log = serving.run_dir / "logs" / f"support-bot-v{body['version']}.log"
    assert "test-req-1" in log.read_text() and "Traceback" in log.read_text()
