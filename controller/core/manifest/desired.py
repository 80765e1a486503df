"""The desired state, as loaded from manifests. Pure data: no I/O.

A :class:`Desired` is what the planner takes: every agent with its validated manifest, its
resolved source (paths and content digest, computed by the loader) and where each of its fields
stands in its file, so that plan errors can name file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.core.diagnostics import Location
from controller.core.evaluation.spec import EvaluationSpec
from controller.core.manifest.checks import FieldPath
from controller.core.manifest.schema import (
    CURRENT,
    AgentManifest,
    KubernetesServing,
    ServingDefaults,
)
from controller.core.manifest.schema_environment import EnvironmentManifest
from controller.core.manifest.schema_prompt import PromptManifest
from controller.core.prompt.binding import Binding, PromptPin, parse_binding
from controller.core.prompt.content import PromptContent

__all__ = [
    "DEFAULTS_KIND",
    "Desired",
    "DesiredAgent",
    "DesiredEnvironment",
    "DesiredPrompt",
    "ResolvedSource",
]

DEFAULTS_KIND = "ServingDefaults"


def deepest(locations: Mapping[FieldPath, Location], file: str, path: FieldPath) -> Location:
    """The location of the deepest prefix of ``path`` in ``locations``; else the file's start."""
    for n in range(len(path), -1, -1):
        loc = locations.get(path[:n])
        if loc is not None:
            return loc
    return Location(file, 1, 1)


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    code_path: str  # absolute
    config_path: str | None  # absolute
    code_ref: str  # relative to the root, for display and tags
    config_ref: str | None
    pip_requirements: tuple[str, ...]  # as written (normalised for the digest)
    digest: str
    requirements_ref: str | None = None  # the requirements file, relative to the root
    #: The commit the files were read at (``revision`` in the manifest); None: the working tree.
    commit: str | None = None
    revision: str | None = None  # the revision as the manifest names it
    #: The agent's prompt bindings resolved against the registry and the Prompt documents
    #: (:func:`controller.core.prompt.resolve.bind_prompts`); ``digest`` is then the bound
    #: digest, ``files_digest`` the files' own.
    pins: tuple[PromptPin, ...] = ()
    files_digest: str | None = None
    #: The commit the working tree is at (HEAD) when ``commit`` is None and it is a git
    #: repository: recorded on the version logged from it.
    head: str | None = None
    #: A version promoted into an environment after another is not built: it is copied from
    #: this version (``models:/<model>/<version>``), and ``digest`` is that version's.
    promoted_from: str | None = None
    #: Where that version is when it is in another registry (:class:`~.observed.Upstream`'s
    #: location); None: in this one.
    promoted_registry: str | None = None
    #: What a copy carries from that version (its tags kept in a copy: the evaluation verdict,
    #: the commit...), known before the copy is made.
    carried: Mapping[str, str] = field(default_factory=dict)

    @property
    def refs(self) -> tuple[str, ...]:
        """Every file the source is made of, relative to the root."""
        return tuple(r for r in (self.code_ref, self.config_ref, self.requirements_ref) if r)


@dataclass(frozen=True, slots=True)
class DesiredAgent:
    manifest: AgentManifest
    file: str
    source: ResolvedSource | None
    locations: Mapping[FieldPath, Location] = field(default_factory=dict)
    manifest_ref: str = ""  # the manifest file, relative to the root
    #: Each named version's source (spec.versions[].source over spec.source), in declaration order.
    named: Mapping[str, ResolvedSource] = field(default_factory=dict)
    #: spec.evaluation resolved: the dataset's rows, the scorers, one digest over them.
    evaluation: EvaluationSpec | None = None
    #: In an environment after another (nothing built here): the files its versions are built
    #: from in the first environment, relative to the root (a change to them comes here later).
    upstream_refs: tuple[str, ...] = ()

    def source_of(self, ref: object) -> ResolvedSource | None:
        """The source a version reference is built from: spec.source for ``current``, a named
        version's own; None for a registry number."""
        if ref == CURRENT:
            return self.source
        return self.named.get(ref) if isinstance(ref, str) else None

    @property
    def sources(self) -> tuple[ResolvedSource, ...]:
        """Every source the agent's versions are built from: spec.source's, then the named ones."""
        return (*((self.source,) if self.source else ()), *self.named.values())

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def model_name(self) -> str:
        return self.manifest.model_name

    @property
    def bindings(self) -> tuple[Binding, ...]:
        """spec.prompts, parsed, in key order."""
        return tuple(parse_binding(k, v) for k, v in sorted(self.manifest.spec.prompts.items()))

    def location(self, path: FieldPath) -> Location:
        """The location of the deepest prefix of ``path`` that the file has."""
        return deepest(self.locations, self.file, path)


@dataclass(frozen=True, slots=True)
class DesiredPrompt:
    """A ``kind: Prompt`` document with its template read and parsed (``content``: what the
    version ``current`` holds)."""

    manifest: PromptManifest
    file: str
    content: PromptContent
    template_ref: str  # the template file, relative to the root
    locations: Mapping[FieldPath, Location] = field(default_factory=dict)
    manifest_ref: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def prompt_name(self) -> str:
        return self.manifest.prompt_name

    def location(self, path: FieldPath) -> Location:
        """The location of the deepest prefix of ``path`` that the file has."""
        return deepest(self.locations, self.file, path)


@dataclass(frozen=True, slots=True)
class DesiredEnvironment:
    """A ``kind: Environment`` document: one stage of the promotion path."""

    manifest: EnvironmentManifest
    file: str
    locations: Mapping[FieldPath, Location] = field(default_factory=dict)
    manifest_ref: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name

    def location(self, path: FieldPath) -> Location:
        """The location of the deepest prefix of ``path`` that the file has."""
        return deepest(self.locations, self.file, path)


@dataclass(frozen=True, slots=True)
class Desired:
    agents: tuple[DesiredAgent, ...]
    root: str = ""
    #: The ``kind: ServingDefaults`` document, if the desired state has one.
    defaults: ServingDefaults | None = None
    defaults_location: Location | None = None
    defaults_ref: str = ""  # its file, relative to the root
    #: The ``kind: Prompt`` documents.
    prompts: tuple[DesiredPrompt, ...] = ()
    #: The ``kind: Environment`` documents, in promotion order (each after the one it follows).
    environments: tuple[DesiredEnvironment, ...] = ()
    #: The environment this desired state is (:func:`controller.core.environment.overlay.in_environment`);
    #: None: the manifests as written.
    environment: str | None = None
    #: The model server's source, run on Kubernetes as ``python -c <source>`` (given by the
    #: shell that loads the manifests: agentctl's own agent server); "": ``mlflow models serve``.
    server_script: str = ""

    @property
    def kubernetes_defaults(self) -> KubernetesServing | None:
        return self.defaults.spec.kubernetes if self.defaults else None

    def by_model(self) -> dict[str, DesiredAgent]:
        return {a.model_name: a for a in self.agents}

    def by_prompt(self) -> dict[str, DesiredPrompt]:
        """Registered prompt name -> its document."""
        return {p.prompt_name: p for p in self.prompts}
