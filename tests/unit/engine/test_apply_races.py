"""The executor when a create races another apply or commits late: one version per digest."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from controller.core.errors import OutcomeUnknown
from controller.core.plan.changeset import Verb
from controller.core.state.observed import ATTEMPT_TAG, DIGEST_TAG, ObservedVersion
from controller.engine.loader import load
from controller.engine.retry import RetryPolicy
from controller.ports import VersionSource
from tests.support.engine import reconcile
from tests.support.fake_registry import FakeRegistry
from tests.support.manifests import GOOD, write_repo


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _policy(clock: _Clock, settle: float = 30.0) -> RetryPolicy:
    return RetryPolicy(
        attempts=4, initial=0.0, maximum=0.0, sleep=clock.sleep, settle=settle,
        clock=clock.monotonic,
    )  # fmt: skip


class _RacingRegistry(FakeRegistry):
    """Another apply registers the same source (version 1) while this one logs it."""

    def log_version(
        self, name: str, source: VersionSource, tags: Mapping[str, str], description: str | None
    ) -> int:
        other = max(self.models[name].versions, default=0) + 1
        self.models[name].versions[other] = ObservedVersion(
            other, tags={DIGEST_TAG: source.digest, ATTEMPT_TAG: "theirs"}
        )
        return super().log_version(name, source, tags, description)


def test_the_apply_that_made_a_duplicate_deletes_it_and_aliases_the_lower(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = _RacingRegistry()
    clock = _Clock()
    result = reconcile(desired, reg, apply=True, policy=_policy(clock))
    versions = reg.models["bot"].versions
    assert list(versions) == [1]  # its own version 2 is gone, the other apply's stays
    assert versions[1].tags[ATTEMPT_TAG] == "theirs"
    assert reg.models["bot"].aliases == {"champion": 1}
    assert "delete_version" in reg.writes
    assert clock.slept == []  # every attempt answered: nothing to wait for
    assert result.changeset is not None
    assert reconcile(desired, reg, apply=False).plan.changes == ()


def test_a_version_an_apply_made_alone_is_kept_without_waiting(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = FakeRegistry()
    clock = _Clock()
    reconcile(desired, reg, apply=True, policy=_policy(clock))
    assert list(reg.models["bot"].versions) == [1]
    assert "delete_version" not in reg.writes and clock.slept == []


class _LateRegistry(FakeRegistry):
    """The first create times out without an answer, and the server commits it late: after
    the retry's create (so as a higher version), and only once the apply has looked
    ``late_after`` times."""

    def __init__(self, late_after: int) -> None:
        super().__init__()
        self.late_after = late_after
        self.held: tuple[str, VersionSource, dict[str, str]] | None = None
        self.looks = 0

    def log_version(
        self, name: str, source: VersionSource, tags: Mapping[str, str], description: str | None
    ) -> int:
        if self.held is None:
            self.held = (name, source, dict(tags))
            raise OutcomeUnknown("create model version bot: timed out")
        return super().log_version(name, source, tags, description)

    def versions_with_digest(self, name: str, digest: str) -> list[ObservedVersion]:
        self.looks += 1
        if self.looks == self.late_after and self.held is not None:
            held_name, source, tags = self.held
            super().log_version(held_name, source, tags, None)
        return super().versions_with_digest(name, digest)


def test_a_create_that_commits_late_is_waited_for_and_deleted(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = _LateRegistry(late_after=3)
    clock = _Clock()
    result = reconcile(desired, reg, apply=True, policy=_policy(clock))
    versions = reg.models["bot"].versions
    assert list(versions) == [1]  # the late version 2 was this apply's: deleted
    assert reg.models["bot"].aliases == {"champion": 1}
    assert [s for s in clock.slept if s] == [1.0, 1.0]  # looked until the lost attempt showed up
    assert result.changeset is not None
    entry = result.changeset.entries[1]
    assert entry.verb is Verb.CREATED and entry.detail == "version 1"
    assert reconcile(desired, reg, apply=False).plan.changes == ()


def test_a_lost_create_that_never_commits_is_waited_for_only_so_long(tmp_path: Path) -> None:
    desired, _ = load(write_repo(tmp_path, GOOD))
    reg = _LateRegistry(late_after=10**6)
    clock = _Clock()
    reconcile(desired, reg, apply=True, policy=_policy(clock, settle=5.0))
    assert list(reg.models["bot"].versions) == [1]
    assert sum(clock.slept) == 5.0
