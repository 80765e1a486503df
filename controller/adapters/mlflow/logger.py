"""Logging an agent's source as an MLflow model (``mlflow.pyfunc.log_model``, models from code),
always in a process of its own.

Logging imports the agent's code to validate it, and the agent's code may end the process that
runs it (``sys.exit``, ``os._exit``, a signal), so it never runs in agentctl's own: every command
that logs, against any tracking URI (a sqlite file included), starts ``python -m
controller.adapters.mlflow.logger``. The child reads its request as JSON on stdin, writes the id
of the run it starts to ``<answer>.run`` and its answer to the file named by its one argument;
registering the version (with its digest tag) stays with the caller, so a version never exists
without its digest. A version with bound prompts (``VersionSource.prompts``) is logged with
their ``prompts:/<prompt>/<n>`` URIs merged into its model config under ``prompts`` and linked
to the logged model (:func:`pinned_config`); without them the call is as it always was. A child that ends without an answer is reported with its exit status and the
last lines of its stderr, and the run it started is deleted by a second child (``--forget``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from controller.adapters.mlflow.frames import agent_failure, rename_paths
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.prompt.binding import PROMPTS_CONFIG_KEY
from controller.core.secrets import redact_text
from controller.core.state.observed import AGENT_TAG, DIGEST_TAG, OWNER_TAG, WRITTEN_BY_TAG
from controller.ports import VersionSource

__all__ = [
    "INPUT_EXAMPLE",
    "Logged",
    "child_answer",
    "child_uri",
    "exit_status",
    "failure_message",
    "is_transport",
    "log_model_isolated",
    "pinned_config",
]

INPUT_EXAMPLE = {"input": [{"role": "user", "content": "Hello, what can you do?"}]}
Logged = tuple[str, str, str | None]  # model URI, run id, logged model id
#: How many of a dead child's last stderr lines a message shows.
TAIL = 5


def _log(
    tracking_uri: str,
    experiment_id: str,
    source: VersionSource,
    started: Callable[[str], None] | None = None,
) -> Logged:
    """Log in this process (the child's work); MLflow's exceptions propagate. ``started`` is
    told the run's id as soon as it exists. When the agent's code fails (not the server), even
    by ``sys.exit`` or an interrupt, the run and the logged model this attempt made are deleted:
    nothing is left that the next apply would not make afresh."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    # The agent's prompts load from this registry, whatever MLFLOW_REGISTRY_URI the shell had.
    mlflow.set_registry_uri(tracking_uri)
    # The run and the logged model say who logged them, from what: `agentctl gc` goes by these.
    run_tags = {DIGEST_TAG: source.digest, AGENT_TAG: source.agent}
    if source.owner:
        run_tags[OWNER_TAG] = source.owner
    if source.written_by:
        run_tags[WRITTEN_BY_TAG] = source.written_by
    run_id = None
    try:
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"log-{source.digest[7:19]}", tags=run_tags
        ) as run:
            run_id = run.info.run_id
            if started is not None:
                started(run_id)
            pins: dict[str, Any] = {}
            if source.prompts:
                # The bound prompts' URIs, merged into the config the agent reads, and linked
                # to the logged model (and the run): MLflow records them in the MLmodel.
                pins = {
                    "model_config": pinned_config(_read_config(source.config_path), source.prompts),
                    "prompts": [uri for _, uri in sorted(source.prompts.items())],
                }
            info = mlflow.pyfunc.log_model(
                name="agent",
                python_model=source.code_path,
                model_config=pins.get("model_config", source.config_path),
                pip_requirements=list(source.pip_requirements),
                input_example=INPUT_EXAMPLE,
                tags=run_tags,
                **({"prompts": pins["prompts"]} if pins else {}),
            )
    except BaseException as exc:
        if run_id is not None and not is_transport(exc):
            _forget(run_id)
        raise
    return str(info.model_uri), str(info.run_id), info.model_id


