"""The loader: valid manifests load; each kind of bad input is one clear error with file:line."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.core.errors import InvalidInput
from controller.core.manifest.schema import CURRENT
from controller.engine.files import MAX_MANIFEST_BYTES, MAX_SOURCE_BYTES
from controller.engine.loader import load
from tests.support.manifests import GOOD, errors_of, write_repo


def test_examples_load(examples: Path) -> None:
    desired, diags = load(examples)
    assert [a.name for a in desired.agents] == ["summarizer", "support-bot"]
    assert not diags.has_errors
    for agent in desired.agents:
        assert agent.source is not None
        assert agent.source.digest.startswith("sha256:")
        assert CURRENT in agent.manifest.spec.aliases.values()


def test_good_manifest_loads_with_locations(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    (agent,) = desired.agents
    assert agent.location(("spec", "aliases", "champion")).line == 12
    assert agent.location(("spec", "serving", "traffic", 0, "percent")).line == 16


# (description, a replacement applied to GOOD, expected line, expected field, message fragment)
BAD = [
    ("unknown field", ("  aliases:\n", "  alias:\n"), 11, "spec.alias", "did you mean 'aliases'"),
    ("traffic != 100", ("percent: 100", "percent: 90"), 14, "spec.serving.traffic", "sum to 90"),
    (
        "path traversal",
        ("code: agent.py", "code: ../../../etc/passwd"),
        7,
        "spec.source.code",
        "outside the repository root",
    ),
    ("absolute path", ("code: agent.py", "code: /etc/passwd"), 7, "spec.source.code", "absolute"),
    (
        "missing file",
        ("config: config.yaml", "config: nope.yaml"),
        8,
        "spec.source.config",
        "not a file",
    ),
    (
        "unpinned requirement",
        ("[mlflow==3.17.2]", "[mlflow>=3]"),
        9,
        "spec.source.pipRequirements[0]",
        "not pinned",
    ),
    (
        "alias to an undeclared version",
        ("champion: current", "champion: 4"),
        12,
        "spec.aliases.champion",
        "not declared",
    ),
    (
        "wrong type",
        ("percent: 100", 'percent: "100"'),
        16,
        "spec.serving.traffic[0].percent",
        "integer",
    ),
    ("bad name", ("name: bot", "name: Bot_1"), 4, "metadata.name", "DNS label"),
    ("wrong apiVersion", ("agentctl.io/v1alpha1", "agentctl.io/v2"), 1, "apiVersion", "v1alpha1"),
    (
        "reserved alias",
        ("champion: current", "latest: current"),
        12,
        "spec.aliases.latest",
        "reserved",
    ),
    (
        "reserved tag prefix",
        ("  versions: [current]\n", "  versions: [current]\n  tags: {agentctl.io/owner: me}\n"),
        11,
        "spec.tags.agentctl.io/owner",
        "reserved",
    ),
    (
        "traffic to an undeclared alias",
        ("- alias: champion", "- alias: canary"),
        15,
        "spec.serving.traffic[0].alias",
        "not declared",
    ),
    (
        "header route to an undeclared alias",
        (
            "        percent: 100\n",
            "        percent: 100\n    routes:\n"
            "      - {header: X-Agent-Version, value: canary, alias: canary}\n",
        ),
        18,
        "spec.serving.routes[0].alias",
        "not declared",
    ),
    (
        "header route with a bad header name",
        (
            "        percent: 100\n",
            "        percent: 100\n    routes:\n"
            "      - {header: 'x agent', value: canary, version: current}\n",
        ),
        18,
        "spec.serving.routes[0].header",
        "pattern",
    ),
    (
        "the same header match twice",
        (
            "        percent: 100\n",
            "        percent: 100\n    routes:\n"
            "      - {header: X-A, value: b, version: current}\n"
            "      - {header: x-a, value: b, version: current}\n",
        ),
        19,
        "spec.serving.routes[1]",
        "matched twice",
    ),
    (
        "affinity on a header that also routes",
        (
            "        percent: 100\n",
            "        percent: 100\n    routes:\n"
            "      - {header: X-A, value: b, version: current}\n"
            "    affinity: {header: x-a}\n",
        ),
        19,
        "spec.serving.affinity.header",
        "use two headers",
    ),
    (
        "affinity with an unknown field",
        ("        percent: 100\n", "        percent: 100\n    affinity: {conversation: x}\n"),
        17,
        "spec.serving.affinity.conversation",
        "unknown field",
    ),
    (
        "duplicate key",
        ("  name: bot\n", "  name: bot\n  name: bot2\n"),
        5,
        "metadata.name",
        "duplicate key",
    ),
]


@pytest.mark.parametrize(
    ("what", "edit", "line", "field", "fragment"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, what: str, edit: tuple[str, str], line: int, field: str, fragment: str
) -> None:
    assert edit[0] in GOOD, what
    write_repo(tmp_path, GOOD.replace(edit[0], edit[1], 1))
    errors = errors_of(tmp_path)
    match = [e for e in errors if e.field == field]
    assert match, f"no error for {field}: {[str(e) for e in errors]}"
    err = match[0]
    assert err.location is not None
    assert err.location.file.endswith("bot.yaml")
    assert err.location.line == line, str(err)
    assert fragment in err.message, str(err)


def test_malformed_yaml_points_at_the_problem(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD.replace("  aliases:\n", "  aliases: [\n"))
    (err,) = errors_of(tmp_path)
    assert err.location is not None and err.location.line >= 11
    assert "invalid YAML" in err.message


def test_a_tab_in_the_indentation_is_named_as_such(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD.replace("  aliases:\n", "\taliases:\n"))
    (err,) = errors_of(tmp_path)
    assert err.message.endswith("(a tab: YAML indents with spaces only)"), err.message
    # Another YAML error says nothing of tabs.
    write_repo(tmp_path, GOOD.replace("  aliases:\n", "  aliases: [\n"))
    (err,) = errors_of(tmp_path)
    assert "tab" not in err.message


def test_duplicate_agents_name_both_places(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "copy.yaml").write_text(GOOD)
    (err,) = errors_of(tmp_path)
    assert err.field == "metadata.name"
    assert "defined twice" in err.message and "bot.yaml:4" in err.message


def test_two_agents_one_registered_model(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD.replace("spec:\n", "spec:\n  registeredModel: shared\n"))
    other = GOOD.replace("name: bot", "name: bot2").replace(
        "spec:\n", "spec:\n  registeredModel: shared\n"
    )
    (tmp_path / "other.yaml").write_text(other)
    (err,) = errors_of(tmp_path)
    assert err.field == "spec.registeredModel" and "already managed by agent 'bot'" in err.message


def test_requirements_file_errors_name_that_file(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD.replace("[mlflow==3.17.2]", "requirements.txt"))
    (tmp_path / "requirements.txt").write_text("# pinned\nmlflow==3.17.2\npydantic\n")
    (err,) = errors_of(tmp_path)
    assert err.location is not None
    assert err.location.file.endswith("requirements.txt") and err.location.line == 3


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        GOOD.replace("percent: 100", "percent: 90").replace("champion: current", "champion: 7"),
    )
    fields = {e.field for e in errors_of(tmp_path)}
    assert {"spec.serving.traffic", "spec.aliases.champion"} <= fields


def test_documents_without_apiversion_or_kind_are_data(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "settings.yaml").write_text("greeting: hello\n")
    desired, _ = load(tmp_path)
    assert [a.name for a in desired.agents] == ["bot"]


def test_empty_directory_is_an_error_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "notes.yaml").write_text("a: 1\n")
    (err,) = errors_of(tmp_path)
    assert "no Agent or Prompt manifests" in err.message
    desired, _ = load(tmp_path, allow_empty=True)
    assert desired.agents == ()


def test_digest_follows_content_not_names(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    write_repo(a, GOOD)
    write_repo(b, GOOD)
    (d1,), _ = load(a)[0].agents, None
    (d2,), _ = load(b)[0].agents, None
    assert d1.source and d2.source and d1.source.digest == d2.source.digest
    (b / "config.yaml").write_text("greeting: hello\n")
    (d3,), _ = load(b)[0].agents, None
    assert d3.source and d3.source.digest != d1.source.digest


# Hostile or odd YAML: each is a diagnostic (or loads), never a traceback or a hang.
NASTY = [
    ("recursive alias", "a: &a [*a]\n", "refers to a node that contains it"),
    (
        "billion laughs",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=False)
        ),
        "nodes once aliases expand",
    ),
    ("keys equal in Python", "tags: {1: a, true: b}\n", "duplicate key"),
    ("a huge integer", "n: " + "9" * 5000 + "\n", "invalid YAML value"),
    # libyaml: "exceeded maximum nesting depth"; the pure-Python parser: our "nested too deeply"
    ("nested too deeply", "[" * 3000 + "]" * 3000 + "\n", "nest"),
]


@pytest.mark.parametrize(("what", "text", "fragment"), NASTY, ids=[n[0] for n in NASTY])
def test_hostile_yaml_is_a_diagnostic(tmp_path: Path, what: str, text: str, fragment: str) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "data.yaml").write_text(text)
    errors = errors_of(tmp_path)
    assert any(fragment in e.message for e in errors), [str(e) for e in errors]
    assert all(e.location and e.location.file.endswith("data.yaml") for e in errors)


def test_merge_keys_follow_yaml_explicit_keys_override(tmp_path: Path) -> None:
    doc = GOOD.replace(
        "metadata:\n  name: bot\n",
        "metadata:\n  <<: &base {name: base, labels: {team: a}}\n  name: bot\n",
    )
    desired, _ = load(write_repo(tmp_path, doc))
    (agent,) = desired.agents
    assert agent.name == "bot" and agent.manifest.metadata.labels == {"team": "a"}


def test_data_files_that_are_lists_are_skipped(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "eval.yaml").write_text("- question: hi\n  answer: hello\n")
    desired, _ = load(tmp_path)
    assert [a.name for a in desired.agents] == ["bot"]


def test_a_list_of_manifests_is_told_to_use_documents(tmp_path: Path) -> None:
    write_repo(tmp_path, "- " + GOOD.replace("\n", "\n  ").rstrip() + "\n")
    (err,) = errors_of(tmp_path)
    assert "separate them with '---'" in err.message


def test_non_utf8_requirements_file_is_a_diagnostic(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD.replace("[mlflow==3.17.2]", "requirements.txt"))
    (tmp_path / "requirements.txt").write_bytes(b"mlflow==3.17.2\n\xff\xfe\n")
    (err,) = errors_of(tmp_path)
    assert err.location and err.location.file.endswith("requirements.txt")
    assert "cannot read" in err.message


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("spec:\n", "spec:\n  registeredModel: '..'\n"), "spec.registeredModel"),
        (("spec:\n", "spec:\n  tags: {a//b: x}\n"), "spec.tags.a//b"),
        (("spec:\n", "spec:\n  tags: {team/: x}\n"), "spec.tags.team/"),
    ],
)
def test_names_mlflow_would_refuse_fail_validation(
    tmp_path: Path, edit: tuple[str, str], field: str
) -> None:
    write_repo(tmp_path, GOOD.replace(*edit, 1))
    errors = errors_of(tmp_path)
    assert [e.field for e in errors] == [field], [str(e) for e in errors]
    assert "normalised path" in errors[0].message


# A registered model name is served as models:/<name>/<version> and moved as models:/<name>@<a>:
# each of these names validated, was registered, and could never be served.
UNSERVABLE_MODEL_NAMES = [
    ("query", '"bot?x"'),
    ("fragment", '"bot#x"'),
    ("slash", '"team/bot"'),
    ("colon", '"team:bot"'),
    ("alias separator", '"bot@x"'),
    ("percent escape", '"bot%2Fx"'),
    ("space", '"my bot"'),
    ("trailing space", '"bot "'),
    ("tab", '"bot\\tx"'),
    ("newline", '"bot\\n"'),
    ("control character", '"bot\\x01"'),
    ("delete", '"bot\\x7f"'),
    ("no-break space", '"bot\\u00a0x"'),
    ("zero-width space", '"bot\\u200bx"'),
]


@pytest.mark.parametrize(
    "name", [n[1] for n in UNSERVABLE_MODEL_NAMES], ids=[n[0] for n in UNSERVABLE_MODEL_NAMES]
)
def test_model_names_that_could_never_be_served_fail_validation(tmp_path: Path, name: str) -> None:
    write_repo(tmp_path, GOOD.replace("spec:\n", f"spec:\n  registeredModel: {name}\n", 1))
    (err,) = errors_of(tmp_path)
    assert err.field == "spec.registeredModel", str(err)
    assert err.location is not None and err.location.file.endswith("bot.yaml")
    assert err.location.line == 6, str(err)
    assert "may not contain" in err.message and "models:/<name>/<version>" in err.message


@pytest.mark.parametrize(
    "name",
    ["support-bot", "it's-a-bot", "main.agents.support_bot", "Bot_V2", "модель-1", "x" * 256],
)
def test_model_names_mlflow_serves_stay_valid(tmp_path: Path, name: str) -> None:
    write_repo(tmp_path, GOOD.replace("spec:\n", f'spec:\n  registeredModel: "{name}"\n', 1))
    desired, diags = load(tmp_path)
    assert not diags.has_errors
    assert [a.manifest.model_name for a in desired.agents] == [name]


@pytest.mark.parametrize("name", ['"bot?x"', '"bot#x"', '"a b"', '"bot\\x01"', '"team/bot"'])
def test_agent_names_are_dns_labels(tmp_path: Path, name: str) -> None:
    # The router serves /agents/<name>/... and Kubernetes objects are named after it.
    write_repo(tmp_path, GOOD.replace("name: bot", f"name: {name}", 1))
    (err,) = errors_of(tmp_path)
    assert err.field == "metadata.name" and "DNS label" in err.message, str(err)


@pytest.fixture
def memory_cap() -> Iterator[None]:
    """At most 1 GiB more address space for the test: a loader that reads /dev/zero without
    bound (as it did) fails with MemoryError instead of exhausting the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        vm_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmSize:"))
    cap = vm_kib * 1024 + 1024**3
    resource.setrlimit(
        resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# Special files in the manifest tree: each is one clear error naming the file; nothing blocks,
# nothing is read without bound, and a file outside the repository is never read or echoed.
# (pytest-timeout is only a guard: before, the FIFO blocked open() for ever.)


@pytest.mark.timeout(30)
def test_a_fifo_named_like_a_manifest_is_an_error_not_a_hang(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD)
    os.mkfifo(tmp_path / "pipe.yaml")
    (err,) = errors_of(tmp_path)
    assert err.location is not None and err.location.file.endswith("pipe.yaml")
    assert "not a regular file (a FIFO)" in err.message
    (err,) = errors_of(tmp_path / "pipe.yaml")  # named as PATH itself
    assert err.location is not None and err.location.file.endswith("pipe.yaml")
    assert "not a regular file (a FIFO)" in err.message


@pytest.mark.timeout(30)
def test_a_symlink_to_dev_zero_is_refused_unread(tmp_path: Path, memory_cap: None) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (err,) = errors_of(tmp_path)
    assert err.location is not None and err.location.file.endswith("zero.yaml")
    assert "outside the repository root" in err.message and "not read" in err.message
    # Even with the whole file system as the root, a device is not a manifest.
    with pytest.raises(InvalidInput) as info:
        load(tmp_path / "zero.yaml", root="/")
    (err,) = info.value.diagnostics.errors
    assert "not a regular file (a character device)" in err.message


def test_a_manifest_symlink_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "creds.yaml"
    secret.write_text("apiVersion: agentctl.io/v1alpha1\nkind: Agent\npassword: hunter2-SECRET\n")
    write_repo(repo, GOOD)
    (repo / "creds.yaml").symlink_to(secret)
    errors = errors_of(repo)
    assert [e.location.file.endswith("creds.yaml") for e in errors if e.location] == [True]
    (err,) = errors
    assert "outside the repository root" in err.message and "not read" in err.message
    assert "hunter2" not in str(err)
    # A symlink that stays inside the repository is read as before.
    (repo / "creds.yaml").unlink()
    (repo / "real").mkdir()
    (repo / "real" / "other.yaml").write_text(GOOD.replace("name: bot", "name: other"))
    (repo / "other.yaml").symlink_to(repo / "real" / "other.yaml")
    (repo / "real" / "agent.py").write_text("print('x')\n")
    (repo / "real" / "config.yaml").write_text("greeting: hi\n")
    desired, _ = load(repo / "other.yaml")
    assert [a.name for a in desired.agents] == ["other"]


def test_an_oversized_manifest_is_refused(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD)
    (tmp_path / "big.yaml").write_text("#" * MAX_MANIFEST_BYTES + "\n")
    (err,) = errors_of(tmp_path)
    assert err.location is not None and err.location.file.endswith("big.yaml")
    assert "more than the 1 MiB a file may hold here" in err.message
    (tmp_path / "big.yaml").write_text("#" * (MAX_MANIFEST_BYTES - 1) + "\n")  # at the limit
    desired, _ = load(tmp_path)
    assert [a.name for a in desired.agents] == ["bot"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("field", ["code", "config"])
def test_source_files_are_regular_and_bounded(tmp_path: Path, field: str) -> None:
    write_repo(tmp_path, GOOD)
    name = {"code": "agent.py", "config": "config.yaml"}[field]
    (tmp_path / name).unlink()
    os.mkfifo(tmp_path / name)
    # (config.yaml is also looked at as a manifest: refused there too, by its file name)
    (err,) = [e for e in errors_of(tmp_path) if e.field]
    assert err.field == f"spec.source.{field}" and "is not a file" in err.message
    (tmp_path / name).unlink()
    (tmp_path / name).write_bytes(b"#" * (MAX_SOURCE_BYTES + 1))
    (err,) = [e for e in errors_of(tmp_path) if e.field]
    assert err.field == f"spec.source.{field}", str(err)
    assert err.location is not None and err.location.line == {"code": 7, "config": 8}[field]
    assert "more than the 10 MiB" in err.message


@pytest.mark.timeout(30)
def test_a_requirements_file_is_regular_and_bounded(tmp_path: Path) -> None:
    write_repo(tmp_path, GOOD.replace("[mlflow==3.17.2]", "requirements.txt"))
    (tmp_path / "requirements.txt").write_bytes(b"mlflow==3.17.2\n" + b"#" * MAX_SOURCE_BYTES)
    (err,) = errors_of(tmp_path)
    assert err.location is not None and err.location.file.endswith("requirements.txt")
    assert "more than the 10 MiB" in err.message
