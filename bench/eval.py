"""Benchmark: what a quality gate's evaluation costs over the bare predictions it makes.

One run on this machine: the example support bot is registered (on an embedded sqlite store in
a temporary directory, or with ``--tracking server`` on a real ``mlflow server`` on 127.0.0.1)
and served by `agentctl apply --target local` (one real `mlflow models serve`). The support bot
answers from a dict: a prediction is instant. Beside it, labelled, a copy that sleeps
``--latency`` seconds per prediction (standing for an LLM call) is served the same way. For each,
a dataset of 200 questions is

- predicted bare: 200 POSTs to the served version's /invocations, one after the other, the
  loop a user would otherwise write (the baseline);
- evaluated as agentctl's evaluating child does it, in this process: the child's MLflow settings
  (:func:`controller.adapters.mlflow.evaluator.child_env`: 4 workers, no trace check, no rate
  limit), its traced ``predict_fn`` (here POSTing to /invocations), three code scorers,
  ``mlflow.genai.evaluate`` with ``model_id`` = the version's logged model (traces, assessments
  and metrics written to the store), and agentctl's figures from the result table;
- for reference, evaluated by the adapter itself (:class:`ChildEvaluator`, a child process that
  loads the registered version and predicts in-process): its wall time, child start included.

And once, MLflow's floor: the same evaluation with a ``predict_fn`` that returns a canned answer
(no agent, no HTTP): what MLflow's per-row logging costs by itself.

Printed as measured / goal / ratio (goal: evaluation <= 1.5x the bare predictions). Not a
pass/fail test: run it with `make bench-eval` or `.venv/bin/python -P bench/eval.py [--rows N]
[--tracking sqlite|server] [--latency S]` (``-P``: bench/controller.py would hide the package).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
AGENTCTL = str(Path(sys.executable).with_name("agentctl"))
QUESTIONS = ("how do I get a refund?", "I forgot my password", "what are your hours?", "hello?")

SCORERS = """\
import re


def text_of(outputs):
    return outputs["output"][-1]["content"][0]["text"] if outputs else ""


def greets(outputs):
    return text_of(outputs).startswith("Hi, this is the support bot.")


def no_email(outputs):
    return re.search(r"[\\w.+-]+@[\\w-]+\\.[\\w.]+", text_of(outputs)) is None


def answers_topic(inputs, outputs, expectations):
    return expectations.get("keyword", "") in text_of(outputs).lower()
"""


SLOW_TAIL = """\
import time as _time


class SlowSupportBot(SupportBot):
    \"\"\"The support bot, slowed down by ``latency_s`` (its config) per prediction, as an agent
    waiting for an LLM would be.\"\"\"

    def __init__(self) -> None:
        super().__init__()
        config = ModelConfig(development_config=_DEV_CONFIG).to_dict() or {}
        self.latency_s = float(config.get("latency_s", 0))

    def predict(self, request):
        _time.sleep(self.latency_s)
        return super().predict(request)


set_model(SlowSupportBot())
"""


def agentctl(cwd: Path, uri: str, *args: str) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(
        [AGENTCTL, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"agentctl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def slow_copy(repo: Path, latency: float) -> None:
    """``slow-bot``: the support bot's code and config plus a sleep per prediction, its manifest
    the support bot's without the evaluation (apply need not evaluate it)."""
    import yaml

    bot = repo / "manifests" / "agents" / "support_bot"
    code = (bot / "agent.py").read_text()
    last = "set_model(SupportBot())\n"
    if not code.endswith(last):
        raise SystemExit(f"{bot / 'agent.py'} no longer ends with {last!r}: update SLOW_TAIL")
    (bot / "slow_agent.py").write_text(code.removesuffix(last) + "\n" + SLOW_TAIL)
    config = yaml.safe_load((bot / "config.yaml").read_text())
    (bot / "slow_config.yaml").write_text(yaml.safe_dump({**config, "latency_s": latency}))
    manifest = yaml.safe_load((repo / "manifests" / "support-bot.yaml").read_text())
    manifest["metadata"]["name"] = manifest["spec"]["registeredModel"] = "slow-bot"
    manifest["spec"]["source"]["code"] = "agents/support_bot/slow_agent.py"
    manifest["spec"]["source"]["config"] = "agents/support_bot/slow_config.yaml"
    manifest["spec"].pop("evaluation", None)
    (repo / "manifests" / "slow-bot.yaml").write_text(yaml.safe_dump(manifest))


