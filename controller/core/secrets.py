"""What looks like a secret, and the one place it is taken out of what agentctl shows. Pure:
functions of strings and plain data.

* :func:`without_credentials` names a URI without its user info (``http://user:pw@host`` ->
  ``http://host``): how a tracking URI is shown in messages and logs, and recorded in a saved
  plan.
* :func:`redact_text` hides what looks like a secret in free text: URL user info, bearer tokens,
  ``password=`` pairs and well-known token shapes; no pattern crosses a line, and
  :func:`redact_lines` redacts text of many lines one line at a time.
* :func:`redact` also hides every value of a secret-sounding key (``api_token``, ``dbDsn``);
  :func:`redact_tree` does so through the dicts and lists of a JSON document.

Every pattern runs in time linear in its input: each is anchored so that the regex engine tries
a given run of characters once (a lookbehind keeps a scheme from being retried at every letter
of a long word, possessive quantifiers keep a failed run from being re-split), so a megabyte of
hostile text is redacted in milliseconds.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

__all__ = [
    "REDACTED",
    "redact",
    "redact_lines",
    "redact_prose",
    "redact_text",
    "redact_tree",
    "secret_key",
    "secret_paths",
    "without_credentials",
]

REDACTED = "(redacted)"

_SECRET_WORDS = {
    "secret", "secrets", "token", "tokens", "password", "passwd", "pwd", "passphrase", "auth",
    "authorization", "bearer", "credential", "credentials", "dsn", "cookie", "session", "apikey",
    "signature",
}  # fmt: skip
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("client", "secret")}
# ``scheme://userinfo@``. A scheme is the run of scheme characters before ``://`` from its
# first letter on; the lookbehind starts a try only where such a run starts (the characters
# before its first letter are kept in ``pre``), so no run is scanned twice. User info ends at the
# last ``@`` before the host (a password may hold one, as requests reads it).
_USERINFO = re.compile(
    r"(?<![a-z0-9+.-])(?P<pre>[0-9+.-]*+)(?P<scheme>[a-z][a-z0-9+.-]*+://)[^/@\s]++@(?:[^/@\s]*+@)*+",
    re.I,
)
_TOKEN = re.compile(r"\b(ghp_|gho_|ghs_|github_pat_|sk-|xox[abp]-|AKIA)[A-Za-z0-9_\-]{8,}")
# An HTTP authentication scheme and its credentials (``Bearer eyJ...``, ``Basic dXNlcjpwYXNz``):
# on one line, the value a run of token68 characters; whether it is a credential is judged by
# :func:`_scheme_credential` (prose such as "token found" or "Bearer of bad news" is left alone).
_BEARER = re.compile(
    r"\b(?P<scheme>Bearer|Basic|Token)[ \t]++(?P<value>[A-Za-z0-9._~+/=\-]++)", re.I
)
# What an ``Authorization`` header's value follows: ``Authorization: ``, ``"authorization": "``.
_AUTHORIZATION = re.compile(r"authorization[\"']?[ \t]*+[:=][ \t]*+[\"']?$", re.I)
#: A credential is at least this long, unless an Authorization header names it.
_MIN_CREDENTIAL = 6
_MARKS = re.compile(r"[0-9._~+/=\-]|[a-z][A-Z]")
_KV = re.compile(
    r"\b(password|passwd|pwd|token|secret|api[-_]?key|access[-_]?key|auth)=([^&\s;,]+)", re.I
)


def secret_key(key: str) -> bool:
    """A key whose values are secrets: ``tags.api_token``, ``dbDsn``, ``clientSecret``. The last
    dotted part of a field path counts, or the whole tag key after ``tags.``."""
    last = key.rsplit(".", 1)[-1] if not key.startswith("tags.") else key[len("tags.") :]
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", last).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", snake) if w]
    return any(w in _SECRET_WORDS for w in words) or any(
        pair in _SECRET_PAIRS for pair in pairwise(words)
    )


def redact_text(text: str) -> str:
    """``text`` with URL user info, bearer tokens, ``password=`` values and token shapes
    replaced by ``(redacted)``."""
    text = _USERINFO.sub(lambda m: f"{m.group('pre')}{m.group('scheme')}{REDACTED}@", text)
    text = _BEARER.sub(_scheme_credential, text)
    text = _KV.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _TOKEN.sub(REDACTED, text)


# ``key: value`` in free text (a template), the key a run of key characters (possessive: each
# run is tried once), optionally quoted, the value a quoted string or a run up to a delimiter.
_PAIR = re.compile(
    r"(?<![\w.-])(?P<key>[\w.-]++)(?P<sep>[\"']?[ \t]*+:[ \t]*+)"
    r"(?P<value>\"[^\"\n]*+\"|'[^'\n]*+'|[^\s\"',;&]++)"
)


def redact_prose(text: str) -> str:
    """:func:`redact_text`, and for free text that may hold configuration (a prompt template)
    ``key: value`` pairs too, where the key sounds secret (``password``, ``DB_PASSWORD``,
    ``"api_key"``, ``clientSecret``) and the value looks like a credential (as for a bearer
    token: long enough, with a digit, a token68 mark or a change of case), so that prose such as
    "asked for a password: explain the reset link" is left alone."""

    def pair(m: re.Match[str]) -> str:
        value = m.group("value")
        quoted = value[:1] in ("'", '"')
        if not secret_key(m.group("key")) or not _credential(value[1:-1] if quoted else value):
            return m.group(0)
        shown = f"{value[0]}{REDACTED}{value[0]}" if quoted else REDACTED
        return f"{m.group('key')}{m.group('sep')}{shown}"

    return _PAIR.sub(pair, redact_text(text))


def _credential(value: str) -> bool:
    return len(value) >= _MIN_CREDENTIAL and _MARKS.search(value) is not None


def redact_lines(text: str) -> str:
    """:func:`redact_text` line by line: what one line holds never runs into the next."""
    return "".join(redact_text(line) for line in text.splitlines(keepends=True))


def _scheme_credential(m: re.Match[str]) -> str:
    """``Bearer (redacted)`` where the value looks like a credential: it follows an
    ``Authorization`` header, or it is long enough and holds a digit, a token68 mark
    (``. _ ~ + / = -``) or a change of case inside a word (base64); else the text as it was."""
    value = m.group("value")
    header = _AUTHORIZATION.search(m.string, max(0, m.start() - 40), m.start()) is not None
    credential = header or _credential(value)
    return f"{m.group('scheme')} {REDACTED}" if credential else m.group(0)


def redact(key: str, value: Any) -> Any:
    """Hide what looks like a secret: values of secret-sounding keys (``api_token``, ``dbDsn``),
    URL credentials, bearer tokens, ``password=`` pairs and well-known token shapes."""
    if isinstance(value, str):
        return REDACTED if secret_key(key) else redact_text(value)
    if isinstance(value, list):
        return [redact(key, v) for v in value]
    return value


def redact_tree(value: Any, key: str = "") -> Any:
    """A JSON document with :func:`redact` applied to every string, each judged by the key it is
    under (a tag by its whole key: ``{"tags": {"db.password": ...}}`` is a secret)."""
    if isinstance(value, dict):
        return {k: redact_tree(v, _member(key, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v, key) for v in value]
    return redact(key, value)


def secret_paths(value: Any, path: str = "", key: str = "") -> list[str]:
    """Where in a JSON document :func:`redact_tree` would hide something
    (``changes[0].after.tags.api_token``): what a file that must hold values as they are would
    carry in clear."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += secret_paths(v, f"{path}.{k}" if path else str(k), _member(key, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found += secret_paths(v, f"{path}[{i}]", key)
    elif redact(key, value) != value:
        found.append(path)
    return found


def _member(parent: str, name: object) -> str:
    return f"tags.{name}" if parent == "tags" else str(name)


def without_credentials(uri: str) -> str:
    """``uri`` without its user info (``http://user:pw@host`` -> ``http://host``), the rest of
    it redacted as text (a ``?password=`` in a database URI)."""
    scheme, sep, rest = uri.partition("://")
    if sep:
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        authority = rest[:end]
        if "@" in authority:
            uri = scheme + sep + authority.rpartition("@")[2] + rest[end:]
    return redact_text(uri)
