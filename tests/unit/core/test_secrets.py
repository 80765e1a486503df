"""Secrets: redaction as it was on ordinary text, linear on hostile text; URIs without user info;
JSON documents redacted by key as the text formats are."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.core.secrets import (
    REDACTED,
    redact,
    redact_lines,
    redact_prose,
    redact_text,
    redact_tree,
    secret_paths,
    without_credentials,
)

# The user-info pattern as it was (it backtracks: quadratic in a long word), for the table.
_OLD_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def _old_userinfo(text: str) -> str:
    return _OLD_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


ORDINARY = [
    "http://user:pw@host",
    "https://alice:s3cret@mlflow.example.com:5000/api?x=1",
    "postgresql+psycopg2://u:p@db:5432/mlflow",
    "see http://u:p@a/ and ftp://x@b/c, then s3://bucket/key",
    "x1http://u@h",
    "1+.-a://u@h",
    "+http://u@h",
    "HTTP://User:Pw@Host",
    "mailto:someone@example.com",
    "no scheme user:pw@host",
    "http://host/path@not-userinfo",
    "http://u p@host",
    "a://b://c@d",
    "http://@host",
    "http://u:p@h1 http://v:q@h2",
    "git+ssh://git@github.com/o/r.git",
    "models:/bot@champion",
    "",
    "plain text without anything",
    "ünïcödé://u@h and ü://u@h",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_user_info_is_redacted_as_before_on_ordinary_text(text: str) -> None:
    expected = _old_userinfo(text)
    got = redact_text(text)
    # The other patterns do not touch these inputs: the whole redaction equals the old step.
    assert got == expected, (text, got, expected)


@pytest.mark.timeout(60)  # a guard against a hang, not a measurement (see bench/redaction.py)
@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 1_000_000,
        "a://" + "b" * 1_000_000,
        "a://" * 250_000,
        "a.b-c+d1" * 125_000,
        "x" * 500_000 + "://" + "u" * 500_000,
        ("http://u:p@h " * 77_000),
    ],
    ids=["word", "scheme-then-word", "schemes", "scheme-chars", "half-half", "many-urls"],
)
def test_a_megabyte_of_hostile_text_is_redacted_and_right(hostile: str) -> None:
    out = redact_text(hostile)
    if "@" in hostile:
        assert "u:p@" not in out and out.count(REDACTED) == hostile.count("u:p@")
    else:
        assert out == hostile


def test_a_megabyte_description_with_a_credential_at_the_end() -> None:
    text = "word " * 200_000 + "http://user:hunter2@h/"
    assert redact("description", text).endswith(f"http://{REDACTED}@h/")


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://u:p@127.0.0.1:5000/x", "http://127.0.0.1:5000/x"),
        ("https://mlflow.example", "https://mlflow.example"),
        ("http://tok@h", "http://h"),
        ("http://a@b@h:1/p@q", "http://h:1/p@q"),
        ("postgresql://u:pw@db/mlflow?password=x", f"postgresql://db/mlflow?password={REDACTED}"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("databricks", "databricks"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://u:p@[::1", "http://[::1"),
    ],
)
def test_a_uri_is_shown_without_its_credentials(uri: str, shown: str) -> None:
    assert without_credentials(uri) == shown


def test_a_json_document_is_redacted_by_key_as_text_is() -> None:
    doc: dict[str, Any] = {
        "changes": [
            {
                "address": "bot.tags.api_token",
                "after": {
                    "tags": {"api_token": "tok-1", "team": "search", "db.password": "x"},
                    "description": "see https://u:hunter2@h/ or password=hunter2",
                },
            }
        ],
        "count": 3,
    }
    out = redact_tree(doc)
    after = out["changes"][0]["after"]
    assert after["tags"] == {"api_token": REDACTED, "team": "search", "db.password": REDACTED}
    assert "hunter2" not in str(out) and out["count"] == 3
    assert out["changes"][0]["address"] == "bot.tags.api_token"
    assert secret_paths(doc) == [
        "changes[0].after.tags.api_token",
        "changes[0].after.tags.db.password",
        "changes[0].after.description",
    ]
    assert secret_paths(out) == []


def test_a_password_holding_an_at_sign_is_redacted_whole() -> None:
    """requests splits user info at the last @ before the host: so does the redaction."""
    from controller.core.secrets import redact_text, without_credentials

    text = "API request to http://user:p@ss@host:5000/api failed"
    assert redact_text(text) == "API request to http://(redacted)@host:5000/api failed"
    assert "ss@" not in redact_text(text)
    assert without_credentials("http://user:p@ss@host:5000/api") == "http://host:5000/api"


@pytest.mark.parametrize(
    "prose",
    [
        "while scanning for the next token found character '\\t' that cannot start any token",
        "Basic usage: agentctl validate manifests/",
        "Bearer of bad news",
        "Token expired; log in again",
        "token found\nError: m/c.yaml:4:15: spec.tags.a: expected a string",
        "Bearer tokens, Basic auth and Token headers are redacted",
    ],
)
def test_prose_that_names_a_scheme_is_left_alone(prose: str) -> None:
    assert redact_text(prose) == prose


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", f"Bearer {REDACTED}"),
        ("call with Bearer eyJhbGciOi... now", f"call with Bearer {REDACTED} now"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
        ('{"authorization": "Bearer secret"}', f'{{"authorization": "Bearer {REDACTED}"}}'),
        ("Authorization: Token abc", f"Authorization: Token {REDACTED}"),
        ("Token 0123abcd4567", f"Token {REDACTED}"),
        ("basic dXNlcjpwYXNz", f"basic {REDACTED}"),
    ],
)
def test_a_scheme_followed_by_a_credential_is_redacted(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_a_scheme_never_takes_the_next_line() -> None:
    text = "Bearer\nabc123def456\nError: next"
    assert redact_text(text) == text


def test_redact_lines_redacts_each_line_on_its_own() -> None:
    text = "Error: a.yaml:1:1: Bearer abc.def-123\nError: b.yaml:2:1: password=x\n"
    assert redact_lines(text) == (
        f"Error: a.yaml:1:1: Bearer {REDACTED}\nError: b.yaml:2:1: password={REDACTED}\n"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("password: hunter2", f"password: {REDACTED}"),
        ("DB_PASSWORD: hunter2", f"DB_PASSWORD: {REDACTED}"),
        ("client_secret:abc123", f"client_secret:{REDACTED}"),
        ('{"api_key": "sk-live-1234"}', f'{{"api_key": "{REDACTED}"}}'),
        ("password: 'two words9'", f"password: '{REDACTED}'"),
        ("If asked for a password: explain the reset link.", None),
        ("auth: SSO only", None),
        ("Print the token: {{ token }}", None),
        ("secret:\n  name: x", None),
    ],
)
def test_prose_hides_secret_pairs_whose_value_looks_like_a_credential(
    text: str, shown: str | None
) -> None:
    assert redact_prose(text) == (text if shown is None else shown)


@pytest.mark.parametrize(
    "text", ["auth: (x) candidate failed", "password: hunter2", "token: abc1234"]
)
def test_errors_and_logs_keep_their_words_after_a_colon(text: str) -> None:
    """Only ``key=value`` pairs are hidden in messages: ``auth`` may be an agent's name."""
    assert redact_text(text) == text


def test_prose_redaction_is_linear() -> None:
    text = "a" * 1_000_000 + ": x"
    assert redact_prose(text) == text
