"""The registry lock, against an in-memory registry whose creates and renames are exclusive."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from controller.core.errors import BackendError
from controller.core.state.lock import LockRecord, expired_model, lock_model
from controller.engine.loader import load
from controller.engine.lock import LockHeld, RegistryLock, force_unlock
from controller.engine.retry import RetryPolicy
from tests.support.engine import reconcile
from tests.support.fake_registry import FakeRegistry
from tests.support.manifests import GOOD, write_repo

NO_WAIT = RetryPolicy(attempts=2, initial=0.0, maximum=0.0, sleep=lambda s: None)
T0 = 1_700_000_000.0


def _lock(reg: FakeRegistry, holder: str, **kw: object) -> RegistryLock:
    kw.setdefault("wall", lambda: T0)
    return RegistryLock(reg, "team", holder=holder, policy=NO_WAIT, **kw)  # type: ignore[arg-type]


def _record(reg: FakeRegistry) -> LockRecord | None:
    m = reg.models.get(lock_model("team"))
    return LockRecord.from_tags(m.tags) if m is not None else None


def test_a_second_apply_is_refused_naming_the_holder_until_the_first_releases() -> None:
    reg = FakeRegistry()
    first = _lock(reg, "ci-1:100")
    mine = first.acquire()
    try:
        assert _record(reg) == mine and mine.holder == "ci-1:100" and mine.expires == T0 + 60
        with pytest.raises(LockHeld) as info:
            _lock(reg, "ci-2:200").acquire()
        text = str(info.value)
        assert "held by ci-1:100 since 2023-11-14T22:13:20Z" in text
        assert f"force-unlock {mine.lock_id}" in text and "--lock-timeout" in text
    finally:
        first.release()
    assert lock_model("team") not in reg.models
    with _lock(reg, "ci-2:200") as second:
        assert _record(reg) == second


def test_a_waiting_apply_takes_the_lock_once_it_is_released() -> None:
    reg = FakeRegistry()
    first = _lock(reg, "ci-1:100")
    first.acquire()
    clock = {"t": 0.0}
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock["t"] += seconds
        if len(waits) == 3:
            first.release()

    second = _lock(reg, "ci-2:200", timeout=10.0, monotonic=lambda: clock["t"], sleep=sleep)
    with second as record:
        assert record.holder == "ci-2:200" and waits == [1.0, 1.0, 1.0]


def test_an_expired_lock_is_taken_over_and_a_dead_local_holder_too() -> None:
    reg = FakeRegistry()
    old = _lock(reg, "ci-1:100").acquire()  # never released: its apply was killed
    later = _lock(reg, "ci-2:200", wall=lambda: T0 + 61)
    with later as record:
        assert record.holder == "ci-2:200" and _record(reg) == record
        assert expired_model("team", old.lock_id) in reg.models  # moved aside, not deleted
    reg2 = FakeRegistry()
    _lock(reg2, "here:1").acquire()
    with _lock(reg2, "here:2", alive=lambda holder: holder != "here:1") as record:
        assert record.holder == "here:2"


class _StaleView(FakeRegistry):
    """Reads the lock as it was before another apply took it over (a slow observer)."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: Mapping[str, str] | None = None

    def read_lock(self, name: str) -> Mapping[str, str] | None:
        if self.stale is not None:
            seen, self.stale = self.stale, None
            return seen
        return super().read_lock(name)


def test_of_two_applies_that_saw_the_lock_expire_only_one_takes_it() -> None:
    reg = _StaleView()
    _lock(reg, "ci-1:100").acquire()
    expired_tags = dict(reg.models[lock_model("team")].tags)
    late = T0 + 61
    a = _lock(reg, "ci-2:200", wall=lambda: late)
    a.acquire()
    try:
        reg.stale = expired_tags  # B saw the expired record before A took over
        with pytest.raises(LockHeld, match="held by ci-2:200"):
            _lock(reg, "ci-3:300", wall=lambda: late).acquire()
        assert _record(reg) == a.record  # A's lock survived B's attempt
    finally:
        a.release()


