"""Which runs and logged models ``agentctl gc`` deletes: those agentctl logged for an owner that no
registered version references. Pure data: no I/O, no clock (``now_ms`` is passed in).

agentctl logs a model in a run of its experiment ``/agentctl/<model>`` and then registers it as a
version (:mod:`controller.adapters.mlflow.logger`); an apply stopped in between (a crash, a
registry that failed until the retries ran out) leaves the run and the logged model behind, and
no later apply reuses them (it logs afresh, then registers). Such a leftover is an orphan when:

- agentctl created it: the run carries ``agentctl.io/source-digest`` (the logged model, or its
  run, too);
- it is the owner's: its ``agentctl.io/owner`` tag says so; one logged before that tag existed
  is the owner's when its experiment's registered model is;
- no version of any registered model, whoever owns it, names it: a run is kept by a version's
  ``run_id``, a ``runs:/<id>/...`` source, or a version naming a model logged in it; a logged
  model by a version's ``models:/m-...`` source, or a version naming its run;
- it is at least ``min_age_s`` old: an apply logging now has not registered yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.core.state.logged import LoggedSnapshot
from controller.core.state.observed import AGENT_TAG, DIGEST_TAG, OWNER_TAG, RegistrySnapshot

__all__ = ["Orphan", "orphans"]


@dataclass(frozen=True, slots=True)
class Orphan:
    kind: Literal["logged_model", "run"]
    id: str
    model: str  # the registered model it was logged for
    agent: str
    digest: str
    age_s: float


def orphans(
    logged: LoggedSnapshot,
    registry: RegistrySnapshot,
    owner: str,
    now_ms: int,
    min_age_s: float,
) -> tuple[Orphan, ...]:
    """The owner's runs and logged models that no version references, logged models first (a
    run is deleted after what was logged in it), each sorted by model and id."""
    versions = [v for m in registry.models.values() for v in m.versions.values()]
    named_runs = {v.run_id for v in versions if v.run_id} | {
        v.source[len("runs:/") :].split("/", 1)[0]
        for v in versions
        if v.source.startswith("runs:/")
    }
    named_models = {v.model_id for v in versions if v.model_id}
    owners = {name: m.owner for name, m in registry.models.items()}

    def mine(tags: dict[str, str] | None, model: str) -> bool:
        tags = tags or {}
        return tags.get(OWNER_TAG, owners.get(model)) == owner

    runs = {r.run_id: r for r in logged.runs if DIGEST_TAG in r.tags}
    out: list[Orphan] = []
    for m in sorted(logged.models, key=lambda m: (m.model, m.model_id)):
        run = runs.get(m.run_id)
        tags = dict(m.tags) if DIGEST_TAG in m.tags else dict(run.tags) if run else None
        if tags is None or not mine(tags, m.model):
            continue
        if m.model_id in named_models or (m.run_id and m.run_id in named_runs):
            continue
        age = (now_ms - m.created_ms) / 1000.0
        if age < min_age_s:
            continue
        out.append(Orphan("logged_model", m.model_id, m.model, tags.get(AGENT_TAG, ""),
                          tags.get(DIGEST_TAG, ""), age))  # fmt: skip
    # A run whose logged model a version names is referenced too.
    named_runs |= {m.run_id for m in logged.models if m.model_id in named_models and m.run_id}
    for r in sorted(runs.values(), key=lambda r: (r.model, r.run_id)):
        if not mine(dict(r.tags), r.model) or r.run_id in named_runs:
            continue
        age = (now_ms - r.started_ms) / 1000.0
        if age < min_age_s:
            continue
        out.append(Orphan("run", r.run_id, r.model, r.tags.get(AGENT_TAG, ""),
                          r.tags[DIGEST_TAG], age))  # fmt: skip
    return tuple(out)
