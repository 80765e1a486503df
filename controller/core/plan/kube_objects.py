"""The Kubernetes objects agentctl writes for an agent, and how it reads them back. Pure data: no I/O.

Per served version a Deployment (the MLflow model server for ``models:/<model>/<version>``) and a
Service; per agent a Gateway API HTTPRoute whose weighted ``backendRefs`` carry the traffic split
and whose ``RequestMirror`` filter carries the shadow; header routes are rules of their own before
that one (a header match wins over the weights), and conversation affinity is the weighted rule's
``sessionPersistence`` where the cluster's CRD has it (:func:`affinity_note` says when it cannot
be). Everything carries the ownership labels
(``app.kubernetes.io/managed-by: agentctl``, agent, version) that observation selects on, and a
``agentctl.io/spec-digest`` annotation: the digest of the object as agentctl rendered it, so that a
re-plan tells "as configured" from "the manifest changed" without a request per object. An
``agentctl.io/written-by`` annotation (``agentctl <version>``, given as data by whoever writes the
object: :func:`written`) is left out of that digest, so a newer agentctl rolls nothing by itself.

Where a cluster serves no Gateway API (or the manifest asks for it), router ``service``: one
Service per agent over all its versions' pods, with the split approximated by replica counts
(:func:`replica_shares`); the Service's ``agentctl.io/weights`` annotation records the split asked
for, since replica counts cannot carry 90/10 exactly.

Readiness follows kstatus: a Deployment is available once its controller has observed its
generation, every replica is updated and available, and its ``Available`` condition is True.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.core.manifest.desired import Desired
from controller.core.manifest.schema import GatewayRef, KubernetesServing
from controller.core.state.observed import experiment_name

__all__ = [
    "AFFINITY_ANNOTATION",
    "AGENT_LABEL",
    "DEFAULT_IMAGE",
    "DIGEST_ANNOTATION",
    "FIELD_MANAGER",
    "MANAGED_BY",
    "MODEL_ANNOTATION",
    "SELECTOR",
    "SERVER_ANNOTATION",
    "SERVER_PORT",
    "VERSION_LABEL",
    "WEIGHTS_ANNOTATION",
    "WRITTEN_BY_ANNOTATION",
    "RouteReading",
    "Settings",
    "affinity_note",
    "agent_service",
    "agent_service_name",
    "agent_service_state",
    "availability",
    "default_rule",
    "deployment",
    "digest",
    "object_name",
    "replica_shares",
    "resolve_settings",
    "route",
    "route_name",
    "route_state",
    "router_kind",
    "service",
    "session_persistence",
    "settings_of",
    "split_note",
    "written",
]

FIELD_MANAGER = "agentctl"
MANAGED_BY = ("app.kubernetes.io/managed-by", "agentctl")
AGENT_LABEL = "agentctl.io/agent"
VERSION_LABEL = "agentctl.io/version"
MODEL_ANNOTATION = "agentctl.io/model"
DIGEST_ANNOTATION = "agentctl.io/spec-digest"
WEIGHTS_ANNOTATION = "agentctl.io/weights"
WRITTEN_BY_ANNOTATION = "agentctl.io/written-by"
#: On a model server's pod template: which server it runs (``agent-server/<SERVER_VERSION>``).
SERVER_ANNOTATION = "agentctl.io/model-server"
#: An HTTPRoute's conversation affinity as asked for (``header=<name>,cookie=<name>``, either
#: empty): what is read back as the affinity, sessionPersistence or not.
AFFINITY_ANNOTATION = "agentctl.io/affinity"
#: Annotations that are no part of what an object is: its digest leaves them out.
_UNDIGESTED = frozenset({DIGEST_ANNOTATION, WRITTEN_BY_ANNOTATION})
#: The label selector of everything agentctl writes: one LIST per kind finds it all.
SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
DEFAULT_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.2"
DEFAULT_GATEWAY = "agentctl"
SERVER_PORT = 8080  # the model server's container port
SERVICE_PORT = 80


@dataclass(frozen=True, slots=True)
class Settings:
    """An agent's Kubernetes serving settings: the manifest's, over agentctl's defaults."""

    image: str = DEFAULT_IMAGE
    replicas: int = 1
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    tracking_uri: str | None = None
    secret: str | None = None
    gateway: GatewayRef = field(default_factory=lambda: GatewayRef(name=DEFAULT_GATEWAY))
    hostnames: tuple[str, ...] = ()
    #: ``gateway`` (an HTTPRoute), ``service`` (one Service, split by replicas) or ``auto``
    #: (gateway where the cluster serves the Gateway API, else service).
    router: str = "auto"
    #: The model server's Python source, run as ``python -c``; "": ``mlflow models serve``.
    server_script: str = ""


