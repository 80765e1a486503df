"""Evaluating an agent's versions with ``mlflow.genai.evaluate``, always in a process of its own.

Evaluating runs the agent's code (to predict) and the repository's code scorers, so it never
runs in agentctl's own process: :class:`ChildEvaluator` starts ``python -P -m
controller.adapters.mlflow.evaluator <answer-file>``, which reads its request as JSON on stdin
and writes its answer to the file. Per target, the child:

- loads the agent: a registered version from ``models:/<model>/<version>``; a source that is not
  registered (``agentctl eval``) saved from its code into a temporary folder and loaded from
  there (nothing is written to the registry);
- predicts each row by ``model.predict(row["inputs"])`` (a ResponsesAgent request), with
  ``mlflow.genai.evaluate`` in a run of its own (in ``EvalRequest.experiment``, default
  ``agentctl-evaluations``; tagged with the agent, the owner and the evaluation digest) and, for a
  registered version, ``model_id`` = its logged model, so that the metrics land on it too;
- computes each listed scorer's figures from the result table itself
  (:func:`figures_from_table`): a row the scorer could not score (it raised, it gave no result),
  a row whose prediction raised, and a row missing from the table count as failed rows. MLflow's
  own ``<name>/mean`` leaves errored rows out and is not used; these figures are logged beside
  it (:func:`figure_metrics`: ``agentctl/<name>`` and ``agentctl/<name>/errors``) on the run and,
  for a registered version, on its logged model.

The child's settings: telemetry off, MLflow's trace check (an extra prediction) skipped, at most
``workers`` rows at once (``MLFLOW_GENAI_EVAL_MAX_WORKERS``, if set, wins), and no predict rate
limit (MLflow's default throttles to about 10 rows/s for LLM APIs;
``MLFLOW_GENAI_EVAL_PREDICT_RATE_LIMIT``, if set, wins).

Errors: the tracking server failing is a :class:`TemporaryBackendError` (the caller retries);
anything else (a dataset that cannot be read, a scorer that does not load, an agent that does
not load, a child that dies or takes too long) is an :class:`EvaluationError` naming the agent and
the dataset, scorer or version. Every message is redacted (no credential, no API key).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from controller.adapters.mlflow.logger import TAIL, _die_with, child_uri, exit_status, is_transport
from controller.core.errors import EvaluationError, TemporaryBackendError
from controller.core.evaluation.record import EVAL_DIGEST_TAG
from controller.core.evaluation.spec import EvaluationSpec, canonical
from controller.core.evaluation.verdict import ScorerFigures, figures_of
from controller.core.secrets import redact_text
from controller.core.state.observed import AGENT_TAG, OWNER_TAG, WRITTEN_BY_TAG
from controller.ports import EvalOutcome, EvalRequest, EvalTarget, VersionSource

__all__ = [
    "DEFAULT_EXPERIMENT",
    "METRIC_PREFIX",
    "ChildEvaluator",
    "child_env",
    "figure_metrics",
    "figures_from_table",
    "listed_names",
    "run_name",
]

DEFAULT_EXPERIMENT = "agentctl-evaluations"
#: The run tag naming what an evaluation run predicted with (``v4``, ``source``).
TARGET_TAG = "agentctl.io/eval-target"
#: What agentctl's own figures are logged as: ``agentctl/<scorer>``, ``agentctl/<scorer>/errors``.
METRIC_PREFIX = "agentctl/"


class ChildEvaluator:
    """:class:`~controller.ports.Evaluator`: one child process per request (all its targets)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        written_by: str = "",
        workers: int = 4,
        timeout: float = 1800.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.written_by = written_by
        self.workers = workers
        self.timeout = timeout

    def evaluate(self, request: EvalRequest) -> list[EvalOutcome]:
        if not request.targets:
            return []
        payload = {
            "tracking_uri": child_uri(self.tracking_uri),
            "agent": request.agent,
            "root": os.path.abspath(request.root),
            "spec": request.spec.to_dict(),
            "targets": [_target_dict(t) for t in request.targets],
            "experiment": request.experiment or DEFAULT_EXPERIMENT,
            "owner": request.owner,
            "written_by": self.written_by,
        }
        answer = self._run(request, payload)
        if "error" in answer:
            message = redact_text(str(answer["error"]))
            if answer.get("transport"):
                raise TemporaryBackendError(message, operation="evaluate", target=request.agent)
            raise EvaluationError(message)
        return [
            EvalOutcome(
                target,
                str(raw["run_id"]),
                {n: ScorerFigures.from_dict(n, f) for n, f in raw["figures"].items()},
            )
            for target, raw in zip(request.targets, answer["outcomes"], strict=True)
        ]

    def _run(self, request: EvalRequest, payload: dict[str, Any]) -> dict[str, Any]:
        what = f"{request.agent}: evaluating on {request.spec.dataset}"
        with tempfile.TemporaryDirectory(prefix="agentctl-eval-") as tmp:
            answer_file = os.path.join(tmp, "answer.json")
            try:
                child = subprocess.run(
                    [sys.executable, "-P", "-m", "controller.adapters.mlflow.evaluator",
                     answer_file],
                    env=child_env(self.workers), input=json.dumps(payload), capture_output=True,
                    text=True, timeout=self.timeout, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
                raise EvaluationError(f"{what} took over {self.timeout:.0f} s") from exc
            try:
                with open(answer_file) as fh:
                    answer: dict[str, Any] = json.load(fh)
            except (OSError, ValueError):
                tail = redact_text(child.stderr or "").strip().splitlines()[-TAIL:]
                raise EvaluationError(
                    f"{what}: the evaluating process {exit_status(child.returncode)}"
                    + (" without an answer" if child.returncode == 0 else "")
                    + (f": {' / '.join(line.strip() for line in tail)}" if tail else "")
                ) from None
        return answer


def child_env(workers: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The evaluating child's environment: the parent's, with MLflow's evaluation set for a
    deployment gate (an explicit MLflow setting in the parent's environment wins)."""
    env = dict(os.environ if environ is None else environ)
    env.update(
        PYTHONSAFEPATH="1",  # the working directory (a user's own `controller`?) is not on the path
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION="true",  # no extra prediction
        TQDM_DISABLE="1",  # stderr keeps the lines that say why a child died
    )
    env.setdefault("MLFLOW_GENAI_EVAL_MAX_WORKERS", str(max(1, workers)))
    env.setdefault("MLFLOW_GENAI_EVAL_PREDICT_RATE_LIMIT", "0")
    return env


def _target_dict(target: EvalTarget) -> dict[str, Any]:
    out = asdict(target)
    if target.source is not None:
        out["source"]["pip_requirements"] = list(target.source.pip_requirements)
    return out


def run_name(agent: str, target: EvalTarget) -> str:
    """``eval-support-bot-v4``; ``eval-support-bot-source`` for a source not registered."""
    return f"eval-{agent}-" + (f"v{target.version}" if target.version is not None else "source")


def listed_names(spec: EvaluationSpec) -> list[str]:
    """The names figures are made for: each scorer's, then each threshold's not yet named (a
    scorer that returns several Feedbacks is judged by the names its thresholds give)."""
    names = list(spec.scorer_names)
    for t in spec.thresholds:
        if t.scorer not in names:
            names.append(t.scorer)
    return names


# --- the figures, from the result table (pure) ----------------------------------------------


def _plain(value: Any) -> Any:
    """A pandas/numpy cell as a Python value; NaN and None as None."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        try:
            value = item()
        except (TypeError, ValueError):
            return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def figures_from_table(
    table: Mapping[str, Sequence[Any]],
    names: Sequence[str],
    rows: int,
    predict_error: str = "",
) -> dict[str, ScorerFigures]:
    """Each name's figures from an evaluation's result table, given as columns (``result_df``:
    ``<name>/value``, ``<name>/error_message``, ``state``) for a dataset of ``rows`` rows.

    A row counts as failed for every scorer when its prediction failed (``state`` ``ERROR``: the
    scorers ran on no answer, and a scorer that passes anything would pass it) and when it is
    missing from the table (MLflow records no trace for it); for one scorer, when its value is
    missing or not a pass, a fail or a number, or when it has an error message. A name with no
    column at all has every row failed, and says which results the table does have."""
    present = len(next(iter(table.values()), ()))
    states = [str(_plain(s) or "") for s in table.get("state", [""] * present)]
    failed_predict = [s.upper().endswith("ERROR") for s in states]
    predict_msg = "the agent raised" + (f": {predict_error}" if predict_error else "")
    known = sorted({c[: -len("/value")] for c in table if c.endswith("/value")})
    out: dict[str, ScorerFigures] = {}
    for name in names:
        values_col = table.get(f"{name}/value")
        if values_col is None:
            have = ", ".join(known) if known else "none"
            error = f"no row has a result named {name!r} (the results are named: {have})"
            out[name] = figures_of(name, [None] * rows, [error] * rows)
            continue
        errors_col = table.get(f"{name}/error_message", [None] * present)
        values: list[Any] = []
        errors: list[str | None] = []
        for value, error, raised in zip(values_col, errors_col, failed_predict, strict=True):
            value, error = _plain(value), _plain(error)
            values.append(value)
            if raised:
                errors.append(predict_msg)
            elif isinstance(error, str) and error:
                errors.append(redact_text(error))
            else:
                errors.append(None)
        missing = max(0, rows - present)
        values += [None] * missing
        errors += ["no result for this row (MLflow recorded no trace of it)"] * missing
        out[name] = figures_of(name, values, errors)
    return out


# --- the child ------------------------------------------------------------------------------


class _Refused(Exception):
    """A reason in the repository or the agent (not the server): an EvaluationError."""


def _evaluate(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The child's work: one outcome (run id, figures by name) per target."""
    import mlflow

    from controller.adapters.mlflow.scorers import ScorerLoadError, build_scorers

    agent = str(request["agent"])
    spec = EvaluationSpec.from_dict(request["spec"])
    mlflow.set_tracking_uri(request["tracking_uri"])
    mlflow.set_registry_uri(request["tracking_uri"])
    try:
        scorers = build_scorers(spec.scorers, request["root"])
    except ScorerLoadError as exc:
        raise _Refused(f"{agent}: {exc}") from exc
    data, rows = _dataset(agent, spec)
    experiment_id = _experiment(request["tracking_uri"], str(request["experiment"]))
    with tempfile.TemporaryDirectory(prefix="agentctl-eval-") as folder:
        return [
            _evaluate_one(request, spec, scorers, data, rows, experiment_id, _target(raw), folder)
            for raw in request["targets"]
        ]


def _evaluate_one(
    request: Mapping[str, Any],
    spec: EvaluationSpec,
    scorers: list[Any],
    data: Any,
    rows: int,
    experiment_id: str,
    target: EvalTarget,
    folder: str,
) -> dict[str, Any]:
    import mlflow

    agent = str(request["agent"])
    model = _load(agent, target, folder)
    model_id = target.model_id or _model_id(model, target)
    tags = {AGENT_TAG: agent, EVAL_DIGEST_TAG: spec.digest, TARGET_TAG: _label(target)}
    if request.get("owner"):
        tags[OWNER_TAG] = str(request["owner"])
    if request.get("written_by"):
        tags[WRITTEN_BY_TAG] = str(request["written_by"])
    errors: list[str] = []
    predict = predicting(model.predict, errors)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name(agent, target), tags=tags
    ) as run:
        try:
            result = mlflow.genai.evaluate(
                data=data, predict_fn=predict, scorers=scorers, model_id=model_id or None
            )
        except Exception as exc:
            if is_transport(exc):
                raise
            raise _Refused(
                f"{agent}: evaluating {target.label} on {spec.dataset} failed: "
                f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
            ) from exc
        table = {} if result.result_df is None else result.result_df.to_dict(orient="list")
        figures = figures_from_table(table, listed_names(spec), rows, errors[0] if errors else "")
        # The figures the verdict is made of, beside MLflow's own (which leave errored rows out):
        # on the run and, for a registered version, on its logged model.
        mlflow.log_metrics(
            figure_metrics(figures), run_id=run.info.run_id, model_id=model_id or None,
            synchronous=True,
        )  # fmt: skip
    return {"run_id": run.info.run_id, "figures": {n: f.to_dict() for n, f in figures.items()}}


def figure_metrics(figures: Mapping[str, ScorerFigures]) -> dict[str, float]:
    """agentctl's figures as MLflow metrics: ``agentctl/<name>`` (the mean the thresholds
    judge: a row the scorer could not score counts as failed) and ``agentctl/<name>/errors``
    (how many rows it could not score)."""
    out: dict[str, float] = {}
    for name, f in figures.items():
        out[f"{METRIC_PREFIX}{name}"] = f.figure
        out[f"{METRIC_PREFIX}{name}/errors"] = float(f.errors)
    return out


def predicting(predict: Callable[[Any], Any], errors: list[str]) -> Callable[..., Any]:
    """``predict_fn`` for ``mlflow.genai.evaluate``: a row's ``inputs`` (a ResponsesAgent
    request) to the agent's answer, traced (a row with no trace would be missing from the
    result); what the agent raised is kept in ``errors`` and raised again (MLflow records the
    row as failed)."""
    import mlflow

    lock = threading.Lock()

    @mlflow.trace(name="predict_fn")
    def predict_fn(**inputs: Any) -> Any:
        try:
            return predict(inputs)
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            raise

    return predict_fn


def _dataset(agent: str, spec: EvaluationSpec) -> tuple[Any, int]:
    """What ``evaluate`` is given as ``data``, and how many rows it has."""
    if spec.dataset_name is None:
        return [dict(r) for r in spec.rows], len(spec.rows)
    from mlflow.genai.datasets import get_dataset

    try:
        dataset = get_dataset(name=spec.dataset_name)
        rows = len(dataset.to_df())
    except Exception as exc:
        if is_transport(exc):
            raise
        raise _Refused(
            f"{agent}: MLflow evaluation dataset {spec.dataset_name!r}: "
            f"{getattr(exc, 'message', exc)}"
        ) from exc
    if rows == 0:
        raise _Refused(f"{agent}: MLflow evaluation dataset {spec.dataset_name!r} has no rows")
    return dataset, rows


def _experiment(tracking_uri: str, name: str) -> str:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from controller.adapters.mlflow.client import artifact_location

    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location(tracking_uri, name)))
    except MlflowException as exc:  # created concurrently: read it back
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise exc from None
        return str(exp.experiment_id)


