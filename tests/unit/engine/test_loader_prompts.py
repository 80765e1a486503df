"""`kind: Prompt` documents loaded: the template read and parsed into the content of version
'current', and every problem (of the manifest, of its template file, across documents, of
agents' bindings) reported with its file, line, column and field; nothing loads then."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.core.diagnostics import Diagnostic, Severity
from controller.core.prompt.content import PromptContent
from controller.engine.loader import load
from controller.engine.prompts import MAX_TEMPLATE_BYTES
from tests.support.manifests import GOOD, errors_of, write_repo
from tests.support.prompt_manifests import (
    BOUND_AGENT,
    CHAT_PROMPT,
    CHAT_TEMPLATE,
    TEXT_PROMPT,
    TEXT_TEMPLATE,
    write_prompt_repo,
)

Where = tuple[str, int, int, str]


def where(d: Diagnostic) -> Where:
    assert d.location is not None, str(d)
    return (Path(d.location.file).name, d.location.line, d.location.column, d.field)


def only_error(root: Path) -> tuple[Where, str]:
    errors = errors_of(root)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return where(errors[0]), errors[0].message


# -- what loads ---------------------------------------------------------------------------------


def test_a_text_prompt_loads_with_its_template_as_the_current_content(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, agent=BOUND_AGENT)
    desired, diags = load(tmp_path)
    assert not len(diags)
    [prompt] = desired.prompts
    assert (prompt.name, prompt.prompt_name) == ("support-system", "support-system")
    assert prompt.content == PromptContent("text", TEXT_TEMPLATE)
    assert prompt.content.digest == PromptContent("text", TEXT_TEMPLATE).digest
    assert prompt.content.variables == {"customer", "question"}
    assert (prompt.template_ref, prompt.manifest_ref) == (
        "prompts/support-system.txt",
        "prompts/prompt.yaml",
    )
    assert prompt.location(("spec", "template")).line == 6
    assert [a.name for a in desired.agents] == ["bot"]
    assert [b.ref for b in desired.agents[0].bindings] == ["support-system@production"]


def test_a_chat_prompt_loads_with_its_response_format_and_model_config(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, CHAT_PROMPT, CHAT_TEMPLATE, "triage.yaml")
    desired, _ = load(tmp_path)
    [prompt] = desired.prompts
    assert prompt.prompt_name == "support-triage"
    expected = PromptContent(
        "chat",
        (
            {"role": "system", "content": "You sort support questions."},
            {"role": "user", "content": "Sort this: {{ question }}\n"},
        ),
        {"type": "object", "properties": {"label": {"type": "string"}}},
        {"provider": "openai", "model_name": "gpt-4o-mini", "temperature": 0.2},
    )
    assert prompt.content == expected
    assert prompt.content.digest == expected.digest


def test_a_json_chat_template_and_a_format_that_overrides_the_suffix(tmp_path: Path) -> None:
    chat = '[{"role": "user", "content": "Hi {{ question }}"}]\n'
    write_prompt_repo(tmp_path, CHAT_PROMPT.replace("triage.yaml", "triage.json"), chat, "t.json")
    (tmp_path / "prompts" / "triage.json").write_text(chat)
    [prompt] = load(tmp_path)[0].prompts
    assert prompt.content == PromptContent(
        "chat",
        ({"role": "user", "content": "Hi {{ question }}"},),
        prompt.content.response_format,
        prompt.content.model_config,
    )
    forced = CHAT_PROMPT.replace(
        "  template: triage.yaml\n", "  template: t.json\n  format: text\n"
    )
    (tmp_path / "prompts" / "prompt.yaml").write_text(forced)
    [prompt] = load(tmp_path)[0].prompts
    assert (prompt.content.type, prompt.content.template) == ("text", chat)


def test_prompts_sorted_by_name_and_a_desired_state_of_prompts_only_is_not_empty(
    tmp_path: Path,
) -> None:
    write_prompt_repo(tmp_path)
    (tmp_path / "bot.yaml").unlink()
    (tmp_path / "prompts" / "a-triage.yaml").write_text(CHAT_PROMPT)
    (tmp_path / "prompts" / "triage.yaml").write_text(CHAT_TEMPLATE)
    desired, _ = load(tmp_path)
    assert desired.agents == ()
    assert [p.name for p in desired.prompts] == ["support-system", "triage"]


def test_a_declared_variable_the_template_never_uses_is_a_warning(tmp_path: Path) -> None:
    write_prompt_repo(
        tmp_path, TEXT_PROMPT.replace("[customer, question]", "[customer, question, tone]")
    )
    desired, diags = load(tmp_path)
    assert [p.name for p in desired.prompts] == ["support-system"]
    [warning] = diags
    assert warning.severity is Severity.WARNING
    assert where(warning) == ("prompt.yaml", 7, 35, "spec.variables[2]")
    assert warning.message == "variable 'tone' is declared but the template never uses it"


def test_without_spec_variables_any_variable_is_taken(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, TEXT_PROMPT.replace("  variables: [customer, question]\n", ""),
                      "Hi {{ anyone }} {{ a.b }}\n")  # fmt: skip
    [prompt] = load(tmp_path)[0].prompts
    assert prompt.content.variables == {"anyone", "a.b"}


# -- the template file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("../../outside.txt", "outside the repository root"),
        ("/etc/hostname", "is absolute; give a path relative to the manifest"),
        ("missing.txt", "template 'missing.txt' ("),
        (".", "not a regular file (a directory)"),
    ],
)
def test_where_the_template_is_wrong_points_at_the_manifest_s_spec_template(
    tmp_path: Path, template: str, fragment: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside.txt").write_text("hi\n")
    write_prompt_repo(repo, TEXT_PROMPT.replace("support-system.txt", template))
    (at, message) = only_error(repo)
    assert at == ("prompt.yaml", 6, 3, "spec.template")
    assert fragment in message


def test_a_template_larger_than_allowed_is_not_read(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, template="x" * (MAX_TEMPLATE_BYTES + 1))
    (at, message) = only_error(tmp_path)
    assert at == ("prompt.yaml", 6, 3, "spec.template")
    assert "more than the 1 MiB a file may hold here" in message


def test_a_template_that_is_not_utf8_names_the_template(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path)
    (tmp_path / "prompts" / "support-system.txt").write_bytes(b"caf\xe9 {{ customer }}\n")
    (at, message) = only_error(tmp_path)
    assert at == ("support-system.txt", 1, 1, "spec.template")
    assert message.startswith("the template is not UTF-8 text")


def test_a_fifo_template_is_refused_without_blocking(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path)
    (tmp_path / "prompts" / "support-system.txt").unlink()
    os.mkfifo(tmp_path / "prompts" / "support-system.txt")
    (at, message) = only_error(tmp_path)
    assert at == ("prompt.yaml", 6, 3, "spec.template")
    assert "not a regular file (a FIFO)" in message


@pytest.mark.parametrize(
    ("template", "at", "message"),
    [
        ("", (1, 1), "the template is empty"),
        ("Hi {{ customer }}.\nNow {{ question \n", (2, 5),
         "does not parse: '{{' without its closing '}}'"),
        ("Hi {{ customer }} {{ 1st }}\n", (1, 19), "does not parse: '{{ 1st }}' is not a variable"),
        ("Hi {{ customer }}\n{% if question %}x{% endif %}\n", (2, 1),
         "does not parse: a Jinja2 block ('{%'): agentctl supports {{variable}} templates only"),
        ("Dear {{ customer }},\n  {{ custmer }} asks {{question}}\n", (2, 3),
         "unknown variable 'custmer' in the template; declared: customer, question; "
         "did you mean 'customer'?"),
        ("{{ customer }} {{ question }} {{ zzz }}\n", (1, 31),
         "unknown variable 'zzz' in the template; declared: customer, question"),
    ],
)  # fmt: skip
def test_a_text_template_s_problem_points_at_its_line_and_column(
    tmp_path: Path, template: str, at: tuple[int, int], message: str
) -> None:
    write_prompt_repo(tmp_path, template=template)
    (got, text) = only_error(tmp_path)
    assert got == ("support-system.txt", *at, "spec.template")
    assert text.startswith(message), text
    assert text == message or not message.startswith("unknown variable")


def test_every_problem_of_a_template_in_one_run(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, template="{{ custmer }} {{ 2 }}\n{{ tone }} {{ open\n")
    got = [(where(e)[1:3], e.message.split(":")[0]) for e in errors_of(tmp_path)]
    assert got == [
        ((1, 1), "unknown variable 'custmer' in the template; declared"),
        ((1, 15), "does not parse"),
        ((2, 1), "unknown variable 'tone' in the template; declared"),
        ((2, 12), "does not parse"),
    ]


@pytest.mark.parametrize(
    ("template", "at", "message"),
    [
        ("- role: system\n  contnt: hi\n", (2, 3),
         "message 1: unknown field 'contnt' (a message has role and content); did you mean "
         "'content'?"),
        ("- role: system\n", (1, 3), "message 1 has no content"),
        ("- role: system\n  content: ''\n", (2, 3), "message 1: content must be text, not an "
         "empty string"),
        ("- role: [a]\n  content: hi\n", (1, 3), "message 1: role must be text, not a list"),
        ("- hello\n", (1, 3), "message 1 is a string, not a mapping"),
        ("role: system\ncontent: hi\n", (1, 1), "a chat template is a list of messages"),
        ("[]\n", (1, 1), "a chat template is a list of messages with role and content"),
        ("- role: user\n  content: |\n    Hi\n    {{ qestion }} now\n", (4, 5),
         "unknown variable 'qestion' in the template; declared: question; did you mean "
         "'question'?"),
        ("- role: user\n  content: 'Hi {{ question'\n", (2, 16),
         "does not parse: '{{' without its closing '}}'"),
        ("- role: user\n  content: [unclosed\n", (3, 1), "invalid YAML"),
        ("- role: user\n  content: hi\n---\n- role: user\n  content: hi\n", (4, 1),
         "a chat template is one YAML document"),
    ],
)  # fmt: skip
def test_a_chat_template_s_problem_points_at_its_line_and_column(
    tmp_path: Path, template: str, at: tuple[int, int], message: str
) -> None:
    write_prompt_repo(tmp_path, CHAT_PROMPT, template, "triage.yaml")
    (got, text) = only_error(tmp_path)
    assert got == ("triage.yaml", *at, "spec.template")
    assert message in text, text


# -- the manifest's own checks ------------------------------------------------------------------


def test_every_problem_of_a_prompt_manifest_in_one_run(tmp_path: Path) -> None:
    prompt = TEXT_PROMPT.replace("stable: 3", "stable: 4\n    latest: current").replace(
        "tags: {team: support}",
        "tags: {agentctl.io/owner: me, mlflow.prompt.text: x}\n  colour: red",
    )
    write_prompt_repo(tmp_path, prompt.replace("[current, 3]", "[current, 3, 3]"),
                      template="{{ custmer }}{{ question }}\n")  # fmt: skip
    got = [(*where(e), e.message) for e in errors_of(tmp_path)]
    assert [g[:4] for g in got] == [
        ("prompt.yaml", 8, 26, "spec.versions[2].version"),
        ("prompt.yaml", 11, 5, "spec.aliases.stable"),
        ("prompt.yaml", 12, 5, "spec.aliases.latest"),
        ("prompt.yaml", 13, 10, "spec.tags.agentctl.io/owner"),
        ("prompt.yaml", 13, 33, "spec.tags.mlflow.prompt.text"),
        ("prompt.yaml", 14, 3, "spec.colour"),
        ("support-system.txt", 1, 1, "spec.template"),
    ]
    messages = [g[4] for g in got]
    assert messages[0] == "version 3 is declared twice (first at spec.versions[1])"
    assert messages[1] == (
        "alias 'stable' points to version 4, which spec.versions does not declare "
        "(declared: 3, current)"
    )
    assert "reserved by MLflow" in messages[2]
    assert "reserved for agentctl" in messages[3]
    assert "MLflow's own prompt tag" in messages[4]
    assert "unknown field 'colour'" in messages[5]
    assert messages[6].startswith("unknown variable 'custmer'")


def test_a_misspelt_kind_is_checked_as_a_prompt(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, TEXT_PROMPT.replace("kind: Prompt", "kind: Promt"),
                      template="{{ custmer }}\n")  # fmt: skip
    got = [(where(e), e.message) for e in errors_of(tmp_path)]
    assert got[0] == (
        ("prompt.yaml", 2, 1, "kind"),
        "kind must be Agent, Prompt, Environment or ServingDefaults (got 'Promt'); checked as Prompt",
    )
    assert got[1][0] == ("support-system.txt", 1, 1, "spec.template")
    desired, _ = load(tmp_path, partial=True)
    assert (len(desired.agents), desired.prompts) == (1, ())


# -- across documents ---------------------------------------------------------------------------


def test_a_prompt_named_as_an_agent_is_refused(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, TEXT_PROMPT.replace("name: support-system", "name: bot\n  #"))
    (at, message) = only_error(tmp_path)
    assert at == ("prompt.yaml", 4, 3, "metadata.name")
    assert message.startswith("name 'bot' is already used by agent 'bot' (")
    assert message.endswith(
        "bot.yaml:4:3); metadata.name is unique across Agent and Prompt documents"
    )


def test_an_agent_named_as_a_prompt_before_it_is_refused(tmp_path: Path) -> None:
    write_repo(tmp_path, TEXT_PROMPT.replace("name: support-system", "name: bot"), "a.yaml")
    (tmp_path / "support-system.txt").write_text(TEXT_TEMPLATE)
    (tmp_path / "bot.yaml").write_text(GOOD)
    (at, message) = only_error(tmp_path)
    assert at == ("bot.yaml", 4, 3, "metadata.name")
    assert "name 'bot' is already used by prompt 'bot' (" in message


def test_a_prompt_declared_twice_and_a_registered_name_taken_twice(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path)
    (tmp_path / "prompts" / "twice.yaml").write_text(TEXT_PROMPT)
    (tmp_path / "prompts" / "zz.yaml").write_text(
        TEXT_PROMPT.replace("name: support-system", "name: other\n  #").replace(
            "  template:", "  name: support-system\n  template:"
        )
    )
    got = [(where(e), e.message) for e in errors_of(tmp_path)]
    assert got[0][0] == ("twice.yaml", 4, 3, "metadata.name")
    assert got[0][1].startswith("prompt 'support-system' is defined twice; first at ")
    assert got[1][0] == ("zz.yaml", 7, 3, "spec.name")
    assert got[1][1].startswith(
        "prompt 'support-system' is already managed by Prompt 'support-system' ("
    )


def test_a_prompt_may_not_take_an_agent_s_registered_model_name(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, TEXT_PROMPT.replace("  template:", "  name: bot\n  template:"))
    (at, message) = only_error(tmp_path)
    assert at == ("prompt.yaml", 6, 3, "spec.name")
    assert message.startswith("'bot' is the registered model of agent 'bot' (")
    assert "MLflow keeps models and prompts in one namespace" in message


def test_an_agent_s_registered_model_may_not_be_a_prompt_s_name(tmp_path: Path) -> None:
    write_repo(tmp_path, TEXT_PROMPT, "a.yaml")
    (tmp_path / "support-system.txt").write_text(TEXT_TEMPLATE)
    (tmp_path / "bot.yaml").write_text(
        GOOD.replace("spec:\n", "spec:\n  registeredModel: support-system\n")
    )
    (at, message) = only_error(tmp_path)
    assert at == ("bot.yaml", 6, 3, "spec.registeredModel")
    assert message.startswith("registered model 'support-system' is the name of prompt ")


# -- agents' bindings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        ("support-system@prodction",
         "binding 'system': prompt 'support-system' declares no alias 'prodction'; did you mean "
         "'production'?"),
        ("support-system@canary",
         "binding 'system': prompt 'support-system' declares no alias 'canary' (declared: "
         "production, stable)"),
        ("support-system/4",
         "binding 'system': prompt 'support-system' declares no version 4 in spec.versions "
         "(declared numbers: 3; bind an alias to follow the template)"),
    ],
)  # fmt: skip
def test_a_binding_to_a_declared_prompt_names_its_alias_or_version(
    tmp_path: Path, binding: str, message: str
) -> None:
    write_prompt_repo(tmp_path, agent=BOUND_AGENT.replace("support-system@production", binding))
    (at, got) = only_error(tmp_path)
    assert at == ("bot.yaml", 7, 5, "spec.prompts.system")
    assert got == message
    desired, _ = load(tmp_path, partial=True)
    assert desired.agents == ()
    assert [p.name for p in desired.prompts] == ["support-system"]


@pytest.mark.parametrize("binding", ["support-system/3", "support-system@stable", "elsewhere@prod"])
def test_bindings_that_load(tmp_path: Path, binding: str) -> None:
    """A declared alias or version; a prompt not declared here is the planner's to check."""
    write_prompt_repo(tmp_path, agent=BOUND_AGENT.replace("support-system@production", binding))
    desired, _ = load(tmp_path)
    assert [b.ref for b in desired.agents[0].bindings] == [binding]


