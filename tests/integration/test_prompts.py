"""Prompts as declared resources, end to end: `kind: Prompt` manifests reconciled into the real
MLflow server's Prompt Registry by the installed `agentctl` (and `agentctl controller`), and the
example support bot bound to its system prompt, served by real model servers.

- prompts (text, and chat with a response format and model config) are created with their
  versions, aliases and tags, MLflow's own `load_prompt` reads them, a second apply writes
  nothing;
- an alias moved and a version tag edited by hand are drift the controller reports (an Event)
  and reverts;
- a prompt edit committed to git is a plan with a diff of the template, a new prompt version, a
  new agent version pinned to it, served, canaried, promoted and rolled back;
- prune removes only owned prompts; an unowned prompt is refused until adopted;
- bad input is a clear error naming file, line and field, and writes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.core.prompt.binding import PROMPTS_TAG
from controller.core.state.observed import OWNER_TAG, PROMPT_TAG
from tests.support.controller import EXAMPLES, Proc, until
from tests.support.gitrepo import edit, git
from tests.support.kube_apiserver import ApiServer
from tests.support.local import LOCAL, QUESTION, processes_of
from tests.support.mlflow_server import MlflowServer
from tests.support.proxy import CountingProxy
from tests.support.rollout_bench import rollout
from tests.support.servers import PROMPTS

pytestmark = pytest.mark.integration

OLD = "Hi, this is the support bot."
NEW = "Hello! The support bot here."

#: A chat prompt: its template a list of messages, with a response format and model config;
#: registered as ticket-triage (spec.name), its document named triage.
CHAT = """\
apiVersion: agentctl.io/v1alpha1
kind: Prompt
metadata:
  name: triage
spec:
  name: ticket-triage
  description: Sorts tickets by urgency.
  template: prompts/triage.yaml
  variables: [product, ticket]
  responseFormat:
    type: object
    properties:
      urgency: {type: string, enum: [low, high]}
  modelConfig:
    provider: openai
    modelName: gpt-4o-mini
    temperature: 0.2
  tags:
    team: care
  versions:
    - version: current
      tags:
        reviewed: "yes"
  aliases:
    production: current
"""
MESSAGES = """\
- role: system
  content: You sort {{ product }} tickets by urgency.
- role: user
  content: "{{ ticket }}"
"""


@pytest.fixture
def registry_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow's fluent APIs (load_prompt, Model.load) in this process read the suite's server
    directly (not through the counting proxy)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return mlflow_server.url


def _prompts_only(examples: Path) -> Path:
    """The examples with only the support bot's Prompt (no agent to log: fast)."""
    for name in ("support-bot.yaml", "summarizer.yaml", "serving-defaults.yaml"):
        (examples / name).unlink()
    return examples


def _with_chat(examples: Path) -> None:
    (examples / "prompts").mkdir()
    (examples / "prompts" / "triage.yaml").write_text(MESSAGES)
    (examples / "triage.yaml").write_text(CHAT)


def _prompt_names(client: Any) -> set[str]:
    return {m.name for m in client.search_registered_models(filter_string=PROMPTS)}


def _writes(proxy: CountingProxy) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in proxy.writes()]