def dataset(rows: int) -> list[dict[str, Any]]:
    keywords = ("refund", "password", "open", "human")
    return [
        {
            "inputs": {"input": [{"role": "user", "content": f"{QUESTIONS[i % 4]} (#{i})"}]},
            "expectations": {"keyword": keywords[i % 4]},
        }
        for i in range(rows)
    ]


def bare(url: str, rows: list[dict[str, Any]]) -> float:
    """Wall time of predicting every row, one POST after the other."""
    with requests.Session() as http:
        start = time.perf_counter()
        for row in rows:
            r = http.post(url, json=row["inputs"], timeout=60)
            r.raise_for_status()
        return time.perf_counter() - start


SPECS = ("greets", "no_email", "answers_topic")


def evaluated(
    predict: Any, rows: list[dict[str, Any]], repo: Path, model_id: str
) -> tuple[float, Any]:
    """Wall time of evaluating every row as the evaluating child does (``predict``: a row's
    inputs to the agent's answer), and the figures."""
    import mlflow

    from controller.adapters.mlflow.evaluator import figures_from_table, predicting
    from controller.adapters.mlflow.scorers import build_scorers
    from controller.core.evaluation.spec import ScorerSpec

    specs = [ScorerSpec(n, code="scorers.py", function=n) for n in SPECS]
    scorers = build_scorers(specs, str(repo))
    errors: list[str] = []
    mlflow.set_experiment("agentctl-bench-eval")
    start = time.perf_counter()
    with mlflow.start_run(run_name="eval-bench"):
        result = mlflow.genai.evaluate(
            data=rows, predict_fn=predicting(predict, errors), scorers=scorers, model_id=model_id
        )
    table = result.result_df.to_dict(orient="list") if result.result_df is not None else {}
    figures = figures_from_table(table, [s.name for s in specs], len(rows))
    return time.perf_counter() - start, figures


def posting(url: str) -> Any:
    http = requests.Session()

    def post(inputs: dict[str, Any]) -> Any:
        r = http.post(url, json=inputs, timeout=60)
        r.raise_for_status()
        return r.json()

    return post


def by_adapter(uri: str, model: str, rows: list[dict[str, Any]], repo: Path) -> tuple[float, Any]:
    from controller.adapters.mlflow.evaluator import ChildEvaluator
    from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec
    from controller.ports import EvalRequest, EvalTarget

    specs = tuple(ScorerSpec(n, code="scorers.py", function=n) for n in SPECS)
    spec = EvaluationSpec("bench (generated)", specs, rows=tuple(rows), digest="sha256:bench")
    target = EvalTarget("v1", model=model, version=1)
    start = time.perf_counter()
    (outcome,) = ChildEvaluator(uri).evaluate(EvalRequest(model, str(repo), spec, (target,)))
    return time.perf_counter() - start, outcome.figures


def measure(
    state: dict[str, Any], model: str, rows: list[dict[str, Any]], repo: Path, uri: str
) -> dict[str, tuple[float, Any]]:
    import mlflow

    url = state["agents"][model]["versions"]["1"]["url"] + "/invocations"
    source = mlflow.MlflowClient().get_model_version(model, "1").source
    model_id = str(source).removeprefix("models:/")
    bare(url, rows[:20])  # warm-up
    return {
        "bare": (bare(url, rows), None),
        "http": evaluated(posting(url), rows, repo, model_id),
        "child": by_adapter(uri, model, rows, repo),
    }