def test_a_binding_of_the_wrong_form_is_a_schema_error_at_its_line(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path, agent=BOUND_AGENT.replace("@production", ":production"))
    (at, message) = only_error(tmp_path)
    assert at == ("bot.yaml", 7, 5, "spec.prompts.system")
    assert message == (
        "a prompt binding is <prompt>@<alias> or <prompt>/<version> (e.g. "
        "support-system@production, support-system/3) (got 'support-system:production')"
    )


def test_schema_errors_are_explained_and_the_template_still_checked(tmp_path: Path) -> None:
    prompt = TEXT_PROMPT.replace("[customer, question]", "[customer, 2question]\n  name: a b")
    write_prompt_repo(tmp_path, prompt.replace("support-system.txt", "missing.txt"),
                      agent=BOUND_AGENT.replace("system:", "1system:"))  # fmt: skip
    got = [(*where(e), e.message) for e in errors_of(tmp_path)]
    assert got == [
        ("bot.yaml", 7, 5, "spec.prompts.1system",
         "a binding's name (the key the agent's code reads) may contain only letters, digits, "
         "'_' and '-', starting with a letter or '_' (got '1system')"),
        ("prompt.yaml", 6, 3, "spec.template",
         f"template 'missing.txt' ({os.path.relpath(tmp_path / 'prompts' / 'missing.txt')}) "
         "does not exist"),
        ("prompt.yaml", 7, 25, "spec.variables[1]",
         "a variable is a name of letters, digits and '_' (not starting with a digit), or "
         "dotted names such as user.name (got '2question')"),
        ("prompt.yaml", 8, 3, "spec.name",
         "a prompt name may contain only letters, digits, '_', '-' and '.' (got 'a b')"),
    ]  # fmt: skip


