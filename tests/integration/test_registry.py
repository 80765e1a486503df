"""agentctl against a real MLflow server: apply, idempotency, new versions, ownership, prune,
bad input, a server that fails or is down. Every command is the installed `agentctl` binary."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus as unquote

import pytest

from controller.core.state.observed import DIGEST_TAG, OWNER_TAG
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.integration


def _failure(err: str) -> str:
    """stderr from its first line that is not the plan's warnings: the failure comes first."""
    lines = err.splitlines()
    while lines and (not lines[0] or lines[0].startswith("Warning: ")):
        lines.pop(0)
    return "\n".join(lines)


def test_apply_examples_then_nothing_left_to_do(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    plan = agentctl("plan", str(examples), "--detailed-exitcode")
    assert plan.code == 2, plan.err
    assert "Plan: 11 to add, 0 to change, 0 to destroy, 1 to evaluate." in plan.out
    assert proxy.writes() == [], "plan must not write"

    applied = agentctl("apply", str(examples))
    assert applied.code == 0, applied.err + applied.out

    bot = client.get_registered_model("support-bot")
    assert bot.description == "Answers customer questions from the support FAQ."
    assert bot.tags["team"] == "customer-care" and bot.tags[OWNER_TAG] == "agentctl"
    assert bot.aliases == {"champion": "1"}
    v1 = client.get_model_version("support-bot", "1")
    assert v1.tags[DIGEST_TAG].startswith("sha256:") and v1.tags["channel"] == "web"
    summarizer = client.get_registered_model("summarizer")
    # Two sources, two versions in one apply, in declaration order: stable, then current.
    assert summarizer.aliases == {"champion": "1", "challenger": "2"}
    stable, current = (client.get_model_version("summarizer", n) for n in ("1", "2"))
    assert stable.tags[DIGEST_TAG] != current.tags[DIGEST_TAG]

    again = agentctl("plan", str(examples), "--detailed-exitcode")
    assert again.code == 0, again.err + again.out
    assert "No changes" in again.out

    proxy.reset()
    second = agentctl("apply", str(examples))
    assert second.code == 0, second.err
    assert proxy.writes() == [], [(r.method, r.path) for r in proxy.writes()]
    # Observation is bulk, whatever the agent count: one search of models and one of versions,
    # and the same two for prompts (filtered on the prompt tag).
    searches = sorted(r.path.split("?")[0].rsplit("/", 2)[-2] for r in proxy.records)
    assert searches == ["model-versions"] * 2 + ["registered-models"] * 2, proxy.records
    assert sum("is_prompt" in unquote(r.path) for r in proxy.records) == 2, proxy.records


def test_changed_config_logs_a_new_version_and_moves_the_alias(
    examples: Path, agentctl: Any, client: Any
) -> None:
    assert agentctl("apply", str(examples)).code == 0
    summarizer_before = client.get_registered_model("summarizer").last_updated_timestamp
    config = examples / "agents" / "support_bot" / "config.yaml"
    config.write_text(config.read_text().replace("support bot", "support bot, v2"))

    plan = agentctl("plan", str(examples), "--format", "json")
    assert plan.code == 0, plan.err
    data = json.loads(plan.out)
    changed = {(c["address"], c["action"]) for c in data["changes"]}
    assert changed == {
        ("support-bot.model_version.current", "create"),
        ("support-bot.evaluation.current", "create"),  # before its alias moves to it
        ("support-bot.alias.champion", "update"),
    }
    assert agentctl("apply", str(examples)).code == 0

    bot = client.get_registered_model("support-bot")
    assert bot.aliases == {"champion": "2"}
    v1, v2 = (client.get_model_version("support-bot", n) for n in ("1", "2"))
    assert v1.tags[DIGEST_TAG] != v2.tags[DIGEST_TAG]
    assert client.get_registered_model("summarizer").last_updated_timestamp == summarizer_before

    # An alias moved by hand is drift: the next plan shows it and apply moves it back.
    client.set_registered_model_alias("support-bot", "champion", "1")
    drift = agentctl("plan", str(examples), "--detailed-exitcode")
    assert drift.code == 2
    assert "support-bot.alias.champion will be updated" in drift.out
    assert "~ version = 1 -> 2" in drift.out
    assert agentctl("apply", str(examples)).code == 0
    assert client.get_registered_model("support-bot").aliases == {"champion": "2"}


def test_plan_never_runs_agent_code(examples: Path, agentctl: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = examples / "agents" / "support_bot" / "agent.py"
    code.write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit('ran')\n")
    result = agentctl("plan", str(examples), "--detailed-exitcode")
    assert result.code == 2, result.err
    assert not marker.exists()


BAD_INPUTS = [
    ("malformed YAML", "support-bot.yaml", ("  aliases:\n", "  aliases: [\n"), "invalid YAML"),
    ("unknown field", "support-bot.yaml", ("  tags:\n", "  tagz:\n"), "spec.tagz"),
    ("traffic != 100", "summarizer.yaml", ("percent: 90", "percent: 80"), "spec.serving.traffic"),
    (
        "path traversal",
        "summarizer.yaml",
        ("code: agents/summarizer/agent.py", "code: ../../../../etc/hostname"),
        "outside the repository root",
    ),
]


@pytest.mark.parametrize(
    ("what", "file", "edit", "expected"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_bad_input_is_a_clear_error_and_writes_nothing(
    examples: Path,
    agentctl: Any,
    proxy: CountingProxy,
    client: Any,
    command: str,
    what: str,
    file: str,
    edit: tuple[str, str],
    expected: str,
) -> None:
    path = examples / file
    assert edit[0] in path.read_text(), what
    path.write_text(path.read_text().replace(edit[0], edit[1], 1))
    result = agentctl(command, str(examples))
    assert result.code == 1, result.out + result.err
    assert expected in result.err
    assert f"{file}:" in result.err, result.err  # file:line:column
    assert proxy.records == [], "nothing may reach the server"
    assert client.search_registered_models() == []


def test_unmanaged_model_is_left_alone_until_adopted(
    examples: Path, agentctl: Any, client: Any, proxy: CountingProxy
) -> None:
    client.create_registered_model("support-bot", tags={"made-by": "hand"})
    result = agentctl("apply", str(examples))
    assert result.code == 1
    assert "not managed by agentctl" in result.err and "support-bot.yaml:" in result.err
    assert "spec.registeredModel" in result.err
    assert proxy.writes() == []

    manifest = examples / "support-bot.yaml"
    manifest.write_text(manifest.read_text().replace("spec:\n", "spec:\n  adopt: true\n", 1))
    assert agentctl("apply", str(examples)).code == 0
    tags = client.get_registered_model("support-bot").tags
    assert tags[OWNER_TAG] == "agentctl" and tags["made-by"] == "hand"


def test_other_owners_models_are_never_touched(examples: Path, agentctl: Any, client: Any) -> None:
    assert agentctl("apply", str(examples), env={"AGENTCTL_OWNER": "team-a"}).code == 0
    result = agentctl("apply", str(examples), env={"AGENTCTL_OWNER": "team-b"})
    assert result.code == 1 and "managed by 'team-a'" in result.err


def test_prune_deletes_only_when_asked(examples: Path, agentctl: Any, client: Any) -> None:
    assert agentctl("apply", str(examples)).code == 0
    (examples / "summarizer.yaml").unlink()
    plan = agentctl("plan", str(examples), "--detailed-exitcode")
    assert plan.code == 0 and "--prune" in plan.err
    # The headline does not say "No changes." while a warning says a model is left over.
    assert plan.out.startswith("No changes to apply, but 1 agent needs attention:"), plan.out
    assert "  ! summarizer: registered model 'summarizer' is managed by" in plan.out
    # Not on a terminal, deleting a model needs --yes: exit 1, nothing applied.
    refused = agentctl("apply", str(examples), "--prune")
    assert refused.code == 1
    assert "pass --yes (or --auto-approve)" in refused.err and "'summarizer'" in refused.err
    assert "Apply complete" not in refused.out
    assert {m.name for m in client.search_registered_models()} == {"summarizer", "support-bot"}
    pruned = agentctl("apply", str(examples), "--prune", "--auto-approve")
    assert pruned.code == 0, pruned.err
    names = {m.name for m in client.search_registered_models()}
    assert names == {"support-bot"}


def test_a_saved_prune_plan_says_it_is_the_consent(
    examples: Path, agentctl: Any, client: Any, tmp_path: Path
) -> None:
    assert agentctl("apply", str(examples)).code == 0
    (examples / "summarizer.yaml").unlink()
    file = tmp_path / "p.json"
    saved = agentctl("plan", str(examples), "--prune", "--out", str(file))
    assert saved.code == 0, saved.err
    assert (
        f"The plan saved to {file} deletes 1 registered model (summarizer) with every version; "
        f"`agentctl apply {file}` will not ask again" in saved.err
    )
    # Terraform's rule: the reviewed saved plan is the consent; no terminal, no --yes needed.
    applied = agentctl("apply", str(file))
    assert applied.code == 0, applied.err
    assert {m.name for m in client.search_registered_models()} == {"support-bot"}


def test_server_down_is_a_clear_error_after_bounded_retries(examples: Path, agentctl: Any) -> None:
    start = time.monotonic()
    result = agentctl("plan", str(examples), env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    elapsed = time.monotonic() - start
    assert result.code == 1
    assert "did not answer (connection refused)" in result.err
    assert "Gave up after retrying" in result.err
    assert elapsed < 60


def test_transient_server_errors_are_retried(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    proxy.fail("registered-models/alias", times=2, status=503)
    proxy.fail("registered-models/search", times=1, status=503)
    result = agentctl("apply", str(examples))
    assert result.code == 0, result.err
    assert sum(r.status == 503 for r in proxy.records) == 3
    assert client.get_registered_model("summarizer").aliases == {"champion": "1", "challenger": "2"}


def test_a_half_applied_run_is_finished_by_the_next_apply(
    examples: Path, agentctl: Any, proxy: CountingProxy, client: Any
) -> None:
    # Without the support bot's prompt, whose alias (set before any agent's change) would fail
    # first: this test is about agents' versions registered before their aliases failed.
    (examples / "support-system.yaml").unlink()
    bot = examples / "support-bot.yaml"
    bot.write_text(re.sub(r"\n  prompts:\n(    .*\n)+", "\n", bot.read_text()))
    proxy.fail("registered-models/alias", times=-1, status=503)
    broken = agentctl("apply", str(examples), env={"AGENTCTL_RETRY_ATTEMPTS": "2"})
    assert broken.code == 1
    # After the plan's warnings, the failure first: no "Apply complete".
    failure = _failure(broken.err)
    # (the support bot's prompt is applied first: its alias is the first alias set)
    assert re.match(
        r"Apply failed after \d+ changes: (support-system\.prompt_alias|summarizer\.alias|"
        r"support-bot\.alias)",
        failure,
    )
    assert "next apply finishes" in broken.err and "Apply complete" not in broken.out
    assert client.get_registered_model("summarizer").aliases == {}

    proxy.reset()
    plan = agentctl("plan", str(examples), "--format", "json")
    changes = json.loads(plan.out)["changes"]
    remaining = {c["address"] for c in changes}
    # The versions registered before the failure are not logged again: only the aliases and
    # what was not reached remain.
    registered = {v.tags[DIGEST_TAG] for v in client.search_model_versions("name = 'summarizer'")}
    assert registered, "a version was registered before the alias failed"
    planned = {c["after"]["digest"] for c in changes if c["kind"] == "model_version"}
    assert not planned & registered
    assert "summarizer.alias.champion" in remaining
    assert agentctl("apply", str(examples)).code == 0
    assert client.get_registered_model("summarizer").aliases == {"champion": "1", "challenger": "2"}
    assert agentctl("plan", str(examples), "--detailed-exitcode").code == 0
    assert len(client.search_model_versions("name = 'summarizer'")) == 2


def test_markdown_plan_has_a_summary_and_a_section_per_agent(examples: Path, agentctl: Any) -> None:
    result = agentctl("plan", str(examples), "--format", "markdown")
    assert result.code == 0
    assert "**Plan: 11 to add, 0 to change, 0 to destroy, 1 to evaluate.**" in result.out
    assert result.out.count("<details>") == 3  # the two agents and the support bot's prompt
    assert "<code>support-bot</code>" in result.out and "<code>summarizer</code>" in result.out
    assert "(prompt <code>support-system</code>)" in result.out


def test_agent_code_that_fails_to_log_is_not_retried(
    examples: Path, agentctl: Any, client: Any, proxy: CountingProxy
) -> None:
    code = examples / "agents" / "summarizer" / "agent.py"
    good = code.read_text()
    code.write_text(good.replace("set_model(Summarizer())", "raise RuntimeError('broken agent')"))

    def runs(stage: str) -> int:  # the server is shared by the session's tests: count
        experiment = client.get_experiment_by_name("/agentctl/summarizer")
        if experiment is None:
            return 0
        found = client.search_runs([experiment.experiment_id], run_view_type=3)  # ViewType.ALL
        return sum(r.info.lifecycle_stage == stage for r in found)

    deleted, active = runs("deleted"), runs("active")
    result = agentctl("apply", str(examples), env={"AGENTCTL_RETRY_ATTEMPTS": "5"})
    assert result.code == 1
    assert "broken agent" in result.err
    assert "Gave up after retrying" not in result.err
    # One attempt: one run was created for it, not one per retry; and deleted, as it failed.
    assert (runs("deleted"), runs("active")) == (deleted + 1, active)
    assert client.search_model_versions("name = 'summarizer'") == []


def test_an_agent_that_raises_is_named_at_its_line_and_the_next_apply_reuses_what_was_made(
    examples: Path, agentctl: Any, client: Any
) -> None:
    code = examples / "agents" / "summarizer" / "agent.py"
    good = code.read_text()
    line = good.splitlines().index("set_model(Summarizer())") + 1
    code.write_text(good.replace("set_model(Summarizer())", "ratio = 1 / 0"))
    failed = agentctl("apply", str(examples))
    assert failed.code == 1
    first = _failure(failed.err).splitlines()[0]
    assert re.match(r"Apply failed after \d+ changes?: summarizer\.model_version", first), first
    # Both versions (stable, then current) log the same code: the first in plan order fails.
    assert (
        f"summarizer.model_version.stable: manifests/agents/summarizer/agent.py:{line}: in "
        "<module>: ZeroDivisionError: division by zero (while logging "
        "manifests/agents/summarizer/agent.py)"
    ) in first, first
    assert "Apply complete" not in failed.out + failed.err
    assert "site-packages" not in failed.err
    # What was made before the failure is the owner's, and the next apply takes it as it is.
    assert client.get_registered_model("summarizer").tags[OWNER_TAG]
    code.write_text(good)
    plan = json.loads(agentctl("plan", str(examples), "--format", "json").out)
    summarizer = [c for c in plan["changes"] if c["agent"] == "summarizer"]
    assert not any(c["kind"] == "registered_model" and c["action"] == "create" for c in summarizer)
    fixed = agentctl("apply", str(examples))
    assert fixed.code == 0, fixed.err
    assert "Apply complete" in fixed.out
    # One version per source (stable, current), none logged twice.
    versions = client.search_model_versions("name = 'summarizer'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert agentctl("plan", str(examples), "--detailed-exitcode").code == 0


def test_a_model_name_with_quotes_is_found_by_digest(
    examples: Path, agentctl: Any, mlflow_server: Any, client: Any
) -> None:
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.core.prompt.resolve import bind_prompts
    from controller.engine.loader import load

    manifest = examples / "support-bot.yaml"
    manifest.write_text(
        manifest.read_text().replace("registeredModel: support-bot", "registeredModel: it's-a-bot")
    )
    assert agentctl("apply", str(examples)).code == 0
    registry = MlflowRegistry(mlflow_server.url)
    # The version's digest is its files' bound to its prompt (the support bot binds one).
    desired, _ = bind_prompts(load(examples)[0], registry.observe())
    (bot,) = [a for a in desired.agents if a.name == "support-bot"]
    assert bot.source is not None and bot.source.pins
    assert registry.find_version("it's-a-bot", bot.source.digest) == 1
    assert registry.find_version("summarizer", bot.source.digest) is None


def test_registered_example_agents_answer_deterministically(
    examples: Path, agentctl: Any, mlflow_server: Any
) -> None:
    import mlflow

    assert agentctl("apply", str(examples)).code == 0
    mlflow.set_tracking_uri(mlflow_server.url)
    # A ResponsesAgent traces each predict to the tracking server asynchronously; this test is
    # about answers, and a trace still queued when the session's server stops makes the
    # interpreter's exit wait on MLflow's retries.
    mlflow.tracing.disable()
    bot = mlflow.pyfunc.load_model("models:/support-bot@champion")
    request = {"input": [{"role": "user", "content": "How do I get a refund?"}]}
    first = bot.predict(request)
    assert first == bot.predict(request)
    text = first["output"][0]["content"][0]["text"]
    assert text == "Hi, this is the support bot. Refunds are issued within 5 business days."
    summarizer = mlflow.pyfunc.load_model("models:/summarizer@challenger")
    long = "First sentence here. " + "Second sentence is much longer than the first one. " * 5
    out = summarizer.predict({"input": [{"role": "user", "content": long}]})
    # max_words is 30: the 3-word first sentence and three 9-word ones fit, a fourth does not.
    kept = "First sentence here. " + "Second sentence is much longer than the first one. " * 3
    assert out["output"][0]["content"][0]["text"] == "Summary: " + kept.strip()
    mlflow.tracing.enable()


def test_the_controller_s_isolated_logging_registers_and_fails_the_same_way(
    examples: Path, mlflow_server: Any, client: Any
) -> None:
    from controller.adapters.mlflow.client import MlflowRegistry
    from controller.adapters.mlflow.logger import log_model_isolated
    from controller.core.errors import PermanentBackendError, TemporaryBackendError
    from controller.engine.loader import load
    from controller.ports import VersionSource
    from tests.support.mlflow_server import free_port

    desired, _ = load(examples)
    (bot,) = [a for a in desired.agents if a.name == "summarizer"]
    assert bot.source is not None
    src = VersionSource(
        "summarizer",
        bot.source.code_path,
        bot.source.config_path,
        bot.source.pip_requirements,
        bot.source.digest,
    )
    registry = MlflowRegistry(mlflow_server.url)
    registry.create_model("summarizer", None, {})
    assert registry.log_version("summarizer", src, {DIGEST_TAG: src.digest}, None) == 1
    assert registry.find_version("summarizer", src.digest) == 1
    loaded = client.get_model_version("summarizer", "1")
    assert loaded.tags[DIGEST_TAG] == src.digest and loaded.source.startswith("models:/")

    code = Path(src.code_path)
    code.write_text(
        code.read_text().replace("set_model(Summarizer())", "raise RuntimeError('broken agent')")
    )
    with pytest.raises(
        PermanentBackendError, match=r"agent\.py:\d+: in <module>: RuntimeError: broken"
    ):
        registry.log_version("summarizer", src, {}, None)
    # The server failing under the child is temporary: the caller's policy retries it.
    code.write_text(
        code.read_text().replace("raise RuntimeError('broken agent')", "set_model(Summarizer())")
    )
    with pytest.raises(TemporaryBackendError):
        log_model_isolated(f"http://127.0.0.1:{free_port()}", "0", src)