def resolve_settings(
    spec: KubernetesServing | None, defaults: KubernetesServing | None = None
) -> Settings:
    """An agent's settings: each field from its manifest if set there, else from the
    ServingDefaults document if set there, else agentctl's own. ``env`` is merged (the
    manifest's keys win); ``resources`` and ``mlflow`` are taken whole from the first that sets
    them."""
    base = Settings()
    layers = [x for x in (spec, defaults) if x is not None]

    def first(attr: str) -> Any:
        return next((v for x in layers if (v := getattr(x, attr)) is not None), None)

    resources = first("resources")
    mlflow = first("mlflow")
    env: dict[str, str] = {}
    for layer in reversed(layers):
        env.update(layer.env)
    replicas = first("replicas")
    hostnames = next((x.hostnames for x in layers if x.hostnames), [])
    return Settings(
        image=first("image") or base.image,
        replicas=replicas if replicas is not None else base.replicas,
        requests=dict(resources.requests) if resources else {},
        limits=dict(resources.limits) if resources else {},
        env=env,
        tracking_uri=mlflow.tracking_uri if mlflow else None,
        secret=mlflow.secret if mlflow else None,
        gateway=first("gateway") or base.gateway,
        hostnames=tuple(hostnames),
        router=first("router") or base.router,
    )


def router_kind(s: Settings, gateway_api: bool | None) -> str:
    """``gateway`` or ``service``: the agent's setting, ``auto`` resolved by whether the cluster
    serves the Gateway API (None: not known yet, taken as yes)."""
    if s.router == "auto":
        return "service" if gateway_api is False else "gateway"
    return s.router


def settings_of(desired: Desired) -> Callable[[str], Settings]:
    """Each agent's settings in a desired state (its ServingDefaults applied); an agent the
    desired state does not declare (it is being pruned) gets the defaults."""
    defaults = desired.kubernetes_defaults
    env = next((e for e in desired.environments if e.name == desired.environment), None)
    workspace = env.manifest.spec.workspace if env is not None else None

    def resolved(kube: KubernetesServing | None) -> Settings:
        s = replace(resolve_settings(kube, defaults), server_script=desired.server_script)
        if workspace is None:
            return s
        # Model servers load models:/ from the environment's MLflow workspace.
        return replace(s, env={"MLFLOW_WORKSPACE": workspace, **s.env})

    settings = {
        a.name: resolved(a.manifest.spec.serving.kubernetes)
        for a in desired.agents
        if a.manifest.spec.serving is not None
    }
    fallback = resolved(None)
    return lambda agent: settings.get(agent) or fallback


def object_name(agent: str, version: int) -> str:
    """The Deployment and Service of one version: ``<agent>-v<N>``."""
    return _dns1035(agent, f"v{version}")


def agent_service_name(agent: str) -> str:
    """Router service: the agent's one Service, ``<agent>-svc``. Its suffix keeps it apart from
    every version's ``<agent>-v<N>``, whatever the agents are called."""
    return _dns1035(agent, "svc")


def _dns1035(agent: str, suffix: str) -> str:
    """A Service name is a DNS-1035 label: at most 63 characters, starting with a letter; a
    longer or digit-led name is cut and given a hash of the agent's name."""
    name = f"{agent}-{suffix}"
    if len(name) <= 63 and name[0].isalpha():
        return name
    tail = f"-{suffix}-{hashlib.sha256(agent.encode()).hexdigest()[:8]}"
    return ("a" + agent)[: 63 - len(tail)].rstrip("-") + tail


def route_name(agent: str) -> str:
    return agent


def _labels(agent: str, version: int | None) -> dict[str, str]:
    labels = {MANAGED_BY[0]: MANAGED_BY[1], "app.kubernetes.io/name": agent, AGENT_LABEL: agent}
    if version is not None:
        labels[VERSION_LABEL] = str(version)
    return labels


