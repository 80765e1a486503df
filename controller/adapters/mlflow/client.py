"""The MLflow Model Registry behind :class:`controller.ports.Registry`.

Observation is four paged bulk reads (``search_registered_models`` and ``search_model_versions``
for models, then the same two filtered on the prompt tag for the prompts of MLflow's Prompt
Registry, :mod:`controller.adapters.mlflow.prompts`), whatever the number of agents and prompts. MLflow's own HTTP retries are turned off here by default
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, unless the user set it) so that one policy, agentctl's
(:mod:`controller.engine.retry`), decides how long to wait for a server that is down or slow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from controller.adapters.mlflow.importer import Place, imported
from controller.adapters.mlflow.logger import log_model_isolated
from controller.adapters.mlflow.prompts import (
    PROMPT_FILTER,
    PROMPT_SOURCE,
    existing_model_error,
    existing_prompt_error,
    prompt_versions_filter,
)
from controller.core.environment.record import copied_tags
from controller.core.errors import (
    BackendError,
    OutcomeUnknown,
    PermanentBackendError,
    TemporaryBackendError,
)
from controller.core.prompt.content import IS_PROMPT_TAG, PromptContent
from controller.core.secrets import redact_text, without_credentials
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
    experiment_name,
)
from controller.ports import VersionSource

__all__ = [
    "EXPERIMENTS_CHUNK",
    "GONE",
    "MODELS_PAGE",
    "TRANSIENT_STATUS",
    "VERSIONS_PAGE",
    "MlflowRegistry",
    "artifact_location",
    "experiment_name",
]

T = TypeVar("T")

MODELS_PAGE = 1000  # MLflow's maximum for search_registered_models
VERSIONS_PAGE = 10000  # MLflow's default (and Databricks' maximum) for search_model_versions
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
#: Experiment ids asked about in one search of runs or logged models.
EXPERIMENTS_CHUNK = 100
GONE = ("RESOURCE_DOES_NOT_EXIST",)  # deleting what is already gone reaches the goal


def artifact_location(tracking_uri: str, exp_name: str) -> str | None:
    """Where an experiment agentctl creates keeps its artifacts: with a sqlite file registry,
    ``mlartifacts/`` beside the database (MLflow's own default, ``./mlruns``, is wherever the
    command runs); elsewhere None, the server's choice. Experiments that exist keep theirs."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///") :].partition("?")[0]
    if not db or db == ":memory:":
        return None
    folder = "agentctl-" + exp_name.removeprefix(EXPERIMENT_PREFIX)  # never '..' or '.'
    return os.path.join(os.path.dirname(os.path.abspath(db)), "mlartifacts", folder)


def trace_filter(model_id: str, since_ms: int) -> str:
    """MLflow's filter for the traces of one logged model that started after ``since_ms``, as
    its servers wrote them: not an evaluation's (``mlflow.genai.evaluate`` writes traces with
    the same ``mlflow.modelId``, and the run they belong to as ``mlflow.sourceRun``)."""
    if not model_id.replace("-", "").isalnum():
        raise PermanentBackendError(f"not a logged model id: {model_id!r}")
    return (
        f"metadata.`mlflow.modelId` = '{model_id}' AND trace.timestamp_ms > {int(since_ms)} "
        "AND metadata.`mlflow.sourceRun` IS NULL"
    )