def test_a_template_symlinked_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "secret.txt").write_text("{{ customer }} {{ question }}\n")
    write_prompt_repo(repo)
    (repo / "prompts" / "support-system.txt").unlink()
    (repo / "prompts" / "support-system.txt").symlink_to(tmp_path / "secret.txt")
    (at, message) = only_error(repo)
    assert at == ("prompt.yaml", 6, 3, "spec.template")
    assert "outside the repository root" in message


def test_a_binding_is_not_checked_against_aliases_a_repair_dropped(tmp_path: Path) -> None:
    """The prompt's aliases are in error already: the binding is not reported as well."""
    prompt = TEXT_PROMPT.replace("    stable: 3\n", "    stable: 3\n    bad alias: current\n")
    write_prompt_repo(tmp_path, prompt, agent=BOUND_AGENT.replace("@production", "@nowhere"))
    (at, message) = only_error(tmp_path)
    assert at == ("prompt.yaml", 12, 5, "spec.aliases.bad alias")
    assert message == "an alias may contain only letters, digits, '_' and '-' (got 'bad alias')"


@pytest.mark.parametrize(
    ("config", "at", "says"),
    [
        ("greeting: hi\nprompts: [system]\n", ("config.yaml", 2, 10, "prompts"), "not a list"),
        ("prompts: just text\n", ("config.yaml", 1, 10, "prompts"), "'prompts' must be a mapping"),
        ("- a list\n", ("config.yaml", 1, 1, ""), "the config must be a mapping, not a list"),
        (
            "b: &b {prompts: 3}\n<<: *b\n",
            ("config.yaml", 1, 1, "prompts"),
            "must be a mapping, not a number",
        ),
        ("a: 1\n---\nb: 2\n", ("config.yaml", 1, 1, ""), "one YAML document (it holds 2)"),
        ("prompts: !foo {}\n", ("config.yaml", 1, 10, ""), "cannot be read"),
    ],
)
def test_a_bound_agent_s_config_that_cannot_take_the_pins_is_an_error_at_its_line(
    tmp_path: Path, config: str, at: Where, says: str
) -> None:
    write_prompt_repo(tmp_path, agent=BOUND_AGENT)
    (tmp_path / "config.yaml").write_text(config)
    (where_, message) = only_error(tmp_path)
    assert where_ == at
    assert says in message


@pytest.mark.parametrize(
    "config",
    ["", "greeting: hi\nprompts:\n", "prompts: {user: x}\n", "prompts: []\n", "prompts: ''\n"],
)
def test_a_bound_agent_s_config_that_can_take_the_pins_loads(tmp_path: Path, config: str) -> None:
    write_prompt_repo(tmp_path, agent=BOUND_AGENT)
    (tmp_path / "config.yaml").write_text(config)
    _, diags = load(tmp_path)
    assert not diags.errors


def test_an_unbound_agent_s_config_need_not_be_a_mapping(tmp_path: Path) -> None:
    write_prompt_repo(tmp_path)
    (tmp_path / "config.yaml").write_text("prompts: [system]\n")
    _, diags = load(tmp_path)
    assert not diags.errors