def digest(obj: Mapping[str, Any]) -> str:
    """The digest of an object as rendered, its own digest and written-by annotations and a
    Deployment's ``spec.replicas`` left out: replicas are compared on their own (with router
    ``service`` the traffic split sets them, not the version)."""
    meta = dict(obj.get("metadata", {}))
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k not in _UNDIGESTED}
    body = {**obj, "metadata": {**meta, "annotations": annotations}}
    if obj.get("kind") == "Deployment":
        spec = {k: v for k, v in obj.get("spec", {}).items() if k != "replicas"}
        body["spec"] = _without_script(spec)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _without_script(spec: dict[str, Any]) -> dict[str, Any]:
    """A Deployment's spec with the agent server's source left out of its containers' commands:
    the pod template's ``agentctl.io/model-server`` annotation (the server's SERVER_VERSION)
    stands for it, so another agentctl with the same server rolls nothing."""
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    containers = pod.get("containers") or []
    if not any((c.get("command") or [])[:2] == ["python", "-c"] for c in containers):
        return spec
    plain = [
        {**c, "command": ["python", "-c", "<agent server>"]}
        if (c.get("command") or [])[:2] == ["python", "-c"]
        else c
        for c in containers
    ]
    return {**spec, "template": {**template, "spec": {**pod, "containers": plain}}}


def server_version(script: str) -> str:
    """The ``SERVER_VERSION`` an agent server's source declares ("" if none)."""
    found = re.search(r'^SERVER_VERSION = "([^"]*)"$', script, re.MULTILINE)
    return found.group(1) if found else ""


def written(obj: Mapping[str, Any], by: str) -> dict[str, Any]:
    """A copy of ``obj`` annotated with who writes it (``agentctl <version>``); its digest is
    unchanged."""
    meta = dict(obj.get("metadata", {}))
    annotations = {**(meta.get("annotations") or {}), WRITTEN_BY_ANNOTATION: by}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def _stamped(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["annotations"][DIGEST_ANNOTATION] = digest(obj)
    return obj


def _metadata(name: str, namespace: str, agent: str, version: int | None, model: str) -> Any:
    return {
        "name": name,
        "namespace": namespace,
        "labels": _labels(agent, version),
        "annotations": {MODEL_ANNOTATION: model},
    }


def deployment(
    namespace: str,
    agent: str,
    model: str,
    version: int,
    s: Settings,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The model server for ``models:/<model>/<version>``: ``s.replicas`` of them, or
    ``replicas`` (router ``service``: the version's share of the split)."""
    env: list[dict[str, Any]] = []
    if s.tracking_uri is not None:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": s.tracking_uri})
        if not {"MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"} & set(s.env):
            # Its traces go to the agent's experiment, where rollout gates read them.
            env.append({"name": "MLFLOW_EXPERIMENT_NAME", "value": experiment_name(model)})
    env += [{"name": k, "value": v} for k, v in sorted(s.env.items())]
    uri = f"models:/{model}/{version}"
    if s.server_script:
        # agentctl's agent server (streaming, OpenAI's /v1/responses, short error bodies, the
        # version's own provenance on traces), as local serving runs it; its source is given
        # whole, so the image needs only MLflow.
        command = ["python", "-c", s.server_script]
        args = ["--model-uri", uri, "--host", "0.0.0.0", "--port", str(SERVER_PORT),
                "--agent", agent, "--version", str(version)]  # fmt: skip
    else:
        command = ["mlflow", "models", "serve"]
        args = ["--model-uri", uri, "--host", "0.0.0.0", "--port", str(SERVER_PORT),
                "--env-manager", "local"]  # fmt: skip
    container: dict[str, Any] = {
        "name": "model-server",
        "image": s.image,
        "command": command,
        "args": args,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
    }
    if env:
        container["env"] = env
    if s.secret is not None:
        container["envFrom"] = [{"secretRef": {"name": s.secret}}]
    if s.requests or s.limits:
        container["resources"] = {
            k: dict(sorted(v.items()))
            for k, v in (("requests", s.requests), ("limits", s.limits))
            if v
        }
    selector = {AGENT_LABEL: agent, VERSION_LABEL: str(version)}
    pod_meta: dict[str, Any] = {"labels": _labels(agent, version)}
    if s.server_script:
        pod_meta["annotations"] = {
            SERVER_ANNOTATION: f"agent-server/{server_version(s.server_script)}"
        }
    return _stamped(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(object_name(agent, version), namespace, agent, version, model),
            "spec": {
                "replicas": s.replicas if replicas is None else replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": pod_meta, "spec": {"containers": [container]}},
            },
        }
    )


def service(namespace: str, agent: str, model: str, version: int) -> dict[str, Any]:
    """One version's Service: what the HTTPRoute's backendRefs name."""
    return _stamped(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(object_name(agent, version), namespace, agent, version, model),
            "spec": {
                "selector": {AGENT_LABEL: agent, VERSION_LABEL: str(version)},
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
                ],
            },
        }
    )


