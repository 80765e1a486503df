"""Logging an agent's source as an MLflow model (``mlflow.pyfunc.log_model``, models from code),
in this process or in a process of its own.

The controller logs in a child process (``python -m controller.adapters.mlflow.logger``): logging
imports the agent's code to validate it, and imports ``mlflow.pyfunc`` (over 100 MiB), neither of
which belongs in a long-running controller. The child reads its request as JSON on stdin and
writes its answer to the file named by its one argument; registering the version (with its
digest tag) stays with the caller, so a version never exists without its digest.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from typing import Any

from controller.adapters.mlflow.frames import agent_failure
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.state.observed import AGENT_TAG, DIGEST_TAG, OWNER_TAG
from controller.ports import VersionSource

__all__ = [
    "INPUT_EXAMPLE",
    "Logged",
    "failure_message",
    "is_transport",
    "log_model",
    "log_model_isolated",
]

INPUT_EXAMPLE = {"input": [{"role": "user", "content": "Hello, what can you do?"}]}
Logged = tuple[str, str, str | None]  # model URI, run id, logged model id


def log_model(tracking_uri: str, experiment_id: str, source: VersionSource) -> Logged:
    """Log in this process; MLflow's exceptions propagate. When the agent's code fails (not the
    server), the run and the logged model this attempt made are deleted: nothing is left that
    the next apply would not make afresh."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    # The run and the logged model say who logged them, from what: `agentctl gc` goes by these.
    run_tags = {DIGEST_TAG: source.digest, AGENT_TAG: source.agent}
    if source.owner:
        run_tags[OWNER_TAG] = source.owner
    run_id = None
    try:
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"log-{source.digest[7:19]}", tags=run_tags
        ) as run:
            run_id = run.info.run_id
            info = mlflow.pyfunc.log_model(
                name="agent",
                python_model=source.code_path,
                model_config=source.config_path,
                pip_requirements=list(source.pip_requirements),
                input_example=INPUT_EXAMPLE,
                tags=run_tags,
            )
    except Exception as exc:
        if run_id is not None and not is_transport(exc):
            _forget(run_id)
        raise
    return str(info.model_uri), str(info.run_id), info.model_id


def _forget(run_id: str) -> None:
    """Delete the run of a failed attempt and the logged model it began (best effort: `agentctl
    gc` finds what is left, by its tags)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    with contextlib.suppress(MlflowException, OSError):
        for model in client.search_logged_models(
            experiment_ids=[client.get_run(run_id).info.experiment_id],
            filter_string=f"source_run_id = '{run_id}'",
        ):
            client.delete_logged_model(model.model_id)
    with contextlib.suppress(MlflowException, OSError):
        client.delete_run(run_id)


def failure_message(exc: BaseException, source: VersionSource) -> str:
    """What to say when logging ``source`` failed in the agent's code: where in the agent's
    files (``agents/x/agent.py:12: in <module>: ZeroDivisionError: division by zero``), else
    MLflow's message."""
    files = {source.code_path: source.label}
    if source.config_path:
        files[source.config_path] = os.path.basename(source.config_path)
    where = agent_failure(exc, files)
    if where is not None:
        return f"{where} (while logging {source.label})"
    return f"logging {source.label} failed: {getattr(exc, 'message', exc)}"


def log_model_isolated(
    tracking_uri: str, experiment_id: str, source: VersionSource, timeout: float = 900.0
) -> Logged:
    """Log in a child process. A failure of the MLflow server is a TemporaryBackendError (the
    caller's policy retries it); the agent's code failing, or the child dying, is permanent."""
    request = {
        "tracking_uri": tracking_uri,
        "experiment_id": experiment_id,
        "source": {**asdict(source), "pip_requirements": list(source.pip_requirements)},
    }
    with tempfile.TemporaryDirectory(prefix="agentctl-log-") as tmp:
        answer_file = os.path.join(tmp, "answer.json")
        try:
            # -P (and PYTHONSAFEPATH for its children): the working directory, where a user's
            # own `controller` package may be, is not on sys.path; relative paths still resolve.
            child = subprocess.run(
                [sys.executable, "-P", "-m", "controller.adapters.mlflow.logger", answer_file],
                env={**os.environ, "PYTHONSAFEPATH": "1"},
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PermanentBackendError(
                f"logging {source.label} took over {timeout:.0f} s",
                operation="log model version",
            ) from exc
        try:
            with open(answer_file) as fh:
                answer: dict[str, Any] = json.load(fh)
        except (OSError, ValueError):
            tail = (child.stderr or "").strip().splitlines()[-5:]
            raise PermanentBackendError(
                f"logging {source.label}: the logging process exited {child.returncode}"
                + (f": {' / '.join(tail)}" if tail else ""),
                operation="log model version",
            ) from None
    if "error" in answer:
        error = TemporaryBackendError if answer.get("transport") else PermanentBackendError
        raise error(str(answer["error"]), operation="log model version")
    return answer["model_uri"], answer["run_id"], answer.get("model_id")


def is_transport(exc: BaseException) -> bool:
    """Did the MLflow server (or the way to it) fail, rather than the code being logged?"""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, RestException):
        return True
    text = str(exc)
    return isinstance(exc, MlflowException) and text.startswith("API request to")


def _die_with(parent: int) -> None:
    """Exit when the process that started this one is gone (an apply killed mid-log): a child
    that logs on after its parent died would be an orphan writing to the registry."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _main(answer_file: str) -> int:
    _die_with(os.getppid())
    request = json.loads(sys.stdin.read())
    raw = request["source"]
    source = VersionSource(
        agent=raw["agent"],
        code_path=raw["code_path"],
        config_path=raw["config_path"],
        pip_requirements=tuple(raw["pip_requirements"]),
        digest=raw["digest"],
        code_ref=raw.get("code_ref", ""),
        owner=raw.get("owner", ""),
    )
    try:
        uri, run_id, model_id = log_model(request["tracking_uri"], request["experiment_id"], source)
        answer: dict[str, Any] = {"model_uri": uri, "run_id": run_id, "model_id": model_id}
    except Exception as exc:
        transport = is_transport(exc)
        text = str(getattr(exc, "message", exc)) if transport else failure_message(exc, source)
        answer = {"error": text, "transport": transport}
    with open(answer_file, "w") as fh:
        json.dump(answer, fh)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
