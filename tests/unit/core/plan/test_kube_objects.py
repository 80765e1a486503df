"""What agentctl writes to Kubernetes, as pure data: settings over defaults, the replica split
of router service, digests, and kstatus readiness."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.core.manifest.schema import KubernetesServing
from controller.core.plan import kube_objects as ko
from controller.engine.loader import load
from tests.support.manifests import DEFAULTS, GOOD, errors_of, write_repo


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (5, {1: 80, 2: 20}, {1: 4, 2: 1}),
        (10, {1: 90, 2: 10}, {1: 9, 2: 1}),
        (4, {1: 100, 2: 0}, {1: 4, 2: 0}),
        (3, {1: 34, 2: 33, 3: 33}, {1: 1, 2: 1, 3: 1}),
        (4, {1: 50, 2: 25, 3: 25}, {1: 2, 2: 1, 3: 1}),
        # every version with traffic gets a replica, even past the total
        (1, {1: 80, 2: 20}, {1: 1, 2: 1}),
        (10, {1: 99, 2: 1}, {1: 10, 2: 1}),
        (3, {}, {}),
    ],
)
def test_replica_shares(total: int, weights: dict[int, int], shares: dict[int, int]) -> None:
    assert ko.replica_shares(total, weights) == shares


def test_split_note_says_what_the_replicas_give() -> None:
    note = ko.split_note(1, {1: 80, 2: 20})
    assert "v1 80% -> 1 of 2 replicas (~50%), v2 20% -> 1 of 2 replicas (~50%)" in note


def test_agent_service_records_its_split_and_reads_it_back() -> None:
    svc = ko.agent_service("ns", "bot", "bot", {2: 20, 1: 80})
    assert svc["metadata"]["annotations"][ko.WEIGHTS_ANNOTATION] == "1=80,2=20"
    assert svc["spec"]["selector"] == {ko.AGENT_LABEL: "bot"}
    assert ko.VERSION_LABEL not in svc["metadata"]["labels"]
    assert ko.agent_service_state(svc) == {1: 80, 2: 20}
    garbled: dict[str, Any] = {"metadata": {"annotations": {ko.WEIGHTS_ANNOTATION: "1=x"}}}
    assert ko.agent_service_state(garbled) is None
    assert ko.agent_service_state({"metadata": {}}) is None


def test_a_deployment_digest_leaves_replicas_out() -> None:
    s = ko.Settings()
    three = ko.deployment("ns", "bot", "bot", 1, s, replicas=3)
    none = ko.deployment("ns", "bot", "bot", 1, s, replicas=0)
    assert three["spec"]["replicas"] == 3 and none["spec"]["replicas"] == 0
    digests = {d["metadata"]["annotations"][ko.DIGEST_ANNOTATION] for d in (three, none)}
    assert len(digests) == 1
    other = ko.deployment("ns", "bot", "bot", 1, ko.Settings(image="other:1"))
    assert other["metadata"]["annotations"][ko.DIGEST_ANNOTATION] not in digests


def test_settings_come_from_the_manifest_then_the_defaults_then_agentctl() -> None:
    defaults = KubernetesServing.model_validate(
        {
            "image": "team/agents:1",
            "replicas": 3,
            "env": {"A": "from-defaults", "B": "b"},
            "mlflow": {"secret": "mlflow-credentials"},
            "gateway": {"name": "shared", "namespace": "infra"},
            "router": "service",
        }
    )
    agent = KubernetesServing.model_validate({"replicas": 2, "env": {"A": "from-agent"}})
    s = ko.resolve_settings(agent, defaults)
    assert (s.image, s.replicas, s.secret, s.router) == (
        "team/agents:1",
        2,
        "mlflow-credentials",
        "service",
    )
    assert dict(s.env) == {"A": "from-agent", "B": "b"}
    assert (s.gateway.name, s.gateway.namespace) == ("shared", "infra")
    builtin = ko.resolve_settings(None, None)
    assert (builtin.image, builtin.replicas, builtin.router) == (ko.DEFAULT_IMAGE, 1, "auto")
    assert builtin.gateway.name == "agentctl"


def test_serving_defaults_apply_to_every_agent_and_to_agents_being_pruned(
    tmp_path: Path,
) -> None:
    root = write_repo(tmp_path, GOOD + "    kubernetes:\n      replicas: 2\n")
    (root / "defaults.yaml").write_text(DEFAULTS)
    desired, _ = load(root)
    settings = ko.settings_of(desired)
    assert (settings("bot").image, settings("bot").replicas) == ("team/agents:1", 2)
    assert (settings("gone").image, settings("gone").replicas) == ("team/agents:1", 3)


def test_a_second_serving_defaults_is_an_error_naming_the_first(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    (root / "a.yaml").write_text(DEFAULTS)
    (root / "b.yaml").write_text(DEFAULTS)
    [err] = errors_of(root)
    assert err.location is not None and err.location.file.endswith("b.yaml")
    assert err.location.line == 2 and err.field == "kind"
    assert "a second ServingDefaults document; the first is at" in err.message
    assert "a.yaml:2" in err.message


@pytest.mark.parametrize(
    ("edit", "line", "field", "fragment"),
    [
        (("    image:", "    imag:"), 7, "spec.kubernetes.imag", "did you mean 'image'?"),
        (("replicas: 3", "replicas: 0"), 8, "spec.kubernetes.replicas", "which agent bot takes"),
        (("replicas: 3", "router: mesh"), 8, "spec.kubernetes.router", "'auto', 'gateway'"),
    ],
)
def test_bad_serving_defaults_name_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], line: int, field: str, fragment: str
) -> None:
    root = write_repo(tmp_path, GOOD)
    (root / "defaults.yaml").write_text(DEFAULTS.replace(*edit))
    [err] = errors_of(root)
    assert err.location is not None and err.location.file.endswith("defaults.yaml")
    assert (err.location.line, err.field) == (line, field)
    assert fragment in err.message


def test_router_service_with_a_shadow_is_a_manifest_error(tmp_path: Path) -> None:
    manifest = GOOD + (
        "    shadow:\n      alias: champion\n      percent: 10\n"
        "    kubernetes:\n      router: service\n"
    )
    [err] = errors_of(write_repo(tmp_path, manifest))
    assert err.field == "spec.serving.shadow" and err.location is not None
    assert err.location.line == 17  # the line of `shadow:`
    assert "router service cannot mirror traffic" in err.message


def test_router_service_with_header_routes_or_affinity_is_a_manifest_error(
    tmp_path: Path,
) -> None:
    manifest = GOOD + (
        "    routes:\n      - {header: x-a, value: b, alias: champion}\n"
        "    affinity: {header: x-session-id}\n"
        "    kubernetes:\n      router: service\n"
    )
    errors = errors_of(write_repo(tmp_path, manifest))
    assert [(e.field, e.location.line if e.location else 0) for e in errors] == [
        ("spec.serving.routes", 17),
        ("spec.serving.affinity", 19),
    ]
    assert "cannot express header routes" in errors[0].message
    assert "router gateway" in errors[1].message


def _dep(**status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status}


AVAILABLE = [{"type": "Available", "status": "True"}]


@pytest.mark.parametrize(
    ("status", "ready", "why"),
    [
        ({}, False, "its controller has not yet observed generation 2"),
        ({"observedGeneration": 2, "updatedReplicas": 1}, False, "1 of 2 replicas updated"),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3},
            False,
            "1 old replicas pending termination",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
            False,
            "1 of 2 replicas available",
        ),
        (
            {
                "observedGeneration": 2,
                "updatedReplicas": 2,
                "replicas": 2,
                "availableReplicas": 2,
                "conditions": AVAILABLE,
            },
            True,
            "",
        ),
    ],
)
def test_availability_follows_kstatus(status: dict[str, Any], ready: bool, why: str) -> None:
    assert ko.availability(_dep(**status)) == (ready, why)


def test_names_keep_versions_and_agent_services_apart() -> None:
    assert ko.object_name("bot", 1) == "bot-v1"
    assert ko.agent_service_name("bot") == "bot-svc"
    assert ko.agent_service_name("bot-v1") != ko.object_name("bot", 1)
    digit_led = ko.agent_service_name("3bot")
    assert digit_led[0].isalpha() and digit_led.startswith("a3bot-svc-")
    long = ko.agent_service_name("a" * 63)
    assert len(long) == 63 and "-svc-" in long


@pytest.mark.parametrize(
    ("defaults", "agent", "where", "line", "fragment"),
    [
        # the router comes from the defaults: a shadow is still a manifest error
        (
            "router: service",
            "shadow:\n      alias: champion\n      percent: 10",
            "bot.yaml",
            17,
            "router service (router service from ServingDefaults) cannot mirror",
        ),
        # replicas 0 from the defaults, under an agent that asks for router gateway
        (
            "router: service\n    replicas: 0",
            "kubernetes:\n      router: gateway",
            "defaults.yaml",
            9,
            "replicas 0, which agent bot takes, would leave",
        ),
    ],
)
def test_settings_are_checked_as_resolved(
    tmp_path: Path, defaults: str, agent: str, where: str, line: int, fragment: str
) -> None:
    root = write_repo(tmp_path, GOOD + "    " + agent + "\n")
    (root / "defaults.yaml").write_text(DEFAULTS.replace("replicas: 3", defaults))
    [err] = errors_of(root)
    assert err.location is not None and err.location.file.endswith(where)
    assert err.location.line == line
    assert fragment in err.message


def test_replicas_0_is_fine_where_the_resolved_router_is_service(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD + "    kubernetes:\n      replicas: 0\n")
    (root / "defaults.yaml").write_text(DEFAULTS.replace("replicas: 3", "router: service"))
    desired, _ = load(root)
    assert ko.settings_of(desired)("bot").replicas == 0


def test_an_unknown_kind_is_named(tmp_path: Path) -> None:
    root = write_repo(tmp_path, GOOD)
    (root / "defaults.yaml").write_text(DEFAULTS.replace("kind: ServingDefaults", "kind: Default"))
    [err] = errors_of(root)
    assert (err.field, err.location and err.location.line) == ("kind", 2)
    assert err.message == (
        "kind must be Agent, Prompt, Environment or ServingDefaults (got 'Default'); checked as ServingDefaults"
    )


def test_the_written_by_annotation_is_no_part_of_the_digest() -> None:
    dep = ko.deployment("ns", "bot", "bot", 1, ko.Settings())
    stamped = ko.written(dep, "agentctl 9.9")
    annotations = stamped["metadata"]["annotations"]
    assert annotations[ko.WRITTEN_BY_ANNOTATION] == "agentctl 9.9"
    assert ko.WRITTEN_BY_ANNOTATION not in dep["metadata"]["annotations"]  # a copy
    # The same object written by another agentctl has the same digest: nothing rolls.
    assert ko.digest(stamped) == ko.digest(ko.written(dep, "agentctl 10.0"))
    assert ko.digest(stamped) == annotations[ko.DIGEST_ANNOTATION]


# -- the HTTPRoute: header routes before the weights, affinity as sessionPersistence ----------

VERSIONS = {"bot-v1": 1, "bot-v2": 2}
HEADERS = (("X-Agent-Version", "canary", 2), ("x-tester", "alice", 1))
PREFIX = {"path": {"type": "PathPrefix", "value": "/agents/bot"}}
REWRITE = {
    "type": "URLRewrite",
    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
}


def _route(affinity: Any = None, persistence: bool = False) -> dict[str, Any]:
    return ko.route(
        "ns", "bot", "bot", {1: 80, 2: 20}, (2, 10), ko.Settings(), HEADERS, affinity, persistence
    )


def test_header_routes_are_rules_before_the_weighted_one_in_manifest_order() -> None:
    rules = _route()["spec"]["rules"]
    assert rules[:2] == [
        {
            "matches": [
                {
                    **PREFIX,
                    "headers": [{"type": "Exact", "name": "x-agent-version", "value": "canary"}],
                }
            ],
            "filters": [REWRITE],
            "backendRefs": [{"name": "bot-v2", "port": 80}],
        },
        {
            "matches": [
                {**PREFIX, "headers": [{"type": "Exact", "name": "x-tester", "value": "alice"}]}
            ],
            "filters": [REWRITE],
            "backendRefs": [{"name": "bot-v1", "port": 80}],
        },
    ]
    default = rules[2]
    assert default["matches"] == [PREFIX]
    assert [f["type"] for f in default["filters"]] == ["URLRewrite", "RequestMirror"]
    assert [(b["name"], b["weight"]) for b in default["backendRefs"]] == [
        ("bot-v1", 80),
        ("bot-v2", 20),
    ]
    assert "sessionPersistence" not in default
    assert ko.AFFINITY_ANNOTATION not in _route()["metadata"]["annotations"]
    assert ko.default_rule(_route()) == default
    # without header routes: the one rule of before, and the same digest
    plain = ko.route("ns", "bot", "bot", {1: 100}, None, ko.Settings())
    assert len(plain["spec"]["rules"]) == 1 and ko.default_rule(plain) is not None


@pytest.mark.parametrize(
    ("affinity", "persistence", "sticky"),
    [
        (("x-session-id", None), True, {"sessionName": "x-session-id", "type": "Header"}),
        (("x-session-id", "sid"), True, {"sessionName": "x-session-id", "type": "Header"}),
        ((None, "sid"), True, {"sessionName": "sid", "type": "Cookie"}),
        ((None, None), True, None),  # only the body would carry it: a Gateway cannot read it
        (("x-session-id", None), False, None),  # the CRD has no sessionPersistence
        (None, True, None),
    ],
)
def test_session_persistence_is_written_only_where_the_crd_has_it(
    affinity: Any, persistence: bool, sticky: dict[str, str] | None
) -> None:
    obj = _route(affinity, persistence)
    rules = obj["spec"]["rules"]
    assert rules[-1].get("sessionPersistence") == sticky
    assert all("sessionPersistence" not in r for r in rules[:-1])
    recorded = obj["metadata"]["annotations"].get(ko.AFFINITY_ANNOTATION)
    assert recorded == (
        None if affinity is None else f"header={affinity[0] or ''},cookie={affinity[1] or ''}"
    )


@pytest.mark.parametrize("persistence", [True, False])
@pytest.mark.parametrize("affinity", [("x-session-id", "sid"), (None, "sid"), (None, None), None])
def test_an_httproute_reads_back_as_it_was_rendered(affinity: Any, persistence: bool) -> None:
    obj = _route(affinity, persistence)
    found = ko.route_state(obj, VERSIONS, persistence)
    assert found == ko.RouteReading(
        {1: 80, 2: 20},
        (2, 10),
        (("x-agent-version", "canary", 2), ("x-tester", "alice", 1)),
        affinity,
        "",
    )
    again = ko.route(
        "ns", "bot", "bot", found.weights, found.shadow, ko.Settings(), found.headers,
        found.affinity, persistence,
    )  # fmt: skip
    assert again == obj  # the same object, so the same digest: no perpetual diff


def _edited(edit: Any, affinity: Any = ("x-session-id", None)) -> ko.RouteReading:
    obj = _route(affinity, persistence=True)
    edit(obj["spec"]["rules"], obj["metadata"]["annotations"])
    return ko.route_state(obj, VERSIONS, persistence=True)


def test_a_hand_edited_httproute_reads_back_as_drift() -> None:
    def value(rules: Any, _: Any) -> None:
        rules[0]["matches"][0]["headers"][0]["value"] = "edited"

    found = _edited(value)
    assert found.headers[0] == ("x-agent-version", "edited", 2) and found.odd == ""

    def removed(rules: Any, _: Any) -> None:
        del rules[1]

    assert _edited(removed).headers == (("x-agent-version", "canary", 2),)

    def sticky(rules: Any, _: Any) -> None:
        rules[-1]["sessionPersistence"]["sessionName"] = "x-other"

    assert _edited(sticky).odd == (
        "its HTTPRoute's sessionPersistence is not what its affinity asks for"
    )

    def foreign(rules: Any, _: Any) -> None:
        rules[0]["backendRefs"][0]["name"] = "theirs"

    found = _edited(foreign)
    assert found.odd == "its HTTPRoute routes to Services agentctl does not serve"
    assert found.headers == (("x-tester", "alice", 1),)

    def two_defaults(rules: Any, _: Any) -> None:
        rules.append(dict(rules[-1]))

    assert _edited(two_defaults).odd == "its HTTPRoute has rules agentctl did not write"

    def two_headers(rules: Any, _: Any) -> None:
        rules[0]["matches"][0]["headers"].append({"type": "Exact", "name": "b", "value": "c"})

    assert _edited(two_headers).odd == "its HTTPRoute has rules agentctl did not write"

    # sessionPersistence added by hand to a route without affinity: read as the affinity it
    # stands for (the manifest asks for none: the next apply removes it)
    def added(rules: Any, annotations: Any) -> None:
        rules[-1]["sessionPersistence"] = {"sessionName": "SID", "type": "Cookie"}

    found = _edited(added, affinity=None)
    assert (found.affinity, found.odd) == ((None, "SID"), "")


def test_verify_finds_the_default_rule_among_header_rules() -> None:
    obj = _route()
    assert ko.default_rule(obj) == obj["spec"]["rules"][-1]
    obj["spec"]["rules"] = obj["spec"]["rules"][:2]  # header rules only
    assert ko.default_rule(obj) is None


@pytest.mark.parametrize(
    ("affinity", "persistence", "note"),
    [
        (None, (False, "no CRD"), ""),
        (("x-session-id", None), (True, ""), ""),
        (
            ("x-session-id", None),
            (False, "the cluster's HTTPRoute CRD has no sessionPersistence"),
            "affinity not enforced: the cluster's HTTPRoute CRD has no sessionPersistence; the "
            "HTTPRoute carries no sessionPersistence and requests are split by weight",
        ),
        (
            (None, None),
            (True, ""),
            "affinity not enforced: a Gateway cannot read a conversation id from a request's "
            "JSON body (context.conversation_id); give spec.serving.affinity a header or a "
            "cookie; requests are split by weight",
        ),
        (
            ("x-session-id", "sid"),
            (True, ""),
            "affinity: sessionPersistence by header x-session-id; cookie sid is not used (an "
            "HTTPRoute rule has one sessionPersistence)",
        ),
    ],
)
def test_the_plan_says_when_affinity_cannot_be_kept(
    affinity: Any, persistence: tuple[bool, str], note: str
) -> None:
    assert ko.affinity_note(affinity, persistence) == note


def test_the_model_server_is_the_agent_server_given_whole_when_the_shell_gives_it() -> None:
    """agentctl's shells load manifests with the agent server's source (sources.with_server):
    the pod runs it with ``python -c``; without it, ``mlflow models serve``."""
    from controller.app.sources import with_server
    from controller.core.manifest.desired import Desired
    from controller.core.plan.kube_objects import settings_of

    desired = with_server(Desired(()))
    assert "def main" in desired.server_script
    assert "import controller" not in desired.server_script
    assert "from controller" not in desired.server_script
    s = settings_of(desired)("bot")
    dep = ko.deployment("ns", "bot", "bot-model", 3, s)
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-c", desired.server_script]
    assert container["args"] == [
        "--model-uri", "models:/bot-model/3", "--host", "0.0.0.0", "--port", "8080",
        "--agent", "bot", "--version", "3",
    ]  # fmt: skip
    plain = ko.deployment("ns", "bot", "bot-model", 3, ko.Settings())
    assert plain["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "mlflow", "models", "serve",
    ]  # fmt: skip
    assert ko.digest(dep) != ko.digest(plain)
    # Another agentctl whose server differs only in its text rolls nothing; a new
    # SERVER_VERSION does.
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        ko.SERVER_ANNOTATION: f"agent-server/{ko.server_version(desired.server_script)}"
    }
    assert ko.server_version(desired.server_script)
    edited = replace(s, server_script=s.server_script + "\n# a comment\n")
    assert ko.digest(ko.deployment("ns", "bot", "bot-model", 3, edited)) == ko.digest(dep)
    bumped = replace(
        s, server_script=s.server_script.replace('SERVER_VERSION = "', 'SERVER_VERSION = "9')
    )
    assert ko.digest(ko.deployment("ns", "bot", "bot-model", 3, bumped)) != ko.digest(dep)


def test_a_rollout_header_route_under_router_service_and_too_many_routes_are_errors(
    tmp_path: Path,
) -> None:
    from tests.support.manifests import ROLLOUT

    header = "    headerRoute: {header: x-agent-version, value: canary}\n"
    manifest = GOOD + "    kubernetes:\n      router: service\n" + ROLLOUT + header
    errors = errors_of(write_repo(tmp_path, manifest))
    assert [e.field for e in errors] == ["spec.rollout.headerRoute"], [str(e) for e in errors]
    assert "router gateway" in errors[0].message

    routes = "    routes:\n" + "".join(
        f"      - {{header: x-user, value: u{i}, alias: champion}}\n" for i in range(15)
    )
    (tmp_path / "bot.yaml").write_text(GOOD + routes + ROLLOUT + header)
    errors = errors_of(tmp_path)
    assert [e.field for e in errors] == ["spec.serving.routes"], [str(e) for e in errors]
    assert "at most 15 header routes" in errors[0].message