def _target(raw: Mapping[str, Any]) -> EvalTarget:
    src = raw.get("source")
    source = None
    if src is not None:
        source = VersionSource(**{**src, "pip_requirements": tuple(src["pip_requirements"])})
    return EvalTarget(
        label=str(raw["label"]), model=str(raw.get("model", "")), version=raw.get("version"),
        model_id=str(raw.get("model_id", "")), source=source,
    )  # fmt: skip


def _label(target: EvalTarget) -> str:
    return f"v{target.version}" if target.version is not None else "source"


def _load(agent: str, target: EvalTarget, folder: str) -> Any:
    """The agent to predict with: the registered version, or the source saved and loaded (in a
    temporary folder: nothing registered)."""
    import mlflow

    try:
        if target.source is None:
            return mlflow.pyfunc.load_model(f"models:/{target.model}/{target.version}")
        src = target.source
        path = os.path.join(folder, f"agent-{len(os.listdir(folder))}")
        mlflow.pyfunc.save_model(
            path, python_model=src.code_path, model_config=src.config_path,
            pip_requirements=list(src.pip_requirements),
        )  # fmt: skip
        return mlflow.pyfunc.load_model(path)
    except Exception as exc:
        if is_transport(exc):
            raise
        from controller.adapters.mlflow.frames import agent_failure, rename_paths

        files = {}
        if target.source is not None:
            files[target.source.code_path] = target.source.label
        text = agent_failure(exc, files) or rename_paths(
            f"{type(exc).__name__}: {getattr(exc, 'message', exc)}", files
        )
        raise _Refused(f"{agent}: loading {target.label} to evaluate it failed: {text}") from exc


def _model_id(model: Any, target: EvalTarget) -> str:
    """The registered version's logged model id (its metrics go there); '' for a source."""
    if target.source is not None:
        return ""
    found = getattr(getattr(model, "metadata", None), "model_id", None)
    if found:
        return str(found)
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(target.model, str(target.version))
    source = str(mv.source or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else ""


def _main(args: list[str]) -> int:
    _die_with(os.getppid())
    request = json.loads(sys.stdin.read())
    answer_file = args[0]
    try:
        answer: dict[str, Any] = {"outcomes": _evaluate(request)}
    except _Refused as exc:
        answer = {"error": str(exc), "transport": False}
    except Exception as exc:
        transport = is_transport(exc)
        text = str(getattr(exc, "message", exc))
        if transport:
            text = f"evaluating {request.get('agent')}: the tracking server failed: {text}"
        else:
            text = f"{request.get('agent')}: evaluating failed: {type(exc).__name__}: {text}"
        answer = {"error": redact_text(text), "transport": transport}
    with open(answer_file, "w") as fh:
        fh.write(canonical(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