def replica_shares(total: int, weights: Mapping[int, int]) -> dict[int, int]:
    """Router ``service``: how many of ``total`` replicas each version gets for a split, by
    largest remainder; a version with weight > 0 gets at least one (so the sum may exceed
    ``total``), a version with weight 0 gets none."""
    positive = {v: w for v, w in weights.items() if w > 0}
    out = {v: 0 for v in weights}
    if not positive:
        return out
    whole = sum(positive.values())
    exact = {v: total * w / whole for v, w in positive.items()}
    for v, x in exact.items():
        out[v] = int(x)
    left = total - sum(out.values())
    for v in sorted(positive, key=lambda v: (-(exact[v] - int(exact[v])), v))[:left]:
        out[v] += 1
    for v in positive:
        out[v] = max(out[v], 1)
    return out


def split_note(total: int, weights: Mapping[int, int], why: str = "") -> str:
    """What the plan says of a split that router ``service`` approximates by replicas; ``why``
    it is router service, if not asked for (``"no Gateway API"``)."""
    shares = replica_shares(total, weights)
    whole = sum(shares.values()) or 1
    parts = ", ".join(
        f"v{v} {weights[v]}% -> {n} of {whole} replicas (~{round(100 * n / whole)}%)"
        for v, n in sorted(shares.items())
    )
    return (
        f"router service{f' ({why})' if why else ''}: one Service over the versions, the split "
        f"approximated by replica ratio: {parts}; a pod takes traffic once it is Ready"
    )


def agent_service(
    namespace: str, agent: str, model: str, weights: Mapping[int, int]
) -> dict[str, Any]:
    """Router ``service``: the agent's one Service over all its versions' pods; the split it
    stands for is recorded in its ``agentctl.io/weights`` annotation."""
    meta = _metadata(agent_service_name(agent), namespace, agent, None, model)
    meta["annotations"][WEIGHTS_ANNOTATION] = ",".join(
        f"{v}={w}" for v, w in sorted(weights.items())
    )
    return _stamped(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": {AGENT_LABEL: agent},
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
                ],
            },
        }
    )


def agent_service_state(obj: Mapping[str, Any]) -> dict[int, int] | None:
    """The split an agent Service stands for; None if its annotation is missing or garbled."""
    text = (obj.get("metadata", {}).get("annotations") or {}).get(WEIGHTS_ANNOTATION)
    if text is None:
        return None
    weights: dict[int, int] = {}
    for part in filter(None, text.split(",")):
        version, _, weight = part.partition("=")
        if not (version.isdigit() and weight.isdigit()):
            return None
        weights[int(version)] = int(weight)
    return weights


#: Conversation affinity: the (header, cookie) that may carry a conversation id; both None: only
#: the request body would (which a Gateway cannot read).
Affinity = tuple[str | None, str | None]
#: Header routes: (header, value, version), tried in order before the weights.
Headers = tuple[tuple[str, str, int], ...]

_ODD_SERVICES = "its HTTPRoute routes to Services agentctl does not serve"
_ODD_RULES = "its HTTPRoute has rules agentctl did not write"
_ODD_PERSISTENCE = "its HTTPRoute's sessionPersistence is not what its affinity asks for"


def session_persistence(affinity: Affinity | None) -> dict[str, str] | None:
    """The weighted rule's ``sessionPersistence`` (Gateway API GEP-1619) for an affinity: type
    ``Header`` named by its header if it has one, else type ``Cookie`` named by its cookie; None
    when it is off or names neither (a Gateway cannot read a conversation id from a body)."""
    if affinity is None:
        return None
    header, cookie = affinity
    if header is not None:
        return {"sessionName": header.lower(), "type": "Header"}
    if cookie is not None:
        return {"sessionName": cookie, "type": "Cookie"}
    return None


