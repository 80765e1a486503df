"""What promotion records on model versions, as registry tags: the one reader and writer of them.
Pure.

- ``agentctl.io/promoted-from``: on a copy, the version it was copied from
  (``models:/<model>/<version>``; MLflow's own copy puts the same URI in its source);
- ``agentctl.io/promoted-from-registry``: on a copy made from another registry (the environment
  before lives on another tracking server or in another MLflow workspace), where that is;
- ``agentctl.io/aliased-at.<alias>``: when agentctl last moved ``<alias>`` to the version
  (ISO 8601, UTC): the start of a soak, and the history's alias moves;
- ``agentctl.io/approval.<env>``: ``Approved`` or ``Rejected`` for environment ``<env>``, on the
  version to promote (Databricks' deployment jobs mark an approval the same way: a version tag
  whose value is ``Approved``); ``.by`` and ``.at`` beside it say who and when.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.state.observed import LOGGED_MODEL_TAG, logged_model_of

__all__ = [
    "APPROVED",
    "PROMOTED_FROM_REGISTRY_TAG",
    "PROMOTED_FROM_TAG",
    "REJECTED",
    "Approval",
    "aliased_at",
    "aliased_at_tag",
    "aliases_moved",
    "approval_of",
    "approval_tags",
    "copied_tags",
    "iso",
    "kept_in_copy",
    "model_uri",
    "parse_iso",
]

PROMOTED_FROM_TAG = "agentctl.io/promoted-from"
PROMOTED_FROM_REGISTRY_TAG = "agentctl.io/promoted-from-registry"
_ALIASED_AT = "agentctl.io/aliased-at."
_APPROVAL = "agentctl.io/approval."
APPROVED = "Approved"
REJECTED = "Rejected"


_ATTEMPT = "agentctl.io/create-attempt"


def kept_in_copy(key: str) -> bool:
    """Whether a promotion copies the tag ``key`` to the new version: all but what records one
    environment's history (alias moves, approvals for an environment), the create attempt of
    the version it was logged as and where its own copy came from; the evaluation verdict, digest and commit travel with it."""
    return key not in (_ATTEMPT, PROMOTED_FROM_REGISTRY_TAG) and not key.startswith(
        (_ALIASED_AT, _APPROVAL)
    )


def copied_tags(tags: Mapping[str, str], source: str) -> dict[str, str]:
    """The tags a copy of the version with ``tags`` and ``source`` starts from: those
    :func:`kept_in_copy`, and the logged model behind it (its ``models:/m-...`` source, or the one
    a copy it was made from names), by which traces and gc find the logged model of a copy."""
    out = {k: v for k, v in tags.items() if kept_in_copy(k)}
    logged = logged_model_of(source) or out.get(LOGGED_MODEL_TAG)
    if logged:
        out[LOGGED_MODEL_TAG] = logged
    return out


def model_uri(model: str, version: int) -> str:
    return f"models:/{model}/{version}"


def iso(epoch: float) -> str:
    """``epoch`` (seconds) as ISO 8601 UTC, to the second: ``2026-12-02T01:05:53Z`` (computed
    here: the core reads no clock and no time zone database)."""
    days, secs = divmod(int(epoch), 86400)
    y, m, d = _civil(days)
    return f"{y:04d}-{m:02d}-{d:02d}T{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}Z"


def parse_iso(text: str | None) -> float | None:
    """The epoch seconds of an :func:`iso` value; None if absent or unreadable."""
    m = _ISO.match(text or "")
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        return None
    return float(_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)


_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$")


def _days(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil(days: int) -> tuple[int, int, int]:
    """The date ``days`` after 1970-01-01 (H. Hinnant's civil_from_days)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def aliased_at_tag(alias: str) -> str:
    return _ALIASED_AT + alias


def aliases_moved(tags: Mapping[str, str]) -> list[str]:
    """The aliases agentctl recorded moving to the version with ``tags``."""
    return sorted(k.removeprefix(_ALIASED_AT) for k in tags if k.startswith(_ALIASED_AT))


def aliased_at(tags: Mapping[str, str], alias: str) -> float | None:
    """When agentctl last moved ``alias`` to the version with ``tags`` (None: no record)."""
    return parse_iso(tags.get(aliased_at_tag(alias)))


@dataclass(frozen=True, slots=True)
class Approval:
    """A decision on a version for an environment."""

    approved: bool
    by: str
    at: float | None

    @property
    def word(self) -> str:
        return "approved" if self.approved else "rejected"


def approval_tags(env: str, approved: bool, by: str, at: float) -> dict[str, str]:
    """The tags that record a decision, in the order they are written (the decision last: a
    crash before it leaves no decision)."""
    key = _APPROVAL + env
    return {f"{key}.by": by, f"{key}.at": iso(at), key: APPROVED if approved else REJECTED}


def approval_of(tags: Mapping[str, str], env: str) -> Approval | None:
    """The decision recorded on a version for ``env``; None if there is none (a value other
    than Approved or Rejected, case aside, is none)."""
    key = _APPROVAL + env
    value = (tags.get(key) or "").strip().lower()
    if value not in (APPROVED.lower(), REJECTED.lower()):
        return None
    return Approval(
        value == APPROVED.lower(), tags.get(f"{key}.by", ""), parse_iso(tags.get(f"{key}.at"))
    )
