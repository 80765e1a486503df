"""An in-memory Registry for executor and reconcile unit tests (the real one is tested against
a real MLflow server in tests/integration)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from controller.core.environment.record import copied_tags
from controller.core.errors import PermanentBackendError, TemporaryBackendError
from controller.core.prompt.content import IS_PROMPT_TAG, PromptContent
from controller.core.state.logged import LoggedModel, LoggedRun, LoggedSnapshot
from controller.core.state.observed import (
    DIGEST_TAG,
    ObservedModel,
    ObservedVersion,
    RegistrySnapshot,
)
from controller.ports import VersionSource


@dataclass
class _Model:
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    versions: dict[int, ObservedVersion] = field(default_factory=dict)


class FakeRegistry:
    def __init__(self) -> None:
        self.models: dict[str, _Model] = {}
        self.writes: list[str] = []
        self.faults: dict[str, list[Exception]] = {}
        #: (model, version) -> the code and config bytes logged, read from the source's paths
        #: when the version is logged (as the MLflow logger reads them)
        self.logged: dict[tuple[str, int], tuple[bytes | None, bytes | None]] = {}
        #: What each version was logged from (owner and written_by: the run's and model's tags).
        self.sources: dict[tuple[str, int], VersionSource] = {}
        #: what observe_logged reports: the runs and logged models agentctl's experiments hold
        self.runs: dict[str, LoggedRun] = {}
        self.logged_models: dict[str, LoggedModel] = {}
        #: Other registries by location (an environment before in another registry).
        self.peers: dict[str, FakeRegistry] = {}

    def fail(self, op: str, *errors: Exception) -> None:
        self.faults.setdefault(op, []).extend(errors)

    def _op(self, op: str, write: bool = True) -> None:
        queue = self.faults.get(op)
        if queue:
            raise queue.pop(0)
        if write:
            self.writes.append(op)

    def observe(self) -> RegistrySnapshot:
        # As MLflow does: prompts and models share one namespace; model searches leave prompts
        # out, prompt searches (filtered on the prompt tag) find only them.
        self._op("observe", write=False)
        every = {
            name: ObservedModel(
                name, m.description, dict(m.tags), dict(m.aliases), dict(m.versions)
            )
            for name, m in self.models.items()
        }
        return RegistrySnapshot(
            {n: m for n, m in every.items() if m.tags.get(IS_PROMPT_TAG) != "true"},
            {n: m for n, m in every.items() if m.tags.get(IS_PROMPT_TAG) == "true"},
        )

    # -- prompts: registered models tagged as prompts ------------------------------------------

    def create_prompt(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        self._op("create_prompt")
        if name in self.models:
            raise PermanentBackendError("exists")
        self.models[name] = _Model(description or "", {**tags, IS_PROMPT_TAG: "true"})

    def create_prompt_version(
        self, name: str, content: PromptContent, tags: Mapping[str, str], description: str | None
    ) -> int:
        self._op("create_prompt_version")
        m = self.models[name]
        number = max(m.versions, default=0) + 1
        all_tags = {**content.tags(), **tags}
        m.versions[number] = ObservedVersion(
            number, tags=all_tags, description=description or "", source="dummy-source"
        )
        return number

    def prompt_versions(self, name: str) -> list[ObservedVersion]:
        self._op("prompt_versions", write=False)
        m = self.models.get(name)
        if m is None or m.tags.get(IS_PROMPT_TAG) != "true":
            return []
        return sorted(m.versions.values(), key=lambda v: v.number)

    def create_model(self, name: str, description: str | None, tags: Mapping[str, str]) -> None:
        self._op("create_model")
        if name in self.models:
            raise PermanentBackendError("exists")
        self.models[name] = _Model(description or "", dict(tags))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._op("set_model_tag")
        self.models[name].tags[key] = value

    def delete_model_tag(self, name: str, key: str) -> None:
        self._op("delete_model_tag")
        self.models[name].tags.pop(key, None)

    def set_model_description(self, name: str, description: str) -> None:
        self._op("set_model_description")
        self.models[name].description = description

    def delete_model(self, name: str) -> None:
        self._op("delete_model")
        self.models.pop(name, None)

    def find_version(self, name: str, digest: str) -> int | None:
        self._op("find_version", write=False)
        m = self.models.get(name)
        hits = [n for n, v in (m.versions.items() if m else []) if v.tags.get(DIGEST_TAG) == digest]
        return min(hits) if hits else None

    def copy_version(
        self, name: str, source: str, tags: Mapping[str, str], from_registry: str | None = None
    ) -> int:
        self._op("copy_version")
        model, _, number = source.removeprefix("models:/").rpartition("/")
        m = self.models[name]
        n = max(m.versions, default=0) + 1
        if from_registry is not None:  # from a peer: a new logged model holds the files here
            got = self.peers[from_registry].models[model].versions[int(number)]
            model_id = f"m-imported-{name}-{n}"
            own = copied_tags(got.tags, f"models:/{model_id}")
            m.versions[n] = ObservedVersion(n, tags={**own, **tags}, description=got.description,
                                            source=f"models:/{model_id}")  # fmt: skip
            return n
        got = self.models[model].versions[int(number)]
        own = copied_tags(got.tags, got.source)
        m.versions[n] = ObservedVersion(
            n, tags={**own, **tags}, description=got.description, source=source, run_id=got.run_id
        )
        return n

    def log_version(
        self, name: str, source: VersionSource, tags: Mapping[str, str], description: str | None
    ) -> int:
        self._op("log_version")
        m = self.models[name]
        number = max(m.versions, default=0) + 1
        m.versions[number] = ObservedVersion(number, tags=dict(tags), description=description or "")
        self.logged[(name, number)] = (_read(source.code_path), _read(source.config_path))
        self.sources[(name, number)] = source
        return number

    def observe_logged(self) -> LoggedSnapshot:
        self._op("observe_logged", write=False)
        return LoggedSnapshot(tuple(self.runs.values()), tuple(self.logged_models.values()))

    def delete_logged_model(self, model_id: str) -> None:
        self._op("delete_logged_model")
        self.logged_models.pop(model_id, None)

    def delete_run(self, run_id: str) -> None:
        self._op("delete_run")
        self.runs.pop(run_id, None)

    def versions_with_digest(self, name: str, digest: str) -> list[ObservedVersion]:
        self._op("versions_with_digest", write=False)
        m = self.models.get(name)
        hits = [v for v in (m.versions.values() if m else []) if v.tags.get(DIGEST_TAG) == digest]
        return sorted(hits, key=lambda v: v.number)

    def delete_version(self, name: str, version: int) -> None:
        self._op("delete_version")
        m = self.models.get(name)
        if m is not None:
            m.versions.pop(version, None)
            m.aliases = {a: n for a, n in m.aliases.items() if n != version}

    # -- the registry lock: models with tags, created and renamed exclusively ----------------

    def create_lock(self, name: str, tags: Mapping[str, str]) -> bool:
        self._op("create_lock")
        if name in self.models:
            return False
        self.models[name] = _Model(tags=dict(tags))
        return True

    def read_lock(self, name: str) -> Mapping[str, str] | None:
        self._op("read_lock", write=False)
        m = self.models.get(name)
        return dict(m.tags) if m is not None else None

    def rename_lock(self, name: str, new_name: str) -> bool:
        self._op("rename_lock")
        if name not in self.models or new_name in self.models:
            return False
        self.models[new_name] = self.models.pop(name)
        return True

    def _version(self, name: str, version: int) -> ObservedVersion:
        return self.models[name].versions[version]

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._op("set_version_tag")
        v = self._version(name, version)
        self.models[name].versions[version] = replace(v, tags={**v.tags, key: value})

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self._op("delete_version_tag")
        v = self._version(name, version)
        tags = {k: x for k, x in v.tags.items() if k != key}
        self.models[name].versions[version] = replace(v, tags=tags)

    def set_version_description(self, name: str, version: int, description: str) -> None:
        self._op("set_version_description")
        v = self._version(name, version)
        self.models[name].versions[version] = replace(v, description=description)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._op("set_alias")
        self.models[name].aliases[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self._op("delete_alias")
        self.models[name].aliases.pop(alias, None)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


TEMPORARY = TemporaryBackendError("injected: 503")
PERMANENT = PermanentBackendError("injected: 403")
