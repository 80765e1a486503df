"""The registry lock that CLI applies take before their first write, as Terraform locks its state.

One lock per owner (the record: :mod:`controller.core.state.lock`). :class:`RegistryLock` takes
it by creating the lock model (exclusive), waits up to ``timeout`` seconds while another holds
it, then raises :class:`LockHeld` naming the holder and since when. A lock past its expiry, or
whose holder is a process of this host that is gone (a killed apply), is taken over by renaming
it to a name unique to its id: of two takers one rename succeeds, the other creates in vain and
waits. While held, a thread renews the expiry every third of ``ttl``; leaving the ``with`` block
(Ctrl-C too) deletes it. :func:`force_unlock` deletes a lock by its id. The lock model also says
which agentctl wrote it (``agentctl.io/written-by``, when given ``written_by``), which no reader of
the record goes by.

The controller does not take it: it holds a Kubernetes Lease among its replicas, and an apply
beside it converges without a lock (:mod:`controller.engine.apply`, one version per digest).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from types import TracebackType

from controller.core.errors import AgentctlError, BackendError
from controller.core.state.lock import EXPIRES_TAG, LockRecord, expired_model, lock_model
from controller.core.state.observed import WRITTEN_BY_TAG
from controller.engine.retry import RetryPolicy
from controller.ports import Registry

__all__ = ["LockHeld", "RegistryLock", "force_unlock", "this_process"]

log = logging.getLogger(__name__)

#: Seconds a lock holds without renewal.
DEFAULT_TTL = 60.0


class LockHeld(AgentctlError):
    """Another apply holds the registry lock (or the lock to remove is not there)."""


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(holder: str) -> bool:
    """Whether the holder may still run: False only for a process of this host that is gone."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def describe(record: LockRecord) -> str:
    return (
        f"held by {record.holder} since {_when(record.acquired)} (lock ID {record.lock_id}, "
        f"expires {_when(record.expires)} unless renewed)"
    )