def _read_config(config_path: str | None) -> Any:
    """The model config file's content as MLflow reads a ``model_config`` path
    (``yaml.safe_load``, whatever the extension, JSON included: mlflow.utils.model_utils.
    _validate_and_get_model_config_from_file); None when the agent has none."""
    if not config_path:
        return None
    import yaml

    with open(config_path) as fh:
        return yaml.safe_load(fh)


def pinned_config(config: Any, prompts: Mapping[str, str]) -> dict[str, Any]:
    """The model config to log for a version with bound prompts: ``config`` (the file's content,
    None without one) with ``prompts`` (binding key -> ``prompts:/<prompt>/<n>``) merged under
    :data:`PROMPTS_CONFIG_KEY`; the file's own keys there are kept unless a binding overrides
    them. A config that is not a mapping, or whose ``prompts`` is not, is refused (ValueError)."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValueError(
            f"the model config is a {type(config).__name__}, not a mapping: the bound prompts "
            f"cannot be added to it under '{PROMPTS_CONFIG_KEY}'"
        )
    own = config.get(PROMPTS_CONFIG_KEY) or {}
    if not isinstance(own, Mapping):
        raise ValueError(
            f"the model config's '{PROMPTS_CONFIG_KEY}' is a {type(own).__name__}, not a "
            "mapping: the bound prompts cannot be added to it"
        )
    return {**config, PROMPTS_CONFIG_KEY: {**own, **prompts}}


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
        if client.get_run(run_id).info.status == "RUNNING":  # its process died mid-log
            client.set_terminated(run_id, "FAILED")
    with contextlib.suppress(MlflowException, OSError):
        client.delete_run(run_id)


def failure_message(exc: BaseException, source: VersionSource) -> str:
    """What to say when logging ``source`` failed in the agent's code: where in the agent's
    files (``agents/x/agent.py:12: in <module>: ZeroDivisionError: division by zero``), else
    MLflow's message (the snapshot's paths in it named as the repository names them)."""
    files = _files(source)
    where = agent_failure(exc, files)
    if where is not None:
        return f"{where} (while logging {source.label})"
    return (
        f"logging {source.label} failed: {rename_paths(str(getattr(exc, 'message', exc)), files)}"
    )


def _files(source: VersionSource) -> dict[str, str]:
    """The agent's files as logged (the snapshot's paths) -> as the repository names them."""
    files = {source.code_path: source.label}
    if source.config_path:
        files[source.config_path] = os.path.basename(source.config_path)
    return files


def child_uri(tracking_uri: str) -> str:
    """The tracking URI as the child is given it: a relative sqlite file made absolute, so that
    the child writes to the very database (and, by its experiments, the artifact folder beside
    it) that the parent reads, whatever its working directory."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.startswith(prefix + "/"):
        return tracking_uri
    path, sep, query = tracking_uri[len(prefix) :].partition("?")
    if not path or path == ":memory:":
        return tracking_uri
    return prefix + os.path.abspath(path) + sep + query


