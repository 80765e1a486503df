"""A text template's placeholders: what does not parse (at its offset), the variables used (first
use of each), and offsets as line and column."""

from __future__ import annotations

import pytest

from controller.core.prompt.template import Use, line_column, syntax_problems, variable_uses


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no placeholders",
        "Hi {{ name }}, {{a.b}} and {{x_1}}",
        "{ single } braces }}",
        "{{{x}}}",
    ],
)
def test_texts_that_parse(text: str) -> None:
    assert syntax_problems(text) == []


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("Hi {{ name", 3, "'{{' without its closing '}}'"),
        ("Hi {{ 1st }}", 3, "'{{ 1st }}' is not a variable"),
        ("{{ a b }}", 0, "'{{ a b }}' is not a variable"),
        ("{{}}", 0, "'{{}}' is not a variable"),
        ("x {% if a %}y{% endif %}", 2, "a Jinja2 block ('{%')"),
    ],
)
def test_texts_that_do_not_parse(text: str, offset: int, fragment: str) -> None:
    [(at, message)] = syntax_problems(text)
    assert at == offset
    assert fragment in message


def test_a_long_placeholder_is_shortened_in_the_message() -> None:
    [(_, message)] = syntax_problems("{{ " + "x " * 100 + "}}")
    assert "...}}'" in message and len(message) < 200


def test_every_problem_is_found() -> None:
    text = "{{ 1 }} {{ ok }} {{ 2 }} {{ open"
    assert [at for at, _ in syntax_problems(text)] == [0, 17, 25]


def test_variable_uses_first_of_each_in_order() -> None:
    text = "{{ b }} {{a}} {{ b }} {{ c.d }}"
    assert variable_uses(text) == [
        Use("b", 0, "{{ b }}"),
        Use("a", 8, "{{a}}"),
        Use("c.d", 22, "{{ c.d }}"),
    ]


def test_line_column() -> None:
    text = "ab\ncd\n\nef"
    assert [line_column(text, i) for i in (0, 1, 3, 4, 7, 8)] == [
        (1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)
    ]  # fmt: skip
