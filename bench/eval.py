"""Benchmark: what a quality gate's evaluation costs over the bare predictions it makes.

One run on this machine: the example support bot is registered on an embedded sqlite registry in
a temporary directory and served by `agentctl apply --target local` (one real `mlflow models
serve`). A dataset of 200 questions is then

- predicted bare: 200 POSTs to the served version's /invocations, one after the other, the
  loop a user would otherwise write (the baseline);
- evaluated as agentctl's evaluating child does it, in this process: the child's MLflow settings
  (:func:`controller.adapters.mlflow.evaluator.child_env`: 4 workers, no trace check, no rate
  limit), its traced ``predict_fn`` (here POSTing to /invocations), three code scorers,
  ``mlflow.genai.evaluate`` with ``model_id`` = the version's logged model (traces, assessments
  and metrics written to the sqlite store), and agentctl's figures from the result table;
- for reference, evaluated by the adapter itself (:class:`ChildEvaluator`, a child process that
  loads the registered version and predicts in-process): its wall time, child start included.

Printed as measured / goal / ratio (goal: evaluation <= 1.5x the bare predictions). Not a
pass/fail test: run it with `make bench-eval` or `.venv/bin/python -P bench/eval.py [--rows N]`
(``-P``: bench/controller.py would hide the package).
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


def agentctl(cwd: Path, *args: str) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    done = subprocess.run(
        [AGENTCTL, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"agentctl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


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


def evaluated(url: str, rows: list[dict[str, Any]], repo: Path, model_id: str) -> tuple[float, Any]:
    """Wall time of evaluating every row as the evaluating child does, and the figures."""
    import mlflow

    from controller.adapters.mlflow.evaluator import figures_from_table, predicting
    from controller.adapters.mlflow.scorers import build_scorers
    from controller.core.evaluation.spec import ScorerSpec

    specs = [ScorerSpec(n, code="scorers.py", function=n) for n in ("greets", "no_email", "answers_topic")]  # fmt: skip
    scorers = build_scorers(specs, str(repo))
    http = requests.Session()

    def post(inputs: dict[str, Any]) -> Any:
        r = http.post(url, json=inputs, timeout=60)
        r.raise_for_status()
        return r.json()

    errors: list[str] = []
    mlflow.set_experiment("agentctl-bench-eval")
    start = time.perf_counter()
    with mlflow.start_run(run_name="eval-bench"):
        result = mlflow.genai.evaluate(
            data=rows, predict_fn=predicting(post, errors), scorers=scorers, model_id=model_id
        )
    table = result.result_df.to_dict(orient="list") if result.result_df is not None else {}
    figures = figures_from_table(table, [s.name for s in specs], len(rows))
    return time.perf_counter() - start, figures


def by_adapter(uri: str, rows: list[dict[str, Any]], repo: Path) -> tuple[float, Any]:
    from controller.adapters.mlflow.evaluator import ChildEvaluator
    from controller.core.evaluation.spec import EvaluationSpec, ScorerSpec
    from controller.ports import EvalRequest, EvalTarget

    specs = tuple(ScorerSpec(n, code="scorers.py", function=n) for n in ("greets", "no_email", "answers_topic"))  # fmt: skip
    spec = EvaluationSpec("bench (generated)", specs, rows=tuple(rows), digest="sha256:bench")
    target = EvalTarget("v1", model="support-bot", version=1)
    start = time.perf_counter()
    (outcome,) = ChildEvaluator(uri).evaluate(
        EvalRequest("support-bot", str(repo), spec, (target,))
    )
    return time.perf_counter() - start, outcome.figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()

    from controller.adapters.mlflow.evaluator import child_env

    work = Path(tempfile.mkdtemp(prefix="agentctl-bench-eval-"))
    try:
        repo = work / "repo"
        shutil.copytree(REPO / "manifests", repo / "manifests")
        (repo / ".git").mkdir()
        (repo / "manifests" / "summarizer.yaml").unlink()
        (repo / "scorers.py").write_text(SCORERS)
        agentctl(work, "apply", str(repo / "manifests"), "--target", "local", "--router-port", "0")
        state = json.loads((work / ".agentctl" / "state.json").read_text())
        url = state["agents"]["support-bot"]["versions"]["1"]["url"] + "/invocations"

        uri = f"sqlite:///{work / 'mlflow.db'}"
        os.environ.update(child_env(4))
        import mlflow

        mlflow.set_tracking_uri(uri)
        source = mlflow.MlflowClient().get_model_version("support-bot", "1").source
        model_id = str(source).removeprefix("models:/")
        rows = dataset(args.rows)

        print(f"machine: {os.cpu_count()} cores; {args.rows} rows, 3 code scorers")
        print("model server: mlflow models serve (1 uvicorn worker); tracking: sqlite")
        bare(url, rows[:20])  # warm-up
        bare_s = bare(url, rows)
        eval_s, figures = evaluated(url, rows, repo, model_id)
        child_s, child_figures = by_adapter(uri, rows, repo)
    finally:
        try:
            agentctl(work, "down")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'':40} {'wall s':>8} {'rows/s':>8}")
    for name, seconds in (
        ("bare predictions (POST, sequential)", bare_s),
        ("evaluation over HTTP (as the child)", eval_s),
        ("ChildEvaluator (child, in-process)", child_s),
    ):
        print(f"{name:40} {seconds:8.2f} {args.rows / seconds:8.1f}")
    print("\nfigures over HTTP:   " + ", ".join(f"{n} {f.figure:.3f}" for n, f in figures.items()))
    print("figures in child:    " + ", ".join(f"{n} {f.figure:.3f}" for n, f in child_figures.items()))  # fmt: skip
    ratio = eval_s / bare_s
    print(f"\n{'goal':44} {'measured':>10} {'goal':>8} {'ratio':>7}")
    print(
        f"{'evaluation / bare predictions (x)':44} {ratio:10.2f} {'<= 1.5':>8} {ratio / 1.5:7.2f}"
    )


if __name__ == "__main__":
    main()