def affinity_note(affinity: Affinity | None, persistence: tuple[bool, str]) -> str:
    """What the plan says of an HTTPRoute whose affinity the Gateway cannot keep as asked;
    ``persistence`` is whether the cluster's HTTPRoute CRD has ``sessionPersistence``, and if
    not, why ("" when there is nothing to say)."""
    if affinity is None:
        return ""
    if session_persistence(affinity) is None:
        return (
            "affinity not enforced: a Gateway cannot read a conversation id from a request's "
            "JSON body (context.conversation_id); give spec.serving.affinity a header or a "
            "cookie; requests are split by weight"
        )
    supported, why = persistence
    if not supported:
        return (
            f"affinity not enforced: {why}; the HTTPRoute carries no sessionPersistence and "
            "requests are split by weight"
        )
    header, cookie = affinity
    if header is not None and cookie is not None:
        return (
            f"affinity: sessionPersistence by header {header.lower()}; cookie {cookie} is not "
            "used (an HTTPRoute rule has one sessionPersistence)"
        )
    return ""


def _affinity_text(affinity: Affinity) -> str:
    return f"header={(affinity[0] or '').lower()},cookie={affinity[1] or ''}"


def _affinity_of(text: str) -> Affinity | None:
    """The affinity an annotation records; None if garbled."""
    parts = dict(part.partition("=")[::2] for part in text.split(","))
    if set(parts) != {"header", "cookie"}:
        return None
    return (parts["header"] or None, parts["cookie"] or None)


def _prefix(agent: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": f"/agents/{agent}"}}


def _rewrite() -> dict[str, Any]:
    return {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }


def route(
    namespace: str,
    agent: str,
    model: str,
    weights: Mapping[int, int],
    shadow: tuple[int, int] | None,
    s: Settings,
    headers: Sequence[tuple[str, str, int]] = (),
    affinity: Affinity | None = None,
    persistence: bool = False,
) -> dict[str, Any]:
    """The agent's HTTPRoute: ``/agents/<agent>/...`` on the Gateway, rewritten to ``/...``.

    One rule per header route, in order (the path and an exact header match, to that version's
    Service alone), then the default rule: split by weight over the versions' Services, with the
    shadow as a RequestMirror filter and, where the cluster's CRD has it (``persistence``), the
    affinity as its ``sessionPersistence``. Gateway API gives the rule with more header matches
    precedence among equal path matches, so a header route wins over the weights. The affinity
    asked for is recorded in the ``agentctl.io/affinity`` annotation either way."""
    parent: dict[str, Any] = {"name": s.gateway.name}
    if s.gateway.namespace is not None:
        parent["namespace"] = s.gateway.namespace
    if s.gateway.section_name is not None:
        parent["sectionName"] = s.gateway.section_name
    filters: list[dict[str, Any]] = [_rewrite()]
    if shadow is not None:
        filters.append(
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": object_name(agent, shadow[0]), "port": SERVICE_PORT},
                    "percent": shadow[1],
                },
            }
        )
    spec: dict[str, Any] = {"parentRefs": [parent]}
    if s.hostnames:
        spec["hostnames"] = list(s.hostnames)
    rules: list[dict[str, Any]] = [
        {
            "matches": [
                {**_prefix(agent), "headers": [{"type": "Exact", "name": h.lower(), "value": v}]}
            ],
            "filters": [_rewrite()],
            "backendRefs": [{"name": object_name(agent, n), "port": SERVICE_PORT}],
        }
        for h, v, n in headers
    ]
    default: dict[str, Any] = {
        "matches": [_prefix(agent)],
        "filters": filters,
        "backendRefs": [
            {"name": object_name(agent, v), "port": SERVICE_PORT, "weight": weights[v]}
            for v in sorted(weights)
        ],
    }
    sticky = session_persistence(affinity) if persistence else None
    if sticky is not None:
        default["sessionPersistence"] = sticky
    spec["rules"] = [*rules, default]
    meta = _metadata(route_name(agent), namespace, agent, None, model)
    if affinity is not None:
        meta["annotations"][AFFINITY_ANNOTATION] = _affinity_text(affinity)
    return _stamped(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": meta,
            "spec": spec,
        }
    )


def _has_headers(rule: Mapping[str, Any]) -> bool:
    return any(m.get("headers") for m in rule.get("matches") or [])