class RegistryLock:
    def __init__(
        self,
        registry: Registry,
        owner: str,
        *,
        timeout: float = 0.0,
        ttl: float = DEFAULT_TTL,
        policy: RetryPolicy | None = None,
        holder: str | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        alive: Callable[[str], bool] = _alive,
        written_by: str = "",
    ) -> None:
        self.registry, self.owner, self.timeout, self.ttl = registry, owner, timeout, ttl
        self.stamp = {WRITTEN_BY_TAG: written_by} if written_by else {}
        self.policy = policy or RetryPolicy()
        self.holder = holder or this_process()
        self.name = lock_model(owner)
        self._wall, self._monotonic, self._sleep, self._alive = wall, monotonic, sleep, alive
        self.record: LockRecord | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        #: set once the lock is known or feared lost: taken over, or not renewed before expiry
        self.lost = threading.Event()
        self._valid_until = 0.0

    # -- taking and giving back ----------------------------------------------------------------

    def acquire(self) -> LockRecord:
        r, call = self.registry, self.policy.call
        deadline = self._monotonic() + self.timeout
        while True:
            now = self._wall()
            mine = LockRecord(uuid.uuid4().hex[:16], self.owner, self.holder, now, now + self.ttl)
            tags_of_mine = {**mine.to_tags(), **self.stamp}
            if call(partial(r.create_lock, self.name, tags_of_mine)):
                self.record = mine
                self._start_renewing()
                return mine
            tags = call(lambda: r.read_lock(self.name))
            if tags is None:
                continue  # released meanwhile: create again
            current = LockRecord.from_tags(tags)
            if current is None:
                raise LockHeld(
                    f"registered model '{self.name}' exists but is not an agentctl lock record; "
                    "delete it, or use another --owner"
                )
            if current.lock_id == mine.lock_id:  # a create retried after a lost answer
                self.record = mine
                self._start_renewing()
                return mine
            if current.expired(now) or not self._alive(current.holder):
                # Exclusive: only one taker's rename succeeds; everyone then creates again.
                gone = expired_model(self.owner, current.lock_id)
                try:
                    call(partial(r.rename_lock, self.name, gone))
                except BackendError:
                    # A rename that lost the race to another taker is refused by some stores
                    # (MLflow's SQL store: "expected to update 1 row(s); 0 were matched")
                    # rather than answered "not found": if the stale record is no longer
                    # there, someone else moved it; look again.
                    if self._still(current):
                        raise
                continue
            left = deadline - self._monotonic()
            if left <= 0:
                raise LockHeld(
                    f"the registry lock of owner '{self.owner}' is {describe(current)}; "
                    f"gave up after {self.timeout:g} s (--lock-timeout). If that apply is no "
                    f"longer running: agentctl force-unlock {current.lock_id}"
                )
            self._sleep(min(1.0, left))

    def _still(self, record: LockRecord) -> bool:
        tags = self.policy.call(lambda: self.registry.read_lock(self.name))
        now = LockRecord.from_tags(tags) if tags is not None else None
        return now is not None and now.lock_id == record.lock_id

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        record, self.record = self.record, None
        if record is None or self.lost.is_set():
            return  # not ours any more, or perhaps not: leave it to expire
        try:
            tags = self.policy.call(lambda: self.registry.read_lock(self.name))
            current = LockRecord.from_tags(tags) if tags is not None else None
            if current is not None and current.lock_id == record.lock_id:
                self.policy.call(lambda: self.registry.delete_model(self.name))
        except BackendError as exc:  # it expires by itself
            log.warning("could not release the registry lock %s: %s", record.lock_id, exc)

    def __enter__(self) -> LockRecord:
        return self.acquire()

    def holds(self) -> bool:
        """Whether the lock is still this apply's: not taken over, renewed before it expired."""
        return self.record is not None and not self.lost.is_set()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- renewal -------------------------------------------------------------------------------

    def _start_renewing(self) -> None:
        self._stop.clear()
        self.lost.clear()
        self._valid_until = self.record.expires if self.record is not None else 0.0
        self._renewer = threading.Thread(target=self._renew_loop, name="lock-renew", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.policy.call(self.renew)
            except BackendError as exc:
                log.warning("could not renew the registry lock: %s", exc)
                if self._wall() >= self._valid_until - self.ttl / 6:
                    # Another apply may take it over from now on: stop writing.
                    self.lost.set()
            if self.lost.is_set():
                return

    def renew(self) -> None:
        """Push the expiry a ``ttl`` further, if the lock is still this one."""
        record = self.record
        if record is None:
            return
        tags = self.registry.read_lock(self.name)
        current = LockRecord.from_tags(tags) if tags is not None else None
        if current is None or current.lock_id != record.lock_id:
            log.warning("the registry lock %s was taken from this apply", record.lock_id)
            self.lost.set()
            return
        expires = self._wall() + self.ttl
        self.registry.set_model_tag(self.name, EXPIRES_TAG, f"{expires:.3f}")
        self._valid_until = expires


def force_unlock(
    registry: Registry, owner: str, lock_id: str, policy: RetryPolicy | None = None
) -> LockRecord:
    """Delete ``owner``'s lock if its id is ``lock_id`` (Terraform's ``force-unlock``); return
    the record removed."""
    call = (policy or RetryPolicy()).call
    name = lock_model(owner)
    tags = call(lambda: registry.read_lock(name))
    current = LockRecord.from_tags(tags) if tags is not None else None
    if current is None:
        raise LockHeld(f"owner '{owner}' holds no registry lock (no registered model '{name}')")
    if current.lock_id != lock_id:
        raise LockHeld(
            f"lock ID {lock_id} is not the registry lock of owner '{owner}', which is "
            f"{describe(current)}"
        )
    call(lambda: registry.delete_model(name))
    return current
