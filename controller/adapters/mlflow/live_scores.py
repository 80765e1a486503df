"""The ``source: scorers`` rollout gate: a scorer of spec.evaluation run on the canary's live
answers (and the stable version's, for comparison), each result logged on its trace.

A measurement takes, per version, the newest traces its model servers wrote since the step
began (state ``OK``: answers; requests that failed are the ``errorRate`` gate's), at most
``sample`` of them. A trace that already carries this scorer's result from agentctl (a feedback
assessment of source CODE / ``agentctl`` whose metadata names the same scorer digest) is not
scored again: its recorded value counts. The others are scored, and each result is logged on its
trace as a feedback assessment (so the MLflow UI shows it, with the gate and the rollout step in
its metadata). The pass rate is :func:`controller.core.rollout.analysis.pass_rate` over all of
them: a scorer that raises on a trace is a failed sample, never a pass.

The scorer is the repository's code (or MLflow's built-in), so it never runs in agentctl's
process: every measurement starts ``python -m controller.adapters.mlflow.live_scores``, which
reads its request as JSON on stdin, searches, scores and logs through mlflow, and writes its
answer (the values and errors per version) to the file named by its one argument.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from controller.adapters.mlflow.logger import child_answer, child_uri, is_transport
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.evaluation.spec import ScorerSpec, canonical
from controller.core.evaluation.verdict import row_value
from controller.core.rollout.analysis import pass_rate
from controller.core.rollout.gates import Measurement
from controller.core.state.observed import experiment_name
from controller.ports import GateQuery

__all__ = ["SOURCE_ID", "LiveScores", "scorer_digest"]

#: The source id of the feedback agentctl logs on traces (source type CODE).
SOURCE_ID = "agentctl"
#: Metadata keys of that feedback.
GATE_KEY = "agentctl.io/gate"
STEP_KEY = "agentctl.io/rollout-step"
VERSION_KEY = "agentctl.io/version"
SCORER_KEY = "agentctl.io/scorer-digest"


def scorer_digest(spec: ScorerSpec) -> str:
    """What a recorded result is valid for: the scorer as specified (its arguments, its code
    file's digest). A result of another scorer of the same name is scored afresh."""
    return "sha256:" + hashlib.sha256(canonical(spec.to_dict()).encode()).hexdigest()[:32]


class LiveScores:
    """The MetricProvider of ``source: scorers``."""

    def __init__(self, tracking_uri: str, *, timeout: float = 300.0) -> None:
        self.tracking_uri = tracking_uri
        self.timeout = timeout  # the longest one measurement (both versions) may take

    def measure(self, q: GateQuery) -> Measurement:
        scoring = q.scoring
        if scoring is None or not q.model_id:
            return Measurement(None, 0)
        targets = [{"role": "canary", "version": q.version, "model_id": q.model_id}]
        if scoring.stable is not None and scoring.stable_model_id:
            targets.append(
                {"role": "stable", "version": scoring.stable, "model_id": scoring.stable_model_id}
            )
        request = {
            "tracking_uri": child_uri(self.tracking_uri),
            "experiment": experiment_name(q.model),
            "root": scoring.root,
            "scorer": scoring.scorer.to_dict(),
            "scorer_digest": scorer_digest(scoring.scorer),
            "since_ms": int(q.since * 1000),
            "sample": scoring.sample,
            "metadata": {GATE_KEY: scoring.gate, STEP_KEY: str(scoring.step + 1)},
            "targets": targets,
        }
        answer = self._run(request, q.agent)
        results = answer["results"]
        canary = _measurement(results.get("canary"))
        stable = _measurement(results.get("stable"))
        return Measurement(canary.value, canary.samples, stable.value)

    def _run(self, request: dict[str, Any], agent: str) -> dict[str, Any]:
        what = f"scoring {agent}'s live traces with {request['scorer']['name']}"
        with tempfile.TemporaryDirectory(prefix="agentctl-scores-") as tmp:
            answer_file = os.path.join(tmp, "answer.json")
            try:
                child = subprocess.run(
                    [sys.executable, "-P", "-m", "controller.adapters.mlflow.live_scores",
                     answer_file],
                    env={**os.environ, "PYTHONSAFEPATH": "1", "MLFLOW_DISABLE_TELEMETRY": "true"},
                    input=json.dumps(request), capture_output=True, text=True,
                    timeout=self.timeout, check=False, cwd=request["root"] or None,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise PermanentBackendError(
                    f"{what} took over {self.timeout:.0f} s", operation="score traces"
                ) from exc
            answer = child_answer(answer_file, child, what, "scoring", "score traces")
        if "error" in answer:
            error = TemporaryBackendError if answer.get("transport") else PermanentBackendError
            raise error(f"{what}: {answer['error']}", operation="score traces")
        return answer


def _measurement(result: dict[str, Any] | None) -> Measurement:
    if not result:
        return Measurement(None, 0)
    return pass_rate(result["values"], result["errors"])


# -- the child ---------------------------------------------------------------------------------


def _score(request: dict[str, Any]) -> dict[str, Any]:
    """Search, score and log, in this (the child) process; returns the values and errors per
    version role. A failure to load the scorer or to reach the server propagates."""
    import mlflow
    from mlflow import MlflowClient

    from controller.adapters.mlflow.client import trace_filter
    from controller.adapters.mlflow.scorers import build_scorer

    mlflow.set_tracking_uri(request["tracking_uri"])
    mlflow.set_registry_uri(request["tracking_uri"])
    client = MlflowClient()
    spec = ScorerSpec.from_dict(request["scorer"])
    scorer = build_scorer(spec, request["root"])
    experiment = client.get_experiment_by_name(request["experiment"])
    results: dict[str, Any] = {}
    for target in request["targets"]:
        if experiment is None:
            results[target["role"]] = {"values": [], "errors": [], "scored": 0}
            continue
        found = client.search_traces(
            locations=[str(experiment.experiment_id)],
            filter_string=trace_filter(target["model_id"], request["since_ms"])
            + " AND attributes.status = 'OK'",
            max_results=int(request["sample"]),
            order_by=["timestamp_ms DESC"],
            include_spans=False,
        )
        values: list[Any] = []
        errors: list[str | None] = []
        todo: list[str] = []
        for trace in found:
            prior = _prior(trace.info.assessments, spec.name, request["scorer_digest"])
            if prior is None:
                todo.append(trace.info.trace_id)
            else:
                values.append(prior[0])
                errors.append(prior[1])
        metadata = {
            **request["metadata"],
            VERSION_KEY: str(target["version"]),
            SCORER_KEY: request["scorer_digest"],
        }
        for trace_id in todo:
            trace = client.get_trace(trace_id, display=False)
            value, error, rationale = _run_scorer(scorer, trace)
            _log(trace_id, spec.name, value, error, rationale, metadata)
            values.append(value)
            errors.append(error)
        results[target["role"]] = {"values": values, "errors": errors, "scored": len(todo)}
    return {"results": results}


def _prior(assessments: Sequence[Any], name: str, digest: str) -> tuple[Any, str | None] | None:
    """The newest result agentctl logged on a trace for this scorer: (value, error)."""
    from mlflow.entities import Feedback

    mine = [
        a
        for a in assessments or ()
        if isinstance(a, Feedback)
        and a.name == name
        and a.source is not None
        and str(getattr(a.source.source_type, "value", a.source.source_type)) == "CODE"
        and a.source.source_id == SOURCE_ID
        and (a.metadata or {}).get(SCORER_KEY) == digest
    ]
    if not mine:
        return None
    newest = max(mine, key=lambda a: a.create_time_ms or 0)
    if newest.error is not None:
        return None, str(newest.error.error_message or newest.error.error_code or "error")
    return _plain(newest.value), None


def _run_scorer(scorer: Any, trace: Any) -> tuple[Any, str | None, str | None]:
    """(value, error, rationale) of the scorer on one trace. Custom scorers are given the
    inputs and outputs of the trace's root span (``Scorer.run`` does not derive them)."""
    from mlflow.entities import Feedback
    from mlflow.genai.utils.trace_utils import (
        extract_inputs_from_trace,
        extract_outputs_from_trace,
    )

    try:
        result = scorer.run(
            inputs=extract_inputs_from_trace(trace),
            outputs=extract_outputs_from_trace(trace),
            expectations={},
            trace=trace,
        )
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], None
    if isinstance(result, list):  # several feedbacks: the sample passes only if each does
        found = [f for f in result if isinstance(f, Feedback)]
        failed = next((f.error for f in found if f.error is not None), None)
        if failed is not None:
            return None, str(failed.error_message or failed.error_code), None
        if not found:
            return None, "the scorer returned no feedback", None
        return min((_plain(f.value) for f in found), key=_rank), None, None
    if isinstance(result, Feedback):
        if result.error is not None:
            error = result.error.error_message or result.error.error_code
            return None, str(error), result.rationale
        return _plain(result.value), None, result.rationale
    if result is None:
        return None, "the scorer returned no value", None
    return _plain(result), None, None


def _rank(value: Any) -> float:
    number = row_value(value)
    return -1.0 if number is None else number


def _plain(value: Any) -> Any:
    """A value as JSON takes it (CategoricalRating is a str enum: its text)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def _log(
    trace_id: str,
    name: str,
    value: Any,
    error: str | None,
    rationale: str | None,
    metadata: dict[str, str],
) -> None:
    import mlflow
    from mlflow.entities import AssessmentError, AssessmentSource

    source = AssessmentSource(source_type="CODE", source_id=SOURCE_ID)
    if error is not None:
        mlflow.log_feedback(
            trace_id=trace_id, name=name, source=source, metadata=metadata,
            error=AssessmentError(error_code="SCORER_ERROR", error_message=error),
        )  # fmt: skip
        return
    mlflow.log_feedback(
        trace_id=trace_id, name=name, value=value, source=source, metadata=metadata,
        rationale=rationale,
    )  # fmt: skip


def _main(args: list[str]) -> int:
    from controller.adapters.mlflow.scorers import ScorerLoadError

    watch_parent(os.getppid())
    request = json.loads(sys.stdin.read())
    try:
        answer = _score(request)
    except ScorerLoadError as exc:
        answer = {"error": str(exc), "transport": False}
    except Exception as exc:
        transport = is_transport(exc)
        answer = {"error": str(getattr(exc, "message", exc))[:2000], "transport": transport}
    with open(args[0], "w") as fh:
        json.dump(answer, fh)
    return 0


def watch_parent(parent: int) -> None:
    """Exit when the process that started this one is gone: a child that scores on after its
    parent died would be an orphan writing to the tracking server."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