def default_rule(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An HTTPRoute's default rule: its one rule without header matches (None: it has none, or
    more than one)."""
    rules = obj.get("spec", {}).get("rules") or []
    defaults = [r for r in rules if not _has_headers(r)]
    return defaults[0] if len(defaults) == 1 else None


@dataclass(frozen=True, slots=True)
class RouteReading:
    """What an HTTPRoute carries, read back: the default rule's split and shadow, the header
    routes (header lower-cased, value, version) in rule order, the affinity; and ``odd``, why it
    is not as agentctl writes routes ("": it is)."""

    weights: dict[int, int] = field(default_factory=dict)
    shadow: tuple[int, int] | None = None
    headers: Headers = ()
    affinity: Affinity | None = None
    odd: str = ""


def _from_persistence(found: Any) -> Affinity | None:
    """The affinity a sessionPersistence stands for, without agentctl's annotation."""
    if not isinstance(found, Mapping):
        return None
    name = str(found.get("sessionName") or "") or None
    if found.get("type") == "Header":
        return (name.lower() if name else None, None)
    return (None, name)


def route_state(
    obj: Mapping[str, Any], versions: Mapping[str, int], persistence: bool = False
) -> RouteReading:
    """What an HTTPRoute carries, its Services mapped to versions by ``versions`` (Service name
    -> version); ``persistence``: whether the cluster's CRD has ``sessionPersistence`` (then the
    default rule must carry the one its affinity asks for)."""
    odd: list[str] = []
    headers: list[tuple[str, str, int]] = []
    rules = obj.get("spec", {}).get("rules") or []
    for rule in rules:
        if not _has_headers(rule):
            continue
        matches, refs = rule.get("matches") or [], rule.get("backendRefs") or []
        found = (matches[0].get("headers") or []) if len(matches) == 1 else []
        if len(found) != 1 or len(refs) != 1 or found[0].get("type", "Exact") != "Exact":
            odd.append(_ODD_RULES)
            continue
        number = versions.get(str(refs[0].get("name", "")))
        if number is None:
            odd.append(_ODD_SERVICES)
            continue
        match = found[0]
        headers.append((str(match.get("name", "")).lower(), str(match.get("value", "")), number))
    default = default_rule(obj)
    if default is None:
        odd.append(_ODD_RULES)
        default = {}
    weights: dict[int, int] = {}
    shadow: tuple[int, int] | None = None
    for ref in default.get("backendRefs") or []:
        number = versions.get(ref.get("name", ""))
        if number is None:
            odd.append(_ODD_SERVICES)
            continue
        weights[number] = weights.get(number, 0) + int(ref.get("weight", 1))
    for f in default.get("filters") or []:
        mirror = f.get("requestMirror") if f.get("type") == "RequestMirror" else None
        if mirror is None:
            continue
        number = versions.get(mirror.get("backendRef", {}).get("name", ""))
        if number is None:
            odd.append(_ODD_SERVICES)
            continue
        shadow = (number, int(mirror.get("percent", 100)))
    live = default.get("sessionPersistence")
    text = (obj.get("metadata", {}).get("annotations") or {}).get(AFFINITY_ANNOTATION)
    asked = _affinity_of(text) if text is not None else None
    if asked is None:  # none recorded: what a sessionPersistence set by hand stands for
        affinity = _from_persistence(live)
        if text is not None:
            odd.append(f"its {AFFINITY_ANNOTATION} annotation cannot be read")
    else:
        affinity = asked
        if live != (session_persistence(asked) if persistence else None):
            odd.append(_ODD_PERSISTENCE)
    return RouteReading(weights, shadow, tuple(headers), affinity, odd[0] if odd else "")


def availability(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment is available (kstatus "Current"), and if not, why."""
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    generation = int(meta.get("generation", 0))
    observed = int(status.get("observedGeneration", 0))
    if observed < generation:
        return False, f"its controller has not yet observed generation {generation}"
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return False, f"progress deadline exceeded: {progressing.get('message', '')}".rstrip(": ")
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if updated < want:
        return False, f"{updated} of {want} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < want:
        return False, f"{available} of {want} replicas available"
    cond = conditions.get("Available")
    if want > 0 and (cond is None or cond.get("status") != "True"):
        return False, "its Available condition is not True"
    return True, ""