class _RacedRename(FakeRegistry):
    """MLflow's SQL store under a concurrent rename: the loser's UPDATE matches no row and the
    server answers BAD_REQUEST instead of "not found"; ``taker`` moves the record first."""

    def __init__(self) -> None:
        super().__init__()
        self.taker: RegistryLock | None = None

    def rename_lock(self, name: str, new_name: str) -> bool:
        if self.taker is not None:
            taker, self.taker = self.taker, None
            taker.acquire()  # the other apply renames and creates its own record meanwhile
            raise BackendError(
                "take over lock: UPDATE statement on table 'registered_models' expected to "
                "update 1 row(s); 0 were matched. (BAD_REQUEST)"
            )
        return super().rename_lock(name, new_name)


def test_a_rename_that_lost_the_race_with_an_error_looks_again_and_finds_the_new_holder() -> None:
    reg = _RacedRename()
    _lock(reg, "ci-1:100").acquire()  # killed
    late = T0 + 61
    a = _lock(reg, "ci-2:200", wall=lambda: late)
    reg.taker = a
    try:
        with pytest.raises(LockHeld, match="held by ci-2:200"):
            _lock(reg, "ci-3:300", wall=lambda: late).acquire()
        assert _record(reg) == a.record
    finally:
        a.release()
    # With nobody else there, the same error is the store's own and is not swallowed.
    reg2 = FakeRegistry()
    _lock(reg2, "ci-1:100").acquire()
    reg2.faults["rename_lock"] = [BackendError("take over lock: refused (BAD_REQUEST)")]
    with pytest.raises(BackendError, match="refused"):
        _lock(reg2, "ci-2:200", wall=lambda: late).acquire()


def test_renewal_pushes_the_expiry_and_force_unlock_removes_only_the_named_lock() -> None:
    reg = FakeRegistry()
    now = {"t": T0}
    lock = _lock(reg, "ci-1:100", wall=lambda: now["t"])
    mine = lock.acquire()
    now["t"] = T0 + 30
    lock.renew()
    renewed = _record(reg)
    assert renewed is not None and renewed.expires == T0 + 90
    with pytest.raises(LockHeld, match=f"not the registry lock.*lock ID {mine.lock_id}"):
        force_unlock(reg, "team", "0000", NO_WAIT)
    assert force_unlock(reg, "team", mine.lock_id, NO_WAIT).holder == "ci-1:100"
    assert lock_model("team") not in reg.models
    with pytest.raises(LockHeld, match="holds no registry lock"):
        force_unlock(reg, "team", mine.lock_id, NO_WAIT)


def test_reconcile_takes_the_lock_only_for_a_plan_with_changes(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    entered: list[int] = []

    class Guard:
        def __enter__(self) -> None:
            entered.append(len(reg.writes))

        def __exit__(self, *exc: object) -> None:
            pass

        def holds(self) -> bool:
            return True

    guard = Guard

    reconcile(desired, reg, apply=True, policy=NO_WAIT, guard=guard)
    assert entered == [0]  # before the first write
    reconcile(desired, reg, apply=True, policy=NO_WAIT, guard=guard)
    assert entered == [0]  # nothing to do: no lock either


def test_a_lock_taken_over_while_held_is_lost_and_left_to_its_new_holder() -> None:
    reg = FakeRegistry()
    now = [T0]
    a = _lock(reg, "ci-1:100", wall=lambda: now[0])
    a.acquire()
    try:
        assert a.holds()
        now[0] += 61.0  # its renewals did not get through; it expired
        b = _lock(reg, "ci-2:200", wall=lambda: now[0])
        taken = b.acquire()
        a.renew()  # a's renewer finds another lock in its place
        assert not a.holds()
    finally:
        a.release()  # leaves b's lock alone
    assert _record(reg) == taken
    b.release()


def test_the_lock_model_says_which_agentctl_wrote_it_and_is_still_a_lock_record() -> None:
    from controller.core.state.observed import WRITTEN_BY_TAG

    reg = FakeRegistry()
    first = _lock(reg, "ci-1:100", written_by="agentctl 1.2")
    mine = first.acquire()
    try:
        assert reg.models[lock_model("team")].tags[WRITTEN_BY_TAG] == "agentctl 1.2"
        assert _record(reg) == mine
        with pytest.raises(LockHeld, match="held by ci-1:100"):
            _lock(reg, "ci-2:200").acquire()
    finally:
        first.release()
    assert lock_model("team") not in reg.models
    unstamped = _lock(reg, "ci-2:200")
    unstamped.acquire()
    assert WRITTEN_BY_TAG not in reg.models[lock_model("team")].tags
    unstamped.release()