class MlflowRegistry:
    #: The registry of the environment before, when it is another one, and its location as plans
    #: name it (set by the composition root); None: promotions copy within this registry.
    upstream: Place | None = None
    upstream_shown: str = ""

    def __init__(self, tracking_uri: str, *, http_timeout: int = 30) -> None:
        """Models are always logged in a child process (:mod:`controller.adapters.mlflow.logger`):
        the agent's code never runs in this one."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(http_timeout))
        self.tracking_uri = tracking_uri
        #: How the registry is named in messages: never with the URI's credentials.
        self.shown = without_credentials(tracking_uri)
        self._lazy_client: Any = None

    @property
    def _client(self) -> Any:
        """The MlflowClient, built on first use so that a bad URI is a clear error."""
        if self._lazy_client is None:
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException

            try:
                client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            except MlflowException as exc:
                raise PermanentBackendError(
                    f"cannot use the tracking URI {self.shown!r}: {redact_text(exc.message)}",
                    operation="connect",
                    target=self.shown,
                ) from exc
            self._lazy_client = client
        return self._lazy_client

    @property
    def _registry(self) -> Any:
        """The client's registry client, for every write to a registered model or version:
        MlflowClient's own methods refuse a prompt's name (``_raise_if_prompt``, one more read
        per call), and prompts take the same tags, descriptions, aliases and deletes as models
        (MLflow's prompt methods call these very ones)."""
        from mlflow.exceptions import MlflowException

        try:
            return self._client._get_registry_client()
        except MlflowException as exc:
            raise PermanentBackendError(
                f"no model registry at {self.shown!r}: {redact_text(exc.message)}",
                operation="connect",
                target=self.shown,
            ) from exc

    def _sqlite_file_missing(self) -> bool:
        """An embedded sqlite registry that does not exist yet: observing it must not create it."""
        prefix = "sqlite:///"
        if not self.tracking_uri.startswith(prefix):
            return False
        path = self.tracking_uri[len(prefix) :].split("?", 1)[0]
        return path not in ("", ":memory:") and not os.path.exists(path)

    # -- error translation -------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        target: str,
        fn: Callable[[], T],
        *,
        ok_codes: tuple[str, ...] = (),
    ) -> T | None:
        """Run one client call, translating its errors; an error code in ``ok_codes`` -> None."""
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            if exc.error_code in ok_codes:
                return None
            raise _translate(exc, operation, target, self.shown) from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise TemporaryBackendError(
                f"{operation} {target}: {exc}", operation=operation, target=target
            ) from exc

    def _get(self, operation: str, target: str, fn: Callable[[], T]) -> T:
        result = self._call(operation, target, fn)
        assert result is not None
        return result

    def _pages(self, operation: str, search: Callable[..., Any]) -> list[Any]:
        """Every item of a paged search."""
        items: list[Any] = []
        token = None
        while True:
            page = self._get(operation, self.shown, partial(search, page_token=token))
            items.extend(page)
            token = page.token
            if not token:
                return items

    # -- observation -------------------------------------------------------------------------

    def observe(self) -> RegistrySnapshot:
        if self._sqlite_file_missing():
            return RegistrySnapshot()
        return RegistrySnapshot(self._observe(None), self._observe(PROMPT_FILTER))

    def _observe(self, flt: str | None) -> dict[str, ObservedModel]:
        """Registered models with their versions (``flt`` None: prompts left out, as MLflow's
        searches do), or prompts with theirs (``flt``: the prompt filter): two paged searches."""
        c = self._client
        what = "prompts" if flt else "registered models"
        raw_models = self._pages(
            f"search {what}",
            partial(c.search_registered_models, filter_string=flt, max_results=MODELS_PAGE),
        )
        raw_versions = self._pages(
            "search prompt versions" if flt else "search model versions",
            partial(
                c.search_model_versions,
                filter_string=flt,
                max_results=VERSIONS_PAGE,
                order_by=["name ASC", "version_number ASC"],
            ),
        )
        versions: dict[str, dict[int, ObservedVersion]] = {}
        for mv in raw_versions:
            versions.setdefault(mv.name, {})[int(mv.version)] = _version(mv)
        models = {}
        for rm in raw_models:
            aliases = {str(k): int(v) for k, v in (rm.aliases or {}).items()}
            models[rm.name] = ObservedModel(
                name=rm.name,
                description=rm.description or "",
                tags=_model_tags(rm),
                aliases=aliases,
                versions=versions.get(rm.name, {}),
            )
        return models

    def traces(
        self, model: str, model_id: str, since_ms: int, limit: int
    ) -> list[tuple[str, float]]:
        exp = self._call(
            "get experiment",
            experiment_name(model),
            lambda: self._client.get_experiment_by_name(experiment_name(model)),
        )
        if exp is None or not model_id:
            return []
        flt = trace_filter(model_id, since_ms)
        out: list[tuple[str, float]] = []
        token = None
        while len(out) < limit:
            page = self._get(
                "search traces",
                model,
                lambda t=token: self._client.search_traces(  # type: ignore[misc]
                    locations=[str(exp.experiment_id)],
                    filter_string=flt,
                    max_results=min(500, limit - len(out)),
                    page_token=t,
                    include_spans=False,
                ),
            )
            for trace in page:
                state = getattr(trace.info.state, "value", str(trace.info.state))
                out.append((str(state), float(trace.info.execution_duration or 0)))
            token = page.token
            if not token:
                break
        return out

    def find_version(self, name: str, digest: str) -> int | None:
        # Filter on the digest alone (hex, safe to quote) and match the name here: MLflow's
        # filter parser does not unescape quotes, so names with ' or \\ would never match.
        flt = f"tags.`{DIGEST_TAG}` = '{digest}'"
        found = self._get(
            "search model versions",
            name,
            lambda: self._client.search_model_versions(filter_string=flt, max_results=1000),
        )
        numbers = [int(mv.version) for mv in found if mv.name == name and mv.status != FAILED]
        return min(numbers) if numbers else None

    def versions_with_digest(self, name: str, digest: str) -> list[ObservedVersion]:
        flt = f"tags.`{DIGEST_TAG}` = '{digest}'"
        found = self._get(
            "search model versions",
            name,
            lambda: self._client.search_model_versions(filter_string=flt, max_results=1000),
        )
        out = [_version(mv) for mv in found if mv.name == name and mv.status != FAILED]
        return sorted(out, key=lambda v: v.number)

    def delete_version(self, name: str, version: int) -> None:
        self._call(
            "delete model version",
            f"{name}/{version}",
            partial(self._registry.delete_model_version, name, str(version)),
            ok_codes=GONE,
        )

    # -- the registry lock -------------------------------------------------------------------

    def create_lock(self, name: str, tags: Mapping[str, str]) -> bool:
        created = self._call(
            "create lock",
            name,
            lambda: self._client.create_registered_model(name, tags=dict(tags)),
            ok_codes=("RESOURCE_ALREADY_EXISTS",),
        )
        return created is not None

    def read_lock(self, name: str) -> Mapping[str, str] | None:
        found = self._call(
            "read lock", name, partial(self._client.get_registered_model, name), ok_codes=GONE
        )
        return None if found is None else {k: v or "" for k, v in (found.tags or {}).items()}

    def rename_lock(self, name: str, new_name: str) -> bool:
        renamed = self._call(
            "take over lock",
            name,
            lambda: self._client.rename_registered_model(name, new_name) or True,
            ok_codes=("RESOURCE_ALREADY_EXISTS", *GONE),
        )
        return renamed is not None

    # -- registered models -------------------------------------------------------------------

    def create_model(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        c = self._client
        created = self._call(
            "create registered model",
            name,
            lambda: c.create_registered_model(name, tags=dict(tags), description=description),
            ok_codes=("RESOURCE_ALREADY_EXISTS",),
        )
        if created is not None:
            return
        # A retry after a create that did succeed is fine if the model is ours; else a conflict.
        existing = self._get("get registered model", name, partial(c.get_registered_model, name))
        refused = existing_model_error(name, _model_tags(existing), tags)
        if refused is not None:
            raise refused

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call(
            "set tag",
            f"{name} {key}",
            partial(self._registry.set_registered_model_tag, name, key, value),
        )

    def delete_model_tag(self, name: str, key: str) -> None:
        self._call(
            "delete tag",
            f"{name} {key}",
            partial(self._registry.delete_registered_model_tag, name, key),
            ok_codes=GONE,
        )

    def set_model_description(self, name: str, description: str) -> None:
        self._call(
            "update registered model",
            name,
            partial(self._registry.update_registered_model, name, description=description),
        )

    def delete_model(self, name: str) -> None:
        self._call(
            "delete registered model",
            name,
            partial(self._registry.delete_registered_model, name),
            ok_codes=GONE,
        )

    # -- versions ----------------------------------------------------------------------------

    def log_version(
        self,
        name: str,
        source: VersionSource,
        tags: Mapping[str, str],
        description: str | None,
    ) -> int:
        return self._get(
            "log model version", name, lambda: self._log(name, source, tags, description)
        )

    def _log(
        self, name: str, source: VersionSource, tags: Mapping[str, str], description: str | None
    ) -> int:
        exp_id = self._experiment_id(name)
        model_uri, run_id, model_id = log_model_isolated(self.tracking_uri, exp_id, source)
        # MLflow's sqlalchemy registry resolves a models:/<model id> source through the global
        # tracking URI, not this client's: point it at this registry (the model was logged by a
        # child, so nothing in this process has set it).
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        # Tags and description go in with the version itself: a version never exists without
        # its digest, so a crash here cannot lead to the same source being registered twice.
        return self._create(
            name, source=model_uri, run_id=run_id, tags=dict(tags), description=description,
            model_id=model_id,
        )  # fmt: skip

    def _create(self, name: str, **version: Any) -> int:
        """create_model_version, its failure as a BackendError (see _create_error)."""
        try:
            return int(self._client.create_model_version(name=name, **version).version)
        except Exception as exc:
            error = _create_error(exc, name, self.tracking_uri)
            if error is None:
                raise
            raise error from exc

    def copy_version(
        self, name: str, source: str, tags: Mapping[str, str], from_registry: str | None = None
    ) -> int:
        if from_registry is not None:
            got = imported(self, from_registry, source, self.experiment_id(name))
            own = copied_tags(got.tags, f"models:/{got.model_id}")
            return self._create(
                name, source=f"models:/{got.model_id}", run_id=None, tags={**own, **tags},
                description=got.description or None, model_id=got.model_id,
            )  # fmt: skip
        return self._get("copy model version", name, lambda: self._copy(name, source, tags))

    def _copy(self, name: str, source: str, tags: Mapping[str, str]) -> int:
        import mlflow

        model, _, number = source.removeprefix("models:/").rpartition("/")
        got = self._client.get_model_version(model, number)
        own = copied_tags(got.tags or {}, str(got.source or ""))
        mlflow.set_tracking_uri(self.tracking_uri)  # (a models:/ source is resolved through it)
        return self._create(
            name, source=source, run_id=got.run_id, tags={**own, **tags},
            description=got.description or None,
        )  # fmt: skip

    def experiment_id(self, model: str) -> str:
        """The id of the experiment of ``model``'s logged models and traces; created if missing."""
        return self._get(
            "get experiment", experiment_name(model), lambda: self._experiment_id(model)
        )

    def _experiment_id(self, model: str) -> str:
        exp_name = experiment_name(model)
        exp = self._client.get_experiment_by_name(exp_name)
        return str(exp.experiment_id) if exp is not None else self._create_experiment(exp_name)

    def _create_experiment(self, exp_name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            location = artifact_location(self.tracking_uri, exp_name)
            return str(self._client.create_experiment(exp_name, artifact_location=location))
        except MlflowException as exc:  # created concurrently: read it back
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = self._client.get_experiment_by_name(exp_name)
            assert exp is not None
            return str(exp.experiment_id)

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._call(
            "set version tag",
            f"{name}/{version} {key}",
            partial(self._registry.set_model_version_tag, name, str(version), key, value),
        )

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self._call(
            "delete version tag",
            f"{name}/{version} {key}",
            partial(self._registry.delete_model_version_tag, name, str(version), key),
            ok_codes=GONE,
        )

    def set_version_description(self, name: str, version: int, description: str) -> None:
        self._call(
            "update model version",
            f"{name}/{version}",
            partial(
                self._registry.update_model_version, name, str(version), description=description
            ),
        )

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._call(
            "set alias",
            f"{name}@{alias}",
            lambda: self._registry.set_registered_model_alias(name, alias, str(version)),
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._call(
            "delete alias",
            f"{name}@{alias}",
            partial(self._registry.delete_registered_model_alias, name, alias),
            ok_codes=GONE,
        )

    # -- prompts (MLflow's Prompt Registry) -------------------------------------------------------

    # MlflowClient refuses the prompt tag in create_registered_model / create_model_version
    # ("Prompts cannot be registered as models"); the registry client, which register_prompt
    # itself uses, writes them as they are.

    def create_prompt(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        registry = self._registry
        created = self._call(
            "create prompt",
            name,
            lambda: registry.create_registered_model(
                name, tags={**tags, IS_PROMPT_TAG: "true"}, description=description
            ),
            ok_codes=("RESOURCE_ALREADY_EXISTS",),
        )
        if created is not None:
            return
        existing = self._get("get prompt", name, partial(registry.get_registered_model, name))
        refused = existing_prompt_error(name, _model_tags(existing), tags)
        if refused is not None:
            raise refused

    def create_prompt_version(
        self, name: str, content: PromptContent, tags: Mapping[str, str], description: str | None
    ) -> int:
        registry = self._registry
        try:
            mv = registry.create_model_version(
                name=name,
                source=PROMPT_SOURCE,
                tags={**content.tags(), **tags},
                description=description,
            )
        except Exception as exc:
            error = _create_error(exc, name, self.shown, "create prompt version")
            if error is None:
                raise
            raise error from exc
        return int(mv.version)

    def prompt_versions(self, name: str) -> list[ObservedVersion]:
        if self._sqlite_file_missing():
            return []
        flt = prompt_versions_filter(name)
        found = self._pages(
            "search prompt versions",
            partial(
                self._client.search_model_versions,
                filter_string=flt,
                max_results=VERSIONS_PAGE,
                order_by=["version_number ASC"],
            ),
        )
        return sorted((_version(mv) for mv in found if mv.name == name), key=lambda v: v.number)

    # -- what agentctl logged (for gc) -------------------------------------------------------

    def observe_logged(self) -> LoggedSnapshot:
        if self._sqlite_file_missing():
            return LoggedSnapshot()
        from mlflow.entities import ViewType

        c = self._client
        experiments = {
            str(e.experiment_id): model
            for e in self._pages(
                "search experiments",
                partial(
                    c.search_experiments,
                    filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'",
                    max_results=1000,
                ),
            )
            if (model := model_of_experiment(str(e.name))) is not None
        }
        ids = sorted(experiments)
        runs: list[LoggedRun] = []
        models: list[LoggedModel] = []
        for chunk in (
            ids[i : i + EXPERIMENTS_CHUNK] for i in range(0, len(ids), EXPERIMENTS_CHUNK)
        ):
            for run in self._pages(
                "search runs",
                partial(c.search_runs, chunk, run_view_type=ViewType.ACTIVE_ONLY, max_results=1000),
            ):
                runs.append(LoggedRun(
                    run_id=str(run.info.run_id),
                    model=experiments[str(run.info.experiment_id)],
                    started_ms=int(run.info.start_time or 0),
                    tags={k: v or "" for k, v in (run.data.tags or {}).items()},
                ))  # fmt: skip
            for lm in self._pages(
                "search logged models",
                partial(c.search_logged_models, chunk, max_results=100),
            ):
                models.append(LoggedModel(
                    model_id=str(lm.model_id),
                    run_id=str(lm.source_run_id or ""),
                    model=experiments[str(lm.experiment_id)],
                    created_ms=int(lm.creation_timestamp or 0),
                    tags={k: v or "" for k, v in (lm.tags or {}).items()},
                ))  # fmt: skip
        return LoggedSnapshot(tuple(runs), tuple(models))

    def delete_logged_model(self, model_id: str) -> None:
        self._call(
            "delete logged model",
            model_id,
            partial(self._client.delete_logged_model, model_id),
            ok_codes=GONE,
        )

    def delete_run(self, run_id: str) -> None:
        self._call("delete run", run_id, partial(self._client.delete_run, run_id), ok_codes=GONE)


def _model_tags(rm: Any) -> dict[str, str]:
    """A registered model's tags, all of them: ``RegisteredModel.tags`` hides the prompt tag
    (``mlflow.prompt.is_prompt``), which MLflow's own ``register_prompt`` reads from ``_tags``;
    the REST adapter sees it, and so must this one."""
    raw = getattr(rm, "_tags", None)
    return {k: v or "" for k, v in (raw if isinstance(raw, dict) else rm.tags or {}).items()}


def _version(mv: Any) -> ObservedVersion:
    return ObservedVersion(
        number=int(mv.version),
        status=str(mv.status or "READY"),
        tags={k: v or "" for k, v in (mv.tags or {}).items()},
        description=mv.description or "",
        source=mv.source or "",
        run_id=mv.run_id,
        created=mv.creation_timestamp / 1000.0 if mv.creation_timestamp else None,
    )


def _create_error(
    exc: Exception, name: str, uri: str, operation: str = "create model version"
) -> BackendError | None:
    """A failed create_model_version as a BackendError: one without an answer (a timeout, a
    dropped connection, a 5xx) may still commit, so it is :class:`OutcomeUnknown`. None: not
    the server's error (a bug: raised as it is)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        error = _translate(exc, operation, name, uri)
    elif isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        error = TemporaryBackendError(f"{operation} {name}: {exc}", target=name)
    else:
        return None
    if isinstance(error, TemporaryBackendError) and "connection refused" not in str(error):
        return OutcomeUnknown(str(error), operation=operation, target=name)
    return error


def _translate(exc: Any, operation: str, target: str, uri: str) -> BackendError:
    status = int(exc.get_http_status_code())
    text = redact_text(str(getattr(exc, "message", exc)))
    message = f"{operation} {target}: {text}"
    if "failed with exception" in text or "failed with timeout" in text:
        lowered = text.lower()
        if "connection refused" in lowered:
            reason = "connection refused"
        elif "timeout" in lowered or "timed out" in lowered:
            reason = "timed out"
        else:
            reason = text
        message = f"{operation}: the MLflow server at {uri} did not answer ({reason})"
    if status in TRANSIENT_STATUS:
        return TemporaryBackendError(message, operation=operation, target=target)
    return PermanentBackendError(message, operation=operation, target=target)
