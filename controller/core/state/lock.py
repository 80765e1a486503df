"""The registry lock's record: who holds it, since when, until when. Pure data: no I/O, no clock.

One lock per owner (``--owner``): a registered model named :func:`lock_model` whose existence is
the lock and whose tags are the record. MLflow's REST API has no compare-and-set, but creating a
registered model is exclusive (a second create of the same name is ``RESOURCE_ALREADY_EXISTS``),
and so is renaming one onto a name that exists. Taking over an expired lock renames it to
:func:`expired_model` (a name unique to the expired record's id): of two applies that both saw
it expire, only one rename succeeds, and the other starts again from the create. The model
carries no ``agentctl.io/owner`` tag, so it is never planned, pruned or shown by ``status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["EXPIRES_TAG", "LOCK_PREFIX", "LockRecord", "expired_model", "lock_model"]

LOCK_PREFIX = "agentctl-lock."

_ID = "agentctl.io/lock.id"
_HOLDER = "agentctl.io/lock.holder"
_ACQUIRED = "agentctl.io/lock.acquired"
_EXPIRES = "agentctl.io/lock.expires"
_OWNER = "agentctl.io/lock.owner"
#: The tag a holder renews.
EXPIRES_TAG = _EXPIRES


def lock_model(owner: str) -> str:
    """The registered model that is ``owner``'s lock."""
    return f"{LOCK_PREFIX}{owner}"


def expired_model(owner: str, lock_id: str) -> str:
    """Where a taken-over lock is moved: one name per expired record, so one taker wins."""
    return f"{LOCK_PREFIX}{owner}.expired-{lock_id}"


@dataclass(frozen=True, slots=True)
class LockRecord:
    lock_id: str
    owner: str
    holder: str  # host:pid
    acquired: float  # Unix seconds
    expires: float  # Unix seconds, by the holder's clock

    def expired(self, now: float) -> bool:
        return now >= self.expires

    def to_tags(self) -> dict[str, str]:
        return {
            _ID: self.lock_id,
            _OWNER: self.owner,
            _HOLDER: self.holder,
            _ACQUIRED: f"{self.acquired:.3f}",
            _EXPIRES: f"{self.expires:.3f}",
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> LockRecord | None:
        """The record, or None for tags that are not one (a half-written or foreign model)."""
        try:
            return cls(
                lock_id=tags[_ID],
                owner=tags.get(_OWNER, ""),
                holder=tags.get(_HOLDER, "?"),
                acquired=float(tags[_ACQUIRED]),
                expires=float(tags[_EXPIRES]),
            )
        except (KeyError, ValueError):
            return None