def floor(url: str, rows: list[dict[str, Any]], repo: Path, uri: str) -> tuple[float, Any]:
    """MLflow's own cost: the evaluation with a canned answer (one POST made beforehand)."""
    import mlflow

    canned = posting(url)(rows[0]["inputs"])
    source = mlflow.MlflowClient().get_model_version("support-bot", "1").source
    return evaluated(lambda _inputs: canned, rows, repo, str(source).removeprefix("models:/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument(
        "--tracking", choices=("sqlite", "server"), default="sqlite",
        help="where MLflow logs: an embedded sqlite file, or a real `mlflow server` (sqlite "
        "behind it, 127.0.0.1, its default 4 workers)",
    )  # fmt: skip
    parser.add_argument(
        "--latency", type=float, default=0.2,
        help="seconds the slowed-down copy sleeps per prediction (0: no slowed-down copy)",
    )  # fmt: skip
    args = parser.parse_args()

    from controller.adapters.mlflow.evaluator import child_env

    work = Path(tempfile.mkdtemp(prefix="agentctl-bench-eval-"))
    server: Any = None
    uri = f"sqlite:///{work / 'mlflow.db'}"
    applied = False
    try:
        if args.tracking == "server":
            sys.path.insert(0, str(REPO))
            from tests.support.mlflow_server import MlflowServer

            server = MlflowServer(work / "mlflow-server", workers=4).start(timeout=300)
            uri = server.url
        repo = work / "repo"
        shutil.copytree(REPO / "manifests", repo / "manifests")
        (repo / ".git").mkdir()
        (repo / "manifests" / "summarizer.yaml").unlink()
        (repo / "scorers.py").write_text(SCORERS)
        if args.latency > 0:
            slow_copy(repo, args.latency)
        applied = True
        agentctl(work, uri, "apply", str(repo / "manifests"), "--target", "local",
                 "--router-port", "0")  # fmt: skip
        state = json.loads((work / ".agentctl" / "state.json").read_text())

        os.environ.update(child_env(4))
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        rows = dataset(args.rows)

        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"{args.rows} rows, 3 code scorers")  # fmt: skip
        print(
            "model servers: mlflow models serve (1 uvicorn worker each); tracking: "
            + ("sqlite file" if server is None else "mlflow server (4 workers, sqlite)")
        )
        results = {"instant": measure(state, "support-bot", rows, repo, uri)}
        if args.latency > 0:
            results["slow"] = measure(state, "slow-bot", rows, repo, uri)
        url = state["agents"]["support-bot"]["versions"]["1"]["url"] + "/invocations"
        floor_s, _ = floor(url, rows, repo, uri)
    finally:
        try:
            if applied:
                agentctl(work, uri, "down")
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(work, ignore_errors=True)

    report(args, results, floor_s)


def report(args: Any, results: dict[str, dict[str, tuple[float, Any]]], floor_s: float) -> None:
    labels = {"instant": "support bot (instant: a dict lookup)",
              "slow": f"slowed copy (sleeps {args.latency:g} s, like an LLM call)"}  # fmt: skip
    names = {"bare": "bare predictions (POST, sequential)",
             "http": "evaluation over HTTP (as the child)",
             "child": "ChildEvaluator (child, in-process)"}  # fmt: skip
    for key, res in results.items():
        print(f"\n{labels[key]:46} {'wall s':>8} {'rows/s':>8}")
        for what, (seconds, _) in res.items():
            print(f"{names[what]:46} {seconds:8.2f} {args.rows / seconds:8.1f}")
    print(f"{'MLflow floor (canned answer, no agent)':46} {floor_s:8.2f} {args.rows / floor_s:8.1f}")  # fmt: skip
    for key, res in results.items():
        for what in ("http", "child"):
            figures = res[what][1]
            print(f"figures, {key}, {what}: "
                  + ", ".join(f"{n} {figures[n].figure:.3f}" for n in sorted(figures)))  # fmt: skip
    print(f"\n{'goal: evaluation / bare predictions (x)':52} {'measured':>9} {'goal':>7} {'ratio':>6}")  # fmt: skip
    for key, res in results.items():
        for what in ("http", "child"):
            x = res[what][0] / res["bare"][0]
            print(f"{key + ', ' + names[what]:52} {x:9.2f} {'<= 1.5':>7} {x / 1.5:6.2f}")
    x = floor_s / results["instant"]["bare"][0]
    print(f"{'instant, MLflow floor alone (no agent)':52} {x:9.2f} {'<= 1.5':>7} {x / 1.5:6.2f}")


if __name__ == "__main__":
    main()
