"""A new prompt version in the plan: a unified diff of its template against the version it
follows, with secret-looking values of its model config hidden, and a line that says so when
only line endings differ (the diff itself is empty then)."""

from __future__ import annotations

from dataclasses import replace

from controller.core.plan.changes import PromptVersionCreate
from controller.core.prompt.content import PromptContent
from controller.core.render.formats import prompt_diff
from controller.core.secrets import REDACTED


def _new(text: str, base: str | None, model_config: dict | None = None) -> PromptVersionCreate:
    return PromptVersionCreate(
        PromptContent("text", text, None, model_config),
        "prompts/p.txt",
        {},
        base=1 if base is not None else None,
        base_content=PromptContent("text", base) if base is not None else None,
    )


def test_an_edit_is_a_unified_diff_against_the_version_it_follows() -> None:
    assert prompt_diff(_new("Hello {{name}}.\nBye.\n", "Hi {{name}}.\nBye.\n"), "p") == [
        "--- p version 1",
        "+++ p (prompts/p.txt)",
        "@@ -1,2 +1,2 @@",
        "-Hi {{name}}.",
        "+Hello {{name}}.",
        " Bye.",
    ]


def test_a_first_version_is_all_added_lines() -> None:
    assert prompt_diff(_new("One.\nTwo.", None), "p")[:2] == [
        "--- /dev/null",
        "+++ p (prompts/p.txt)",
    ]
    assert prompt_diff(_new("One.\nTwo.", None), "p")[-2:] == ["+One.", "+Two."]


def test_secret_values_of_the_model_config_and_the_text_are_hidden() -> None:
    config = {"provider": "openai", "extra_params": {"api_key": "sk-live-1234567890abcdef"}}
    lines = prompt_diff(_new("Use password: hunter2 to log in.\n", "Hi.\n", config), "p")
    shown = "\n".join(lines)
    assert "sk-live" not in shown and "hunter2" not in shown
    assert f'+    "api_key": "{REDACTED}"' in lines
    assert f"+Use password: {REDACTED} to log in." in lines
    assert '+  "provider": "openai"' in lines


def test_a_change_of_line_endings_only_says_so() -> None:
    assert prompt_diff(_new("Hi.\r\nBye.\r\n", "Hi.\nBye."), "p") == [
        "(the template differs only in line endings, its final newline or fields not shown)"
    ]


def test_a_change_of_a_hidden_value_only_says_so() -> None:
    new = _new("Hi.", None, {"extra_params": {"api_key": "sk-new-1234567890"}})
    old = PromptContent("text", "Hi.", None, {"extra_params": {"api_key": "sk-old-1234567890"}})
    assert prompt_diff(replace(new, base=1, base_content=old), "p") == [
        "(only values hidden as secrets differ)"
    ]
