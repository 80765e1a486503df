"""The pieces of the help layout: wrapping that never cuts a word, a command's first sentence."""

from __future__ import annotations

from controller.app.helptext import first_sentence, wrap


def test_wrap_breaks_at_spaces_only_never_at_a_hyphen_or_inside_a_word() -> None:
    text = "plan --detailed-exitcode returns 2 [default: no-allow-empty] sqlite:///mlflow.db"
    lines = wrap(text, 12)
    assert "--detailed-exitcode" in lines and "no-allow-empty]" in lines
    assert "sqlite:///mlflow.db" in lines  # longer than the width: on a line of its own, whole
    assert " ".join(lines) == text


def test_wrap_keeps_paragraphs_apart() -> None:
    assert wrap("one two\n\nthree", 80) == ["one two", "", "three"]


def test_first_sentence_ends_at_the_first_full_stop_followed_by_a_space() -> None:
    assert first_sentence("Show what apply would change. Never runs agent code.") == (
        "Show what apply would change."
    )
    assert first_sentence("Reads sqlite:///mlflow.db (v1.2) and\nwrites.\n\nMore.") == (
        "Reads sqlite:///mlflow.db (v1.2) and writes."
    )
    assert first_sentence("No full stop") == "No full stop"
