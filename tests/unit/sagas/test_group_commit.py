"""sagas.group_commit: a saga locked elsewhere holds back its own caller only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from bus import LockTimeoutError
from sagas import group_commit
from sagas.group_commit import GroupCommit
from sagas.stores.base import Change, SagaWrite
from sagas.stores.memory import MemorySagaStore
from tests.waiting import wait_until


class LockingStore(MemorySagaStore):
    """A memory store where the sagas in ``locked`` are held by another transaction: a
    write naming one gives up with LockTimeoutError, as PostgreSQL's lock_timeout does."""

    def __init__(self) -> None:
        super().__init__()
        self.locked: set[str] = set()
        self.calls: list[list[str]] = []

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[SagaWrite | None]:
        ids = [saga_id for saga_id, _ in items]
        self.calls.append(ids)
        await asyncio.sleep(0)  # a round trip: other callers queue meanwhile
        if self.locked & set(ids):
            raise LockTimeoutError("a lock wait reached lock_timeout (0.5s)")
        return await super().update_many(items, on_conflict=on_conflict)


async def test_a_locked_saga_holds_back_its_own_caller_only_and_is_written_once_released() -> None:
    store = LockingStore()
    waits: list[tuple[str, float]] = []
    group = GroupCommit(store, on_wait=lambda outcome, s: waits.append((outcome, s)))
    store.locked.add("s:locked")
    locked = asyncio.create_task(group.write([noop("s:locked"), noop("s:a1")]))
    others = [asyncio.create_task(group.write([noop(f"s:{n}")])) for n in ("b", "c", "d")]
    assert await asyncio.wait_for(asyncio.gather(*others), 10) == [[None]] * 3
    # later callers are not queued behind the locked one either
    assert await asyncio.wait_for(group.write([noop("s:e")]), 10) == [None]
    await wait_until(lambda: len(waits), until=lambda n: n >= 3, timeout_s=10,
                     what="the locked caller to try alone twice")  # fmt: skip
    assert not locked.done()
    assert {outcome for outcome, _ in waits} == {"lock_timeout"}
    store.locked.clear()
    assert await asyncio.wait_for(locked, 10) == [None, None]
    assert group.retries >= 2


def noop(saga_id: str) -> tuple[str, Change]:
    """An input that changes nothing (the write path is what is tested)."""
    return saga_id, lambda stored: None


class SlowStore(MemorySagaStore):
    """A memory store whose writes take ``delay_s`` (a lock another replica held a while)."""

    delay_s = 0.05

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[SagaWrite | None]:
        await asyncio.sleep(self.delay_s)
        return await super().update_many(items, on_conflict=on_conflict)


async def test_a_write_that_waited_longer_than_the_slow_bound_is_logged_and_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(group_commit, "SLOW_WRITE_S", 0.01)
    waits: list[tuple[str, float]] = []
    group = GroupCommit(SlowStore(), on_wait=lambda outcome, s: waits.append((outcome, s)))
    assert await group.write([noop("s:slow")]) == [None]
    assert [outcome for outcome, _ in waits] == ["written"]
    assert waits[0][1] >= SlowStore.delay_s
    assert any("s:slow" in r.getMessage() for r in caplog.records)
