"""The MLflow Model Registry over its REST API (``/api/2.0/mlflow/...``), with requests.

The same :class:`~controller.ports.Registry` as :class:`~controller.adapters.mlflow.client.
MlflowRegistry`, for an ``http(s)://`` tracking server, without importing mlflow: the MLflow
client pulls in pandas, numpy, pyarrow and more (about 120 MiB), which a long-running controller
does not need. Models are still logged by mlflow itself, in a child process
(:mod:`controller.adapters.mlflow.logger`); registering the version stays here.

Credentials, TLS, timeouts and the typing of errors are :mod:`controller.adapters.mlflow.transport`'s;
the Prompt Registry's conventions, :mod:`controller.adapters.mlflow.prompts`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from controller.adapters.mlflow.client import (
    EXPERIMENTS_CHUNK,
    GONE,
    MODELS_PAGE,
    VERSIONS_PAGE,
    experiment_name,
    trace_filter,
)
from controller.adapters.mlflow.importer import Place, imported
from controller.adapters.mlflow.logger import log_model_isolated
from controller.adapters.mlflow.prompts import (
    PROMPT_FILTER,
    PROMPT_SOURCE,
    existing_model_error,
    existing_prompt_error,
    prompt_versions_filter,
)
from controller.adapters.mlflow.transport import MlflowHttp, usable
from controller.core.environment.record import copied_tags
from controller.core.errors import OutcomeUnknown, PermanentBackendError, TemporaryBackendError
from controller.core.prompt.content import IS_PROMPT_TAG, PromptContent
from controller.core.state.logged import (
    EXPERIMENT_PREFIX,
    LoggedModel,
    LoggedRun,
    LoggedSnapshot,
    model_of_experiment,
)
from controller.core.state.observed import (
    DIGEST_TAG,
    FAILED,
    ObservedModel,
    ObservedVersion,
    RegistrySnapshot,
)
from controller.ports import VersionSource

__all__ = ["RestRegistry", "usable"]


class RestRegistry(MlflowHttp):
    """The Registry port over MLflow's REST API."""

    #: The registry of the environment before, when it is another one, and its location as plans
    #: name it (set by the composition root); None: promotions copy within this registry.
    upstream: Place | None = None
    upstream_shown: str = ""

    # -- traces --------------------------------------------------------------------------------

    def traces(
        self, model: str, model_id: str, since_ms: int, limit: int
    ) -> list[tuple[str, float]]:
        exp = self._request(
            "GET",
            "experiments/get-by-name",
            "get experiment",
            experiment_name(model),
            params={"experiment_name": experiment_name(model)},
            ok_codes=GONE,
        )
        if exp is None or not model_id:
            return []
        location = {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": exp["experiment"]["experiment_id"]},
        }
        body: dict[str, Any] = {"locations": [location], "filter": trace_filter(model_id, since_ms)}
        out: list[tuple[str, float]] = []
        while len(out) < limit:
            body["max_results"] = min(500, limit - len(out))
            page = self._request(
                "POST",
                "traces/search",
                "search traces",
                model,
                body=body,
                base=self.tracking_uri.rstrip("/") + "/api/3.0/mlflow/",
            )
            assert page is not None
            for info in page.get("traces") or []:
                # execution_duration is a protobuf Duration: "0.123s" in JSON.
                duration = str(info.get("execution_duration") or "0s").rstrip("s")
                out.append((str(info.get("state", "")), float(duration or 0) * 1000.0))
            token = page.get("next_page_token")
            if not token:
                break
            body["page_token"] = token
        return out

    # -- observation ---------------------------------------------------------------------------

    def observe(self) -> RegistrySnapshot:
        # Four independent searches, asked at once (the server's time dominates): models and
        # their versions, then prompts and theirs (model searches leave prompts out; a search
        # whose filter names the prompt tag finds only prompts).
        searches = {  # what -> ((path, key of the items), page size, order, filter)
            "registered models": (_MODELS, MODELS_PAGE, None, None),
            "model versions": (_VERSIONS, VERSIONS_PAGE, _BY_NUMBER, None),
            "prompts": (_MODELS, MODELS_PAGE, None, PROMPT_FILTER),
            "prompt versions": (_VERSIONS, VERSIONS_PAGE, _BY_NUMBER, PROMPT_FILTER),
        }
        with ThreadPoolExecutor(max_workers=len(searches), thread_name_prefix="observe") as pool:
            futures = {
                what: pool.submit(
                    self._pages,
                    *where,
                    f"search {what}",
                    max_results=page,
                    order_by=order,
                    filter=flt,
                )
                for what, (where, page, order, flt) in searches.items()
            }
            found = {what: f.result() for what, f in futures.items()}
        return RegistrySnapshot(
            _models(found["registered models"], found["model versions"]),
            _models(found["prompts"], found["prompt versions"]),
        )

    def find_version(self, name: str, digest: str) -> int | None:
        # As the client adapter: filter on the digest alone (hex, safe to quote), match the name
        # here, since MLflow's filter parser does not unescape quotes in names.
        found = self._get(
            "model-versions/search",
            "search model versions",
            name,
            filter=f"tags.`{DIGEST_TAG}` = '{digest}'",
            max_results=1000,
        )
        numbers = [
            int(mv["version"])
            for mv in found.get("model_versions") or []
            if mv["name"] == name and mv.get("status") != FAILED
        ]
        return min(numbers) if numbers else None

    def versions_with_digest(self, name: str, digest: str) -> list[ObservedVersion]:
        found = self._get(
            "model-versions/search",
            "search model versions",
            name,
            filter=f"tags.`{DIGEST_TAG}` = '{digest}'",
            max_results=1000,
        )
        out = [
            _version(mv)
            for mv in found.get("model_versions") or []
            if mv["name"] == name and mv.get("status") != FAILED
        ]
        return sorted(out, key=lambda v: v.number)

    def delete_version(self, name: str, version: int) -> None:
        self._request(
            "DELETE",
            "model-versions/delete",
            "delete model version",
            f"{name}/{version}",
            body={"name": name, "version": str(version)},
            ok_codes=GONE,
        )

    # -- the registry lock ---------------------------------------------------------------------

    def create_lock(self, name: str, tags: Mapping[str, str]) -> bool:
        body = {"name": name, "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        created = self._request(
            "POST",
            "registered-models/create",
            "create lock",
            name,
            body=body,
            ok_codes=("RESOURCE_ALREADY_EXISTS",),
        )
        return created is not None

    def read_lock(self, name: str) -> Mapping[str, str] | None:
        found = self._request(
            "GET", "registered-models/get", "read lock", name, params={"name": name}, ok_codes=GONE
        )
        return None if found is None else _tags(found.get("registered_model") or {})

    def rename_lock(self, name: str, new_name: str) -> bool:
        renamed = self._request(
            "POST",
            "registered-models/rename",
            "take over lock",
            name,
            body={"name": name, "new_name": new_name},
            ok_codes=("RESOURCE_ALREADY_EXISTS", *GONE),
        )
        return renamed is not None

    # -- registered models ---------------------------------------------------------------------

    def create_model(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        body: dict[str, Any] = {
            "name": name,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if description is not None:
            body["description"] = description
        created = self._request(
            "POST",
            "registered-models/create",
            "create registered model",
            name,
            body=body,
            ok_codes=("RESOURCE_ALREADY_EXISTS",),
        )
        if created is not None:
            return
        existing = self._get("registered-models/get", "get registered model", name, name=name)
        refused = existing_model_error(name, _tags(existing.get("registered_model") or {}), tags)
        if refused is not None:
            raise refused

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        body = {"name": name, "key": key, "value": value}
        self._request("POST", "registered-models/set-tag", "set tag", f"{name} {key}", body=body)

    def delete_model_tag(self, name: str, key: str) -> None:
        self._request(
            "DELETE",
            "registered-models/delete-tag",
            "delete tag",
            f"{name} {key}",
            body={"name": name, "key": key},
            ok_codes=GONE,
        )

    def set_model_description(self, name: str, description: str) -> None:
        self._request(
            "PATCH",
            "registered-models/update",
            "update registered model",
            name,
            body={"name": name, "description": description},
        )

    def delete_model(self, name: str) -> None:
        self._request(
            "DELETE",
            "registered-models/delete",
            "delete registered model",
            name,
            body={"name": name},
            ok_codes=GONE,
        )

    # -- versions ------------------------------------------------------------------------------

    def log_version(
        self, name: str, source: VersionSource, tags: Mapping[str, str], description: str | None
    ) -> int:
        model_uri, run_id, model_id = log_model_isolated(
            self.tracking_uri, self.experiment_id(name), source
        )
        body: dict[str, Any] = {
            "name": name,
            "source": model_uri,
            "run_id": run_id,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if description is not None:
            body["description"] = description
        if model_id:
            body["model_id"] = model_id
        mv = self._create_version(name, body)["model_version"]
        return self._ready(name, int(mv["version"]), str(mv.get("status") or "READY"))

    def copy_version(
        self, name: str, source: str, tags: Mapping[str, str], from_registry: str | None = None
    ) -> int:
        if from_registry is not None:
            got = imported(self, from_registry, source, self.experiment_id(name))
            own = copied_tags(got.tags, f"models:/{got.model_id}")
            made_from: dict[str, Any] = {
                "name": name,
                "source": f"models:/{got.model_id}",
                "model_id": got.model_id,
                "tags": [{"key": k, "value": v} for k, v in {**own, **tags}.items()],
            }
            if got.description:
                made_from["description"] = got.description
            mv = self._create_version(name, made_from)["model_version"]
            return self._ready(name, int(mv["version"]), str(mv.get("status") or "READY"))
        model, _, number = source.removeprefix("models:/").rpartition("/")
        got = self._get("model-versions/get", "get model version", f"{model}/{number}",
                        name=model, version=number)["model_version"]  # fmt: skip
        own = copied_tags(_tags(got), str(got.get("source") or ""))
        body: dict[str, Any] = {
            "name": name,
            "source": source,  # the server fills in the run and logged model it names
            "tags": [{"key": k, "value": v} for k, v in {**own, **tags}.items()],
        }
        if got.get("description"):
            body["description"] = got["description"]
        mv = self._create_version(name, body)["model_version"]
        return self._ready(name, int(mv["version"]), str(mv.get("status") or "READY"))

    def _create_version(
        self, name: str, body: dict[str, Any], operation: str = "create model version"
    ) -> dict[str, Any]:
        """POST model-versions/create (of a model or a prompt); an answer lost after the request
        was sent is an OutcomeUnknown (the version may exist: the caller settles by its attempt
        tag, or by the content digest)."""
        try:
            created = self._request("POST", "model-versions/create", operation, name, body=body)
        except TemporaryBackendError as exc:
            if "connection refused" in str(exc):  # never reached the server
                raise
            raise OutcomeUnknown(str(exc), operation=exc.operation, target=exc.target) from exc
        assert created is not None
        return created

    def _ready(self, name: str, version: int, status: str, timeout: float = 300.0) -> int:
        """Wait, as MLflow's client does, for a version still being registered."""
        deadline = time.monotonic() + timeout
        while status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(1.0)
            got = self._get(
                "model-versions/get",
                "get model version",
                f"{name}/{version}",
                name=name,
                version=str(version),
            )
            status = str(got["model_version"].get("status") or "READY")
        if status != "READY":
            raise PermanentBackendError(
                f"model version {name}/{version} is {status}",
                operation="create model version",
                target=f"{name}/{version}",
            )
        return version

    def experiment_id(self, model: str) -> str:
        """The id of the experiment of ``model``'s logged models and traces; created if missing."""
        exp_name = experiment_name(model)
        for _ in range(2):
            found = self._request(
                "GET",
                "experiments/get-by-name",
                "get experiment",
                exp_name,
                params={"experiment_name": exp_name},
                ok_codes=GONE,
            )
            if found is not None:
                return str(found["experiment"]["experiment_id"])
            created = self._request(
                "POST",
                "experiments/create",
                "create experiment",
                exp_name,
                body={"name": exp_name},
                ok_codes=("RESOURCE_ALREADY_EXISTS",),
            )
            if created is not None:  # else created concurrently: read it back
                return str(created["experiment_id"])
        raise PermanentBackendError(
            f"experiment {exp_name} cannot be found or created", operation="get experiment"
        )

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._request(
            "POST",
            "model-versions/set-tag",
            "set version tag",
            f"{name}/{version} {key}",
            body={"name": name, "version": str(version), "key": key, "value": value},
        )

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self._request(
            "DELETE",
            "model-versions/delete-tag",
            "delete version tag",
            f"{name}/{version} {key}",
            body={"name": name, "version": str(version), "key": key},
            ok_codes=GONE,
        )

    def set_version_description(self, name: str, version: int, description: str) -> None:
        self._request(
            "PATCH",
            "model-versions/update",
            "update model version",
            f"{name}/{version}",
            body={"name": name, "version": str(version), "description": description},
        )

    # -- aliases -------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._request(
            "POST",
            "registered-models/alias",
            "set alias",
            f"{name}@{alias}",
            body={"name": name, "alias": alias, "version": str(version)},
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._request(
            "DELETE",
            "registered-models/alias",
            "delete alias",
            f"{name}@{alias}",
            body={"name": name, "alias": alias},
            ok_codes=GONE,
        )

    # -- prompts (MLflow's Prompt Registry) -------------------------------------------------------

    def create_prompt(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        body: dict[str, Any] = {
            "name": name,
            "tags": [{"key": k, "value": v} for k, v in {**tags, IS_PROMPT_TAG: "true"}.items()],
        }
        if description is not None:
            body["description"] = description
        created = self._request(
            "POST",
            "registered-models/create",
            "create prompt",
            name,
            body=body,
            ok_codes=("RESOURCE_ALREADY_EXISTS",),
        )
        if created is not None:
            return
        existing = self._get("registered-models/get", "get prompt", name, name=name)
        refused = existing_prompt_error(name, _tags(existing.get("registered_model") or {}), tags)
        if refused is not None:
            raise refused

    def create_prompt_version(
        self, name: str, content: PromptContent, tags: Mapping[str, str], description: str | None
    ) -> int:
        body: dict[str, Any] = {
            "name": name,
            "source": PROMPT_SOURCE,
            "tags": [{"key": k, "value": v} for k, v in {**content.tags(), **tags}.items()],
        }
        if description is not None:
            body["description"] = description
        created = self._create_version(name, body, "create prompt version")
        return int(created["model_version"]["version"])

    def prompt_versions(self, name: str) -> list[ObservedVersion]:
        found = self._pages(
            "model-versions/search",
            "model_versions",
            "search prompt versions",
            filter=prompt_versions_filter(name),
            max_results=VERSIONS_PAGE,
            order_by=["version_number ASC"],
        )
        return sorted((_version(mv) for mv in found if mv["name"] == name), key=lambda v: v.number)

    # -- what agentctl logged (for gc) -----------------------------------------------------------

    def observe_logged(self) -> LoggedSnapshot:
        experiments = {
            str(e["experiment_id"]): model
            for e in self._post_pages(
                "experiments/search",
                "experiments",
                "search experiments",
                {"filter": f"name LIKE '{EXPERIMENT_PREFIX}%'", "max_results": 1000},
            )
            if (model := model_of_experiment(str(e.get("name") or ""))) is not None
        }
        ids = sorted(experiments)
        runs: list[LoggedRun] = []
        models: list[LoggedModel] = []
        for chunk in (
            ids[i : i + EXPERIMENTS_CHUNK] for i in range(0, len(ids), EXPERIMENTS_CHUNK)
        ):
            for run in self._post_pages(
                "runs/search",
                "runs",
                "search runs",
                {"experiment_ids": chunk, "max_results": 1000, "run_view_type": "ACTIVE_ONLY"},
            ):
                info = run.get("info") or {}
                runs.append(LoggedRun(
                    run_id=str(info["run_id"]),
                    model=experiments[str(info["experiment_id"])],
                    started_ms=int(info.get("start_time") or 0),
                    tags=_tags(run.get("data") or {}),
                ))  # fmt: skip
            for lm in self._post_pages(
                "logged-models/search",
                "models",
                "search logged models",
                {"experiment_ids": chunk, "max_results": 100},
            ):
                info = lm.get("info") or {}
                models.append(LoggedModel(
                    model_id=str(info["model_id"]),
                    run_id=str(info.get("source_run_id") or ""),
                    model=experiments[str(info["experiment_id"])],
                    created_ms=int(info.get("creation_timestamp_ms") or 0),
                    tags=_tags(info),
                ))  # fmt: skip
        return LoggedSnapshot(tuple(runs), tuple(models))

    def delete_logged_model(self, model_id: str) -> None:
        self._request(
            "DELETE",
            f"logged-models/{model_id}",
            "delete logged model",
            model_id,
            body={"model_id": model_id},
            ok_codes=GONE,
        )

    def delete_run(self, run_id: str) -> None:
        self._request(
            "POST", "runs/delete", "delete run", run_id, body={"run_id": run_id}, ok_codes=GONE
        )


_MODELS = ("registered-models/search", "registered_models")
_VERSIONS = ("model-versions/search", "model_versions")
_BY_NUMBER = ["name ASC", "version_number ASC"]


def _models(
    models: list[dict[str, Any]], versions: list[dict[str, Any]]
) -> dict[str, ObservedModel]:
    """Registered models (or prompts) with their versions, from a pair of bulk searches."""
    by_model: dict[str, dict[int, ObservedVersion]] = {}
    for mv in versions:
        by_model.setdefault(mv["name"], {})[int(mv["version"])] = _version(mv)
    return {
        rm["name"]: ObservedModel(
            name=rm["name"],
            description=rm.get("description") or "",
            tags=_tags(rm),
            aliases={a["alias"]: int(a["version"]) for a in rm.get("aliases") or []},
            versions=by_model.get(rm["name"], {}),
        )
        for rm in models
    }


def _tags(obj: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value") or "" for t in obj.get("tags") or []}


def _version(mv: Mapping[str, Any]) -> ObservedVersion:
    return ObservedVersion(
        number=int(mv["version"]),
        status=str(mv.get("status") or "READY"),
        tags=_tags(mv),
        description=mv.get("description") or "",
        source=mv.get("source") or "",
        run_id=mv.get("run_id"),
        created=_seconds(mv.get("creation_timestamp")),
    )


def _seconds(ms: Any) -> float | None:
    """MLflow's milliseconds since the epoch (a number or its string) as seconds."""
    try:
        return int(ms) / 1000.0 if ms is not None else None
    except (TypeError, ValueError):
        return None