def exit_status(returncode: int) -> str:
    """``exited 3``, or ``was killed by SIGKILL`` for a negative return code."""
    if returncode >= 0:
        return f"exited {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def child_answer(
    answer_file: str,
    child: subprocess.CompletedProcess[str],
    what: str,
    process: str,
    operation: str,
    *,
    stderr: Callable[[str], str] = lambda text: text,
    gone: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The answer a child process wrote to ``answer_file``. A child that wrote none is a
    PermanentBackendError: ``what`` it was doing, how the ``process`` ended and the last lines
    of its stderr (redacted, then ``stderr`` applied); ``gone`` runs first (clean up after it)."""
    try:
        with open(answer_file) as fh:
            answer: dict[str, Any] = json.load(fh)
        return answer
    except (OSError, ValueError):
        gone()
        tail = stderr(redact_text(child.stderr or "")).strip().splitlines()[-TAIL:]
        raise PermanentBackendError(
            f"{what}: the {process} process {exit_status(child.returncode)}"
            + (" without an answer" if child.returncode == 0 else "")
            + (f": {' / '.join(line.strip() for line in tail)}" if tail else ""),
            operation=operation,
        ) from None


def _child(
    args: list[str], request: dict[str, Any], timeout: float
) -> subprocess.CompletedProcess[str]:
    # -P (and PYTHONSAFEPATH for its children): the working directory, where a user's own
    # `controller` package may be, is not on sys.path; relative paths still resolve.
    return subprocess.run(
        [sys.executable, "-P", "-m", "controller.adapters.mlflow.logger", *args],
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def log_model_isolated(
    tracking_uri: str, experiment_id: str, source: VersionSource, timeout: float = 900.0
) -> Logged:
    """Log in a child process. A failure of the MLflow server is a TemporaryBackendError (the
    caller's policy retries it); the agent's code failing, or the child ending without an answer
    (an exit, a signal, a timeout), is permanent, and the run the child started is deleted."""
    uri = child_uri(tracking_uri)
    request = {
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "source": {
            **{f.name: getattr(source, f.name) for f in fields(source)},
            "pip_requirements": list(source.pip_requirements),
            "prompts": dict(source.prompts),
        },
    }
    with tempfile.TemporaryDirectory(prefix="agentctl-log-") as tmp:
        answer_file = os.path.join(tmp, "answer.json")
        try:
            child = _child([answer_file], request, timeout)
        except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
            _forget_in_child(uri, answer_file)
            raise PermanentBackendError(
                f"logging {source.label} took over {timeout:.0f} s",
                operation="log model version",
            ) from exc
        answer = child_answer(
            answer_file, child, f"logging {source.label}", "logging", "log model version",
            stderr=lambda text: rename_paths(text, _files(source)),
            gone=lambda: _forget_in_child(uri, answer_file),
        )  # fmt: skip
    if "error" in answer:
        error = TemporaryBackendError if answer.get("transport") else PermanentBackendError
        raise error(str(answer["error"]), operation="log model version")
    return answer["model_uri"], answer["run_id"], answer.get("model_id")


def _forget_in_child(tracking_uri: str, answer_file: str) -> None:
    """Delete the run a dead logging child started, if it said which (in another child: the
    parent may not import mlflow). Best effort: `agentctl gc` finds what is left, by its tags."""
    try:
        with open(answer_file + ".run") as fh:
            run_id = fh.read().strip()
    except OSError:
        return
    if run_id:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _child(["--forget", run_id], {"tracking_uri": tracking_uri}, 120.0)


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


def _main(args: list[str]) -> int:
    _die_with(os.getppid())
    request = json.loads(sys.stdin.read())
    if args[0] == "--forget":
        import mlflow

        mlflow.set_tracking_uri(request["tracking_uri"])
        mlflow.set_registry_uri(request["tracking_uri"])
        _forget(args[1])
        return 0
    answer_file = args[0]
    raw = request["source"]
    source = VersionSource(
        agent=raw["agent"],
        code_path=raw["code_path"],
        config_path=raw["config_path"],
        pip_requirements=tuple(raw["pip_requirements"]),
        digest=raw["digest"],
        code_ref=raw.get("code_ref", ""),
        owner=raw.get("owner", ""),
        written_by=raw.get("written_by", ""),
        prompts={str(k): str(v) for k, v in (raw.get("prompts") or {}).items()},
    )

    def started(run_id: str) -> None:
        with open(answer_file + ".run", "w") as fh:
            fh.write(run_id)

    try:
        uri, run_id, model_id = _log(
            request["tracking_uri"], request["experiment_id"], source, started
        )
        answer: dict[str, Any] = {"model_uri": uri, "run_id": run_id, "model_id": model_id}
    except Exception as exc:
        transport = is_transport(exc)
        text = str(getattr(exc, "message", exc)) if transport else failure_message(exc, source)
        answer = {"error": text, "transport": transport}
    with open(answer_file, "w") as fh:
        json.dump(answer, fh)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
