"""The leader elector's decisions, with a scripted Lease and a fake clock (the Lease itself is
tested against the real API server in tests/integration/test_controller.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from controller.adapters.kubernetes.lease import LeaderElector
from controller.core.errors import TemporaryBackendError
from tests.support.fakes import FakeClock


class ScriptedLock:
    """Answers try_acquire_or_renew from a script: True (held), False (someone else holds it),
    "conflict" (our write lost a race: we still read ourselves as holder), or an exception."""

    namespace, name, identity, lease_duration = "ns", "lease", "me", 15.0

    def __init__(self, clock: FakeClock, script: list[object], took: float = 0.0) -> None:
        self.clock, self.script, self.took = clock, script, took
        self.holder = ""
        self.released = False

    def try_acquire_or_renew(self) -> bool:
        self.clock.now += self.took  # the request's own duration
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if step == "conflict":
            self.holder = self.identity
            return False
        self.holder = self.identity if step else "other"
        return bool(step)

    def release(self) -> None:
        self.released = True


def drive(lock: ScriptedLock, elector: LeaderElector, clock: FakeClock, steps: int) -> list[bool]:
    """Run the elector for ``steps`` attempts, ``retry_period`` apart; is_leader after each."""
    seen: list[bool] = []
    stop = threading.Event()

    class Stop:
        def wait(self, seconds: float) -> bool:
            clock.now += seconds
            seen.append(elector.is_leader())
            if len(seen) >= steps:
                stop.set()
            return stop.is_set()

        def is_set(self) -> bool:
            return stop.is_set()

    elector.run(Stop())  # type: ignore[arg-type]
    return seen


def elector(lock: ScriptedLock, clock: FakeClock, changes: list[bool]) -> LeaderElector:
    return LeaderElector(
        lock,  # type: ignore[arg-type]
        renew_deadline=10.0,
        retry_period=2.0,
        on_change=changes.append,
        clock=clock,
    )


def test_leads_while_it_renews_and_releases_on_stop() -> None:
    clock, changes = FakeClock(), []
    lock = ScriptedLock(clock, [True, True, True])
    assert drive(lock, elector(lock, clock, changes), clock, 3) == [True, True, True]
    assert lock.released and changes == [True, False]


def test_another_holder_ends_leadership_at_once() -> None:
    clock, changes = FakeClock(), []
    lock = ScriptedLock(clock, [True, False])
    assert drive(lock, elector(lock, clock, changes), clock, 2) == [True, False]
    assert not lock.released


@pytest.mark.parametrize("failure", ["conflict", TemporaryBackendError("timed out")])
def test_failed_renewals_keep_leadership_until_the_renew_deadline(failure: object) -> None:
    clock, changes = FakeClock(), []
    lock = ScriptedLock(clock, [True] + [failure] * 6)
    seen = drive(lock, elector(lock, clock, changes), clock, 7)
    # renewed at t=0; attempts at 2, 4, 6, 8 fail and it still leads; at 10 the deadline is up
    assert seen == [True, True, True, True, False, False, False]


def test_a_renewal_that_hangs_does_not_extend_leadership() -> None:
    """is_leader is a deadline from when the last good renewal was sent, so a leader stuck in
    a slow request stops leading on time, before the request even returns."""
    clock, changes = FakeClock(), []
    lock = ScriptedLock(clock, [True, True], took=0.0)
    e = elector(lock, clock, changes)
    seen_during: list[bool] = []
    original: Callable[[], bool] = lock.try_acquire_or_renew

    def slow() -> bool:
        if lock.script and len(lock.script) == 1:  # the second attempt hangs for 12 s
            clock.now += 12.0
            seen_during.append(e.is_leader())
        return original()

    lock.try_acquire_or_renew = slow  # type: ignore[method-assign]
    drive(lock, e, clock, 2)
    assert seen_during == [False]


def test_settings_must_leave_room_between_renewal_and_expiry() -> None:
    clock = FakeClock()
    lock = ScriptedLock(clock, [])
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaderElector(lock, renew_deadline=20.0, retry_period=2.0, clock=clock)  # type: ignore[arg-type]
