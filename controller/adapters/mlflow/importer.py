"""Copying a model version's files from another registry (another tracking server, or another
MLflow workspace of one server): what a promotion does when the environment before lives
elsewhere, since MLflow's ``copy_model_version`` copies within one registry only.

In a child process (``python -m controller.adapters.mlflow.importer``), as logging is: the MLflow
client's imports stay out of agentctl's own process. The child downloads the version's model
(``models:/<model>/<version>``) from the source registry, makes a logged model in the target's
experiment with the files, its ``MLmodel`` pointing at the new logged model (so that traces of
the served copy are linked to it, where the target's trace gates look), and answers with the new
logged model's id and the source version's run, tags and description. The prompts the version
pins (``prompts:/<name>/<n>``) are renumbered to the target's versions of the same content. Registering the version
stays with the caller. A failure of either server is temporary; anything else permanent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from controller.adapters.mlflow.logger import child_answer, child_uri, is_transport
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.prompt.binding import PROMPTS_TAG
from controller.core.secrets import redact_text

__all__ = ["Imported", "Place", "import_isolated", "imported"]

#: On the logged model a copy makes: the version it holds the files of (``models:/m/n``), and
#: where that is.
IMPORTED_FROM_TAG = "agentctl.io/imported-from"


@dataclass(frozen=True, slots=True)
class Place:
    """A registry: a tracking URI (credentials from the environment, as MLflow's client takes
    them) and an MLflow workspace (None: the server's default, or none)."""

    tracking_uri: str
    workspace: str | None = None


@dataclass(frozen=True, slots=True)
class Imported:
    model_id: str
    run_id: str | None
    tags: dict[str, str]
    description: str


def import_isolated(
    source: Place,
    target: Place,
    model_uri: str,
    experiment_id: str,
    shown: str,
    timeout: float = 900.0,
) -> Imported:
    """Copy the files of ``model_uri`` (``models:/<model>/<version>`` in ``source``) into a new
    logged model of ``experiment_id`` in ``target``, in a child process. ``shown`` names the
    source in messages (without credentials)."""
    request = {
        "source": {"tracking_uri": child_uri(source.tracking_uri), "workspace": source.workspace},
        "target": {"tracking_uri": child_uri(target.tracking_uri), "workspace": target.workspace},
        "model_uri": model_uri,
        "experiment_id": experiment_id,
        "shown": shown,
    }
    with tempfile.TemporaryDirectory(prefix="agentctl-import-") as tmp:
        answer_file = os.path.join(tmp, "answer.json")
        try:
            child = subprocess.run(
                [sys.executable, "-P", "-m", "controller.adapters.mlflow.importer", answer_file],
                env={**os.environ, "PYTHONSAFEPATH": "1"}, input=json.dumps(request),
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise TemporaryBackendError(
                f"copying {model_uri} from {shown} took over {timeout:.0f} s",
                operation="copy model version",
            ) from exc
        answer = child_answer(
            answer_file, child, f"copying {model_uri} from {shown}", "copying",
            "copy model version",
        )  # fmt: skip
    if "error" in answer:
        error = TemporaryBackendError if answer.get("transport") else PermanentBackendError
        raise error(
            f"copying {model_uri} from {shown}: {answer['error']}", operation="copy model version"
        )
    return Imported(
        str(answer["model_id"]), answer.get("run_id"), dict(answer["tags"]),
        str(answer.get("description") or ""),
    )  # fmt: skip


def imported(registry: Any, from_registry: str, source: str, experiment_id: str) -> Imported:
    """:func:`import_isolated` of ``source`` into ``registry`` (an adapter of this package) from
    its upstream, which ``from_registry`` (a plan's record of where the source is) must name."""
    upstream: Place | None = getattr(registry, "upstream", None)
    shown: str = getattr(registry, "upstream_shown", "")
    if upstream is None or from_registry != shown:
        now = f"at {shown}" if upstream is not None else "in this registry"
        raise PermanentBackendError(
            f"copy {source} from {from_registry}: the environment before is now {now}; plan again",
            operation="copy model version",
            target=source,
        )
    workspace = getattr(registry, "workspace", None) or os.environ.get("MLFLOW_WORKSPACE")
    target = Place(str(registry.tracking_uri), workspace or None)
    return import_isolated(upstream, target, source, experiment_id, shown)


def _use(place: dict[str, Any]) -> Any:
    """An MLflow client of ``place``, its workspace made the one requests carry."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_workspace(place["workspace"])
    mlflow.set_tracking_uri(place["tracking_uri"])
    mlflow.set_registry_uri(place["tracking_uri"])
    return MlflowClient(place["tracking_uri"], place["tracking_uri"])


def _copy(request: dict[str, Any], tmp: str) -> dict[str, Any]:
    import mlflow
    import yaml
    from mlflow.entities import LoggedModelStatus

    model, _, number = request["model_uri"].removeprefix("models:/").rpartition("/")
    src = _use(request["source"])
    version = src.get_model_version(model, number)
    files = mlflow.artifacts.download_artifacts(
        artifact_uri=request["model_uri"], dst_path=tmp,
        tracking_uri=request["source"]["tracking_uri"],
        registry_uri=request["source"]["tracking_uri"],
    )  # fmt: skip
    dst = _use(request["target"])
    logged = dst.create_logged_model(
        request["experiment_id"], name=model,
        tags={IMPORTED_FROM_TAG: f"{request['model_uri']} ({request['shown']})"},
    )  # fmt: skip
    try:
        # The copy's MLmodel names its own logged model: a served copy's traces are linked
        # to it (the source's id means nothing on the target), and no run there is its own.
        spec_file = os.path.join(files, "MLmodel")
        with open(spec_file) as fh:
            spec = yaml.safe_load(fh)
        spec["model_id"] = logged.model_id
        spec.pop("run_id", None)
        spec, repin = _repinned(spec, src, dst, request["shown"])
        with open(spec_file, "w") as fh:
            yaml.safe_dump(spec, fh, sort_keys=False)
        dst.log_model_artifacts(logged.model_id, files)
        dst.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        dst.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    tags = dict(version.tags or {})
    if PROMPTS_TAG in tags:  # key=prompts:/<name>/<n>,... as the MLmodel is renumbered
        pairs = [p.split("=", 1) for p in tags[PROMPTS_TAG].split(",") if "=" in p]
        tags[PROMPTS_TAG] = ",".join(f"{k}={repin(v)}" for k, v in pairs)
    return {
        "model_id": logged.model_id,
        "run_id": None,
        "tags": tags,
        "description": version.description or "",
    }


_PROMPT_URI = re.compile(r"^prompts:/([^/@]+)/([0-9]+)$")


def _repinned(spec: Any, src: Any, dst: Any, shown: str) -> tuple[Any, Any]:
    """``spec`` (and the function that renumbers any value so) with each ``prompts:/<name>/<n>``
    it pins (the agent's bound prompts, in its
    model config and its linked prompts) renumbered to the target's version of that prompt with
    the same content: numbers differ between registries, content does not (the same Prompt
    manifests are applied in each environment)."""
    memo: dict[str, str] = {}

    def same(name: str, number: str) -> str:
        key = f"{name}/{number}"
        if key not in memo:
            want = src.get_prompt_version(name, number)
            content = (want.template, want.response_format, want.model_config)
            found = [
                v.version
                for v in _every_version(dst, name)
                if (v.template, v.response_format, v.model_config) == content
            ]
            if not found:
                # Content this registry has not seen (the version was logged before its prompt
                # changed): the copy brings it, as a new version of the same prompt here.
                if dst.get_prompt(name) is None:
                    raise ValueError(
                        f"prompts:/{key} (from {shown}): there is no prompt '{name}' in this "
                        "environment's registry: apply its Prompt manifest here first"
                    )
                made = dst.register_prompt(
                    name, want.template, commit_message=f"copied with a promotion from {shown}",
                    tags=dict(want.tags), response_format=want.response_format,
                    model_config=want.model_config,
                )  # fmt: skip
                found = [made.version]
            memo[key] = f"prompts:/{name}/{min(int(n) for n in found)}"
        return memo[key]

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and (m := _PROMPT_URI.match(value)):
            return same(m.group(1), m.group(2))
        return value

    return walk(spec), walk


def _every_version(client: Any, name: str) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        out += list(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def _main(args: list[str]) -> int:
    from controller.adapters.mlflow.logger import _die_with

    _die_with(os.getppid())
    request = json.loads(sys.stdin.read())
    with tempfile.TemporaryDirectory(prefix="agentctl-import-files-") as tmp:
        try:
            answer = _copy(request, tmp)
        except Exception as exc:
            transport = is_transport(exc)
            answer = {"error": redact_text(str(getattr(exc, "message", exc))),
                      "transport": transport}  # fmt: skip
    with open(args[0], "w") as fh:
        json.dump(answer, fh)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
