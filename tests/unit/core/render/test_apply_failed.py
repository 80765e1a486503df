"""A failed apply reads right: the error first, with how many changes were made, never "Apply
complete"."""

from __future__ import annotations

from controller.core.plan.changeset import ChangeSet, Entry, Verb
from controller.core.render.formats import render_apply_failed


def test_the_error_comes_first_with_the_count_of_changes_made() -> None:
    done = ChangeSet((
        Entry("summarizer.registered_model", Verb.CREATED, "summarizer"),
        Entry("summarizer.tags", Verb.UNCHANGED),
        Entry("bot.registered_model", Verb.CONFIGURED, "tags"),
    ))  # fmt: skip
    text = render_apply_failed(done, "summarizer.model_version.current: agent.py:3: in <module>: "
                               "ZeroDivisionError: division by zero")  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == (
        "Apply failed after 2 changes: summarizer.model_version.current: agent.py:3: in "
        "<module>: ZeroDivisionError: division by zero"
    )
    assert "  summarizer.registered_model: created (summarizer)" in lines
    assert "Apply complete" not in text
    assert "next apply finishes the work" in lines[-1]


def test_nothing_done_says_so() -> None:
    text = render_apply_failed(ChangeSet(), "x: boom")
    assert text.splitlines() == ["Apply failed after 0 changes: x: boom", "Nothing was applied."]


def test_one_change_is_singular_and_secrets_are_redacted() -> None:
    done = ChangeSet((Entry("a.registered_model", Verb.CREATED, "a"),))
    text = render_apply_failed(done, "http://user:hunter2@127.0.0.1:5000 refused")
    assert text.startswith("Apply failed after 1 change: ")
    assert "hunter2" not in text