def test_prompts_are_created_from_manifests_and_a_second_apply_writes_nothing(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any, registry_uri: str
) -> None:
    """A text Prompt and a chat Prompt (response format, model config) are registered with
    their version, alias and tags, owned by agentctl; MLflow's own load_prompt by alias returns
    the templates; then apply writes nothing and plan says so with exit 0."""
    import mlflow

    root = _prompts_only(examples)
    _with_chat(root)
    applied = agentctl("apply", str(root))
    assert applied.code == 0, applied.out + applied.err

    assert _prompt_names(client) == {"support-system", "ticket-triage"}
    text = client.get_prompt("support-system")
    assert text.description == "The support bot's greeting."
    assert text.tags["team"] == "customer-care"
    assert text.tags[OWNER_TAG] == "agentctl" and text.tags[PROMPT_TAG] == "support-system"
    loaded = mlflow.genai.load_prompt(
        "prompts:/support-system@production", link_to_model=False, cache_ttl_seconds=0
    )
    assert (loaded.version, loaded.template.strip()) == (1, OLD)

    chat = client.get_prompt("ticket-triage")
    assert chat.tags["team"] == "care" and chat.tags[PROMPT_TAG] == "triage"
    triage = mlflow.genai.load_prompt(
        "prompts:/ticket-triage@production", link_to_model=False, cache_ttl_seconds=0
    )
    assert triage.version == 1 and triage.template == [
        {"role": "system", "content": "You sort {{ product }} tickets by urgency."},
        {"role": "user", "content": "{{ ticket }}"},
    ]
    assert triage.variables == {"product", "ticket"}
    assert triage.response_format == {
        "type": "object",
        "properties": {"urgency": {"type": "string", "enum": ["low", "high"]}},
    }
    assert triage.model_config == {
        "provider": "openai",
        "model_name": "gpt-4o-mini",
        "temperature": 0.2,
    }
    assert triage.tags["reviewed"] == "yes"
    assert triage.format(product="router", ticket="down!")[1]["content"] == "down!"

    proxy.reset()
    again = agentctl("apply", str(root))
    assert again.code == 0, again.out + again.err
    assert _writes(proxy) == []
    plan = agentctl("plan", str(root), "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err
    assert "No changes" in plan.out


def test_a_prompt_alias_moved_and_a_version_tag_edited_by_hand_are_reverted_with_an_event(
    kube: ApiServer,
    mlflow_server: MlflowServer,
    client: Any,
    controllers: Callable[..., Proc],
    tmp_path: Path,
    examples: Path,
) -> None:
    """The controller reports a hand-moved prompt alias and a hand-edited version tag as drift
    (log and a DriftDetected Event) and puts both back."""
    root = _prompts_only(examples)
    manifest = root / "support-system.yaml"
    edit(manifest, "  versions: [current]\n", "  versions:\n    - version: current\n"
         "      tags:\n        reviewed: \"yes\"\n")  # fmt: skip
    ns = "prompts"
    kube.create_namespace(ns)
    ctl = controllers(
        "--manifests", str(root), "--target", "kubernetes", "--kubeconfig", kube.kubeconfig(),
        "--namespace", ns, "--resync", "2", "--lease-duration", "3", "--renew-deadline", "2",
        "--retry-period", "0.5", env={"MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip

    def alias() -> int | None:
        try:
            return int(client.get_prompt_version_by_alias("support-system", "production").version)
        except Exception:  # not there yet
            return None

    until("the prompt and its alias", lambda: alias() == 1, 60, (ctl,))
    assert client.get_prompt_version("support-system", 1).tags["reviewed"] == "yes"

    # By hand: a second version, the alias moved to it, and the version tag edited.
    client.register_prompt("support-system", "Made by hand.")
    client.set_prompt_alias("support-system", "production", 2)
    client.set_prompt_version_tag("support-system", 1, "reviewed", "no")
    until("the alias reverted", lambda: alias() == 1, 30, (ctl,))
    until(
        "the version tag reverted",
        lambda: client.get_prompt_version("support-system", 1).tags.get("reviewed") == "yes",
        30,
        (ctl,),
    )
    log = ctl.text()
    assert "drift: " in log and "support-system.prompt_alias.production" in log, log[-3000:]
    events = kube.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
    drift = [e for e in events if e["reason"] == "DriftDetected"]
    assert any("support-system.prompt_alias.production" in e["note"] for e in drift), events
    assert all(e["type"] == "Warning" for e in drift)
    # The hand-made version is left alone (agentctl never deletes a version).
    assert client.get_prompt_version("support-system", 2).template == "Made by hand."
    assert ctl.stop() == 0


# -- a prompt edit in git, through the agent's canary ------------------------------------------


def _support_bot(steps: str) -> str:
    """The example support bot's manifest without its evaluation (test_quality_gate's), with a
    canary rollout of its champion."""
    text = (EXAMPLES / "support-bot.yaml").read_text()
    text = text.split("  # A quality gate")[0]
    return text + rollout(steps, delay="1s")


def _answer(router: str) -> tuple[str, str]:
    """(the version that answered, the text) of one question through the router."""
    r = requests.post(f"{router}/agents/support-bot/invocations", json=QUESTION, timeout=60)
    assert r.status_code == 200, r.text
    item = r.json()["output"][0]["content"][0]["text"]
    return r.headers.get("X-Agentctl-Version", "?"), str(item)


@pytest.fixture
def repo(tmp_path: Path, agentctl: Any) -> Iterator[Path]:
    """A git repository with the example support bot and its Prompt (manifests/); local
    serving stopped after the test."""
    root = tmp_path / "repo"
    manifests = root / "manifests"
    (manifests / "agents").mkdir(parents=True)
    shutil.copytree(EXAMPLES / "agents" / "support_bot", manifests / "agents" / "support_bot")
    shutil.copy(EXAMPLES / "support-system.yaml", manifests / "support-system.yaml")
    git(root, "init", "-q", "-b", "main")
    try:
        yield root
    finally:
        down = agentctl("down", env=LOCAL)
        assert down.code == 0, down.err
        run_dir = tmp_path / ".agentctl"
        deadline = time.monotonic() + 15
        while processes_of(run_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(run_dir) == [], "agentctl down left processes behind"


def test_a_prompt_edit_in_git_is_a_diff_a_new_pinned_agent_version_and_a_canary(
    repo: Path, agentctl: Any, client: Any, tmp_path: Path, registry_uri: str
) -> None:
    """Commit 1: the support bot bound to support-system@production, applied and served.
    Commit 2 edits the template: the plan shows its unified diff, a new prompt version and a new
    agent version; apply registers prompt v2 and agent v2 pinned to it (model config and tag),
    which walks the canary, answers with the new greeting once promoted, and a rollback returns
    the traffic to the version pinned to prompt v1."""
    from mlflow.models import Model

    manifests = repo / "manifests"
    (manifests / "support-bot.yaml").write_text(
        _support_bot("      - weight: 50\n      - weight: 100\n")
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "support bot bound to its system prompt")
    first = git(repo, "rev-parse", "HEAD").strip()
    done = agentctl("apply", str(manifests), env=LOCAL)
    assert done.code == 0, done.out + done.err
    v1 = client.get_model_version("support-bot", "1")
    assert v1.tags[PROMPTS_TAG] == "system=prompts:/support-system/1"
    router = _router(tmp_path)
    assert _answer(router) == ("1", f"{OLD} Refunds are issued within 5 business days.")

    template = manifests / "agents" / "support_bot" / "prompts" / "system.txt"
    edit(template, OLD, NEW)
    git(repo, "commit", "-q", "-am", "a warmer greeting")
    for fmt in ("text", "markdown"):
        plan = agentctl("plan", str(manifests), "--changed-since", first, "-f", fmt, env=LOCAL)
        assert plan.code == 0, plan.out + plan.err
        assert f"-{OLD}" in plan.out and f"+{NEW}" in plan.out, plan.out
        if fmt == "text":
            assert "support-system.prompt_version.current" in plan.out, plan.out
            assert "support-bot.model_version.current" in plan.out, plan.out
        else:  # the pull request comment names objects by title, the diff in a fenced block
            assert "prompt version &quot;support-system&quot; (current)" in plan.out, plan.out
            assert "model version &quot;support-bot&quot; (current)" in plan.out, plan.out
            assert "```diff" in plan.out, plan.out

    registered = agentctl("apply", str(manifests), env=LOCAL)
    assert registered.code == 0, registered.out + registered.err
    v2_prompt = client.get_prompt_version("support-system", 2)
    assert v2_prompt.template.strip() == NEW
    assert int(client.get_prompt_version_by_alias("support-system", "production").version) == 2
    v2 = client.get_model_version("support-bot", "2")
    assert v2.tags[PROMPTS_TAG] == "system=prompts:/support-system/2"
    config = Model.load("models:/support-bot/2").flavors["python_function"]["config"]
    assert config["prompts"] == {"system": "prompts:/support-system/2"}
    assert config["faq"]["refund"] == "Refunds are issued within 5 business days."

    # The canary: 50 % on the new version (paused until promoted), then all of it.
    started = until(
        "the canary at 50 %",
        lambda: (
            (r := agentctl("apply", str(manifests), env=LOCAL)).code == 0
            and "paused until promoted" in r.out
        ),
        120,
    )
    assert started
    answers = {_answer(router) for _ in range(12)}
    assert answers == {
        ("1", f"{OLD} Refunds are issued within 5 business days."),
        ("2", f"{NEW} Refunds are issued within 5 business days."),
    }, answers
    promoted = agentctl("promote", "support-bot", env=LOCAL)
    assert promoted.code == 0, promoted.err
    walked = agentctl("apply", str(manifests), "--wait", "--timeout", "120", env=LOCAL)
    assert walked.code == 0, walked.out + walked.err
    assert client.get_model_version_by_alias("support-bot", "champion").version == "2"
    assert {_answer(router) for _ in range(4)} == {
        ("2", f"{NEW} Refunds are issued within 5 business days.")
    }

    # Rolled back: the traffic returns to version 1, still pinned to prompt v1.
    rolled = agentctl("rollback", "support-bot", env=LOCAL)
    assert rolled.code == 0, rolled.out + rolled.err
    back = agentctl("apply", str(manifests), env=LOCAL)
    assert back.code == 0, back.out + back.err
    assert client.get_model_version_by_alias("support-bot", "champion").version == "1"
    assert {_answer(router) for _ in range(4)} == {
        ("1", f"{OLD} Refunds are issued within 5 business days.")
    }


def _router(tmp_path: Path) -> str:
    return str(json.loads((tmp_path / ".agentctl" / "daemon.json").read_text())["router"])


# -- prune and ownership ------------------------------------------------------------------------


def test_prune_deletes_only_owned_prompts_and_an_unowned_one_is_refused_until_adopted(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    """`apply --prune --yes` deletes an owned prompt whose manifest is gone and never a prompt
    made by hand; a hand-made prompt named like a declared one is refused (exit 1, nothing
    written) until its manifest says spec.adopt: true."""
    root = _prompts_only(examples)
    _with_chat(root)
    client.register_prompt("hand-made", "Not agentctl's.")
    assert agentctl("apply", str(root)).code == 0
    (root / "triage.yaml").unlink()
    pruned = agentctl("apply", str(root), "--prune", "--yes")
    assert pruned.code == 0, pruned.out + pruned.err
    assert _prompt_names(client) == {"support-system", "hand-made"}
    assert client.get_prompt_version("hand-made", 1).template == "Not agentctl's."

    # Made by hand with the name of a declared Prompt: refused, nothing written.
    client.delete_prompt("support-system")
    client.register_prompt("support-system", "Someone else's greeting.")
    proxy.reset()
    refused = agentctl("apply", str(root))
    assert refused.code == 1, refused.out + refused.err
    assert (
        "prompt 'support-system' exists but is not managed by agentctl; set spec.adopt: true "
        "to take it over" in refused.err
    ), refused.err
    assert re.search(r"support-system\.yaml:\d+", refused.err), refused.err
    assert _writes(proxy) == []
    manifest = root / "support-system.yaml"
    edit(manifest, "spec:\n", "spec:\n  adopt: true\n")
    adopted = agentctl("apply", str(root))
    assert adopted.code == 0, adopted.out + adopted.err
    prompt = client.get_prompt("support-system")
    assert prompt.tags[OWNER_TAG] == "agentctl"
    # The hand-made version stays; the template's content is a new version, under the alias.
    assert client.get_prompt_version("support-system", 1).template == "Someone else's greeting."
    aliased = client.get_prompt_version_by_alias("support-system", "production")
    assert int(aliased.version) == 2 and aliased.template.strip() == OLD


# -- bad input ----------------------------------------------------------------------------------

BAD = [
    (
        "a chat template that does not parse",
        "prompts/triage.yaml",
        lambda t: t.replace('content: "{{ ticket }}"', "content: [unclosed"),
        r"triage\.yaml:\d+",
        "spec.template",
    ),
    (
        "a binding to a prompt that exists nowhere",
        "support-bot.yaml",
        lambda t: t.replace("support-system@production", "no-such-prompt@production"),
        r"support-bot\.yaml:\d+",
        "spec.prompts.system",
    ),
    (
        "a binding to an alias that does not exist",
        "support-bot.yaml",
        lambda t: t.replace("support-system@production", "support-system@staging"),
        r"support-bot\.yaml:\d+",
        "spec.prompts.system",
    ),
]


@pytest.mark.parametrize(("what", "file", "change", "where", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_prompt_input_is_a_clear_error_and_writes_nothing(
    examples: Path,
    agentctl: Any,
    proxy: CountingProxy,
    client: Any,
    what: str,
    file: str,
    change: Callable[[str], str],
    where: str,
    field: str,
) -> None:
    """Each is exit 1 with an error naming the file, its line and the field, and not one
    request that writes reaches the server (plan and apply alike)."""
    (examples / "summarizer.yaml").unlink()
    _with_chat(examples)
    path = examples / file
    before = path.read_text()
    after = change(before)
    assert after != before, what
    path.write_text(after)
    for command in ("plan", "apply"):
        result = agentctl(command, str(examples))
        assert result.code == 1, result.out + result.err
        assert re.search(where, result.err) and field in result.err, result.err
        assert _writes(proxy) == [], _writes(proxy)
    assert _prompt_names(client) == set()
    assert client.search_registered_models() == []


def test_a_shell_s_registry_uri_does_not_redirect_the_prompts_an_agent_loads(
    examples: Path, agentctl: Any, client: Any
) -> None:
    """The support bot loads its bound prompt while it is logged: from the registry agentctl
    writes to, even when the shell exports MLFLOW_REGISTRY_URI elsewhere (a server that is down)."""
    run = agentctl("apply", str(examples), env={"MLFLOW_REGISTRY_URI": "http://127.0.0.1:9/"})
    assert run.code == 0, run.out + run.err
    bot = client.get_model_version_by_alias("support-bot", "champion")
    assert bot.tags[PROMPTS_TAG] == "system=prompts:/support-system/1"
