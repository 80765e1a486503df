"""Fingerprints: a stable digest of a desired state or an observed snapshot. Pure data: no I/O.

A saved plan carries the fingerprints of what it was made from; applying it refuses when a fresh
load of the manifests or a fresh observation gives another fingerprint (a stale plan). The same
value always gives the same fingerprint, in any process: mappings are written in key order,
values as canonical JSON. An observed snapshot can be restricted to the models (registry) or
agents (serving) a plan depends on, so that a change elsewhere in a shared registry does not
make the plan stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel

from controller.core.manifest.desired import Desired, ResolvedSource
from controller.core.state.lock import LOCK_PREFIX
from controller.core.state.observed import RegistrySnapshot, ServingSnapshot

__all__ = ["canonical", "fingerprint"]


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses as objects of their fields, mappings as
    ``[key, value]`` pairs in key order (keys may be numbers), sequences as lists, pydantic
    models as their JSON dump."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        pairs = [[canonical(k), canonical(v)] for k, v in value.items()]
        return sorted(pairs, key=lambda kv: json.dumps(kv[0], sort_keys=True))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [canonical(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def _digest(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def fingerprint(
    value: Desired | RegistrySnapshot | ServingSnapshot, *, only: Collection[str] | None = None
) -> str:
    """``sha256:<hex>`` of ``value``.

    - a :class:`Desired`: every agent's manifest and the content digest of its source, every
      prompt's manifest and template digest, and the ServingDefaults (not where the files lie
      on this machine);
    - a :class:`RegistrySnapshot`: the registered models named in ``only`` (all if None), with
      their tags, aliases and versions; a model that does not exist counts as such; and the
      prompts named in ``only`` (all if None) that exist; and, when the environment before lives
      in another registry, its location and the same of its snapshot;
    - a :class:`ServingSnapshot`: the agents named in ``only`` (all if None): their servers,
      route and shadow, and the cluster objects a Kubernetes target read of them.
    """
    if isinstance(value, Desired):
        return _digest(_desired(value))
    if isinstance(value, RegistrySnapshot):
        # All models: but the registry lock (a model too), which the apply itself holds.
        every = (n for n in value.models if not n.startswith(LOCK_PREFIX))
        names = sorted(every if only is None else set(only))
        data: dict[str, Any] = {"models": [[n, canonical(value.models.get(n))] for n in names]}
        prompts = sorted(value.prompts if only is None else set(only) & set(value.prompts))
        if prompts:  # only then, so that a registry without prompts keeps its fingerprint
            data["prompts"] = [[n, canonical(value.prompts[n])] for n in prompts]
        if value.upstream is not None:  # the environment before's registry: its models named
            up = value.upstream
            data["upstream"] = [up.location, fingerprint(up.snapshot, only=only)]
        return _digest(data)
    names = sorted(value.agents if only is None else set(only))
    out: dict[str, Any] = {"agents": [[n, canonical(value.agents.get(n))] for n in names]}
    if value.cluster is not None:
        cluster = value.cluster
        out["cluster"] = {
            "namespace": cluster.namespace,
            "gateway_api": cluster.gateway_api,
            "agents": [[n, canonical(cluster.agents.get(n))] for n in names],
        }
    return _digest(out)


def _desired(desired: Desired) -> dict[str, Any]:
    agents = []
    for agent in sorted(desired.agents, key=lambda a: a.name):
        source = agent.source
        agents.append(
            {
                "name": agent.name,
                "manifest_ref": agent.manifest_ref,
                "manifest": canonical(agent.manifest),
                "source": None if source is None else _source(source),
            }
        )
        if agent.named:  # only then, so that fingerprints of other agents stay as they were
            agents[-1]["named"] = {n: _source(s) for n, s in agent.named.items()}
    defaults = desired.defaults
    out = {"agents": agents, "defaults": None if defaults is None else canonical(defaults)}
    if desired.prompts:  # only then, as for named versions
        out["prompts"] = [
            {
                "manifest_ref": p.manifest_ref,
                "manifest": canonical(p.manifest),
                "template_ref": p.template_ref,
                "digest": p.content.digest,
            }
            for p in sorted(desired.prompts, key=lambda p: p.name)
        ]
    return out


def _source(source: ResolvedSource) -> dict[str, Any]:
    return {
        "digest": source.digest,
        "refs": [source.code_ref, source.config_ref, source.requirements_ref],
        "pip_requirements": list(source.pip_requirements),
        **({"commit": source.commit} if source.commit else {}),
        **({"head": source.head} if source.head else {}),  # (recorded on what is logged)
    }
