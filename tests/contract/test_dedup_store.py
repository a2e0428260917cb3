"""One contract for every DedupStore: memory, SQLite and PostgreSQL pass the same tests.

A backend joins through the ``backend`` fixture: how to open a store (and a second one on
the same database, as a second process would), and how a handler writes an effect inside a
dedup transaction and how to read committed effects from outside it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus import (
    DedupKey,
    DedupStore,
    DedupTransaction,
    DuplicateMessageError,
    MemoryDedupStore,
    OutgoingRecord,
    PostgresDedupStore,
    SqliteDatabase,
    SqliteDedupStore,
)
from tests.postgres import PostgresServer

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Clock:
    """The stores' clock, advanced by the test."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Backend:
    name: str
    clock: Clock
    #: A new store on the backend's database (another process); opened, closed at teardown.
    open_store: Callable[[], Awaitable[DedupStore[Any]]]
    #: The handler's effect inside a dedup transaction.
    write_effect: Callable[[DedupTransaction[Any], str], Awaitable[None]]
    #: The committed effects, read from outside any transaction.
    read_effects: Callable[[], Awaitable[set[str]]]
    stores: list[DedupStore[Any]] = field(default_factory=list)

    async def store(self) -> DedupStore[Any]:
        store = await self.open_store()
        self.stores.append(store)
        return store


def _memory_backend() -> Backend:
    clock = Clock()
    # One process only: a "second store" is the same object, as two tasks would share it.
    store = MemoryDedupStore(max_entries=10_000, clock=clock)

    async def open_store() -> DedupStore[Any]:
        await store.open()
        return store

    async def write_effect(tx: DedupTransaction[Any], label: str) -> None:
        tx.connection[label] = True

    async def read_effects() -> set[str]:
        return {str(k) for k in store.data}

    return Backend("memory", clock, open_store, write_effect, read_effects)


async def _sqlite_backend(path: Path) -> AsyncIterator[Backend]:
    clock = Clock()
    observer = SqliteDatabase(path)
    await observer.open()
    async with observer.transaction() as tx:
        await tx.run(lambda c: c.execute("CREATE TABLE effects (label TEXT PRIMARY KEY)"))

    async def open_store() -> DedupStore[Any]:
        store = SqliteDedupStore(path, clock=clock)
        await store.open()
        return store

    async def write_effect(tx: DedupTransaction[Any], label: str) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO effects VALUES (?)", (label,))

        await tx.run(insert)  # type: ignore[attr-defined]

    async def read_effects() -> set[str]:
        return await observer.run(lambda c: {r[0] for r in c.execute("SELECT label FROM effects")})

    try:
        yield Backend("sqlite", clock, open_store, write_effect, read_effects)
    finally:
        await observer.close()


async def _postgres_backend(server: PostgresServer) -> AsyncIterator[Backend]:
    clock = Clock()
    dsn = await server.create_schema()
    observer = PostgresDedupStore(dsn, clock=clock)
    await observer.open()
    await observer.database.pool.execute("CREATE TABLE effects (label TEXT PRIMARY KEY)")

    async def open_store() -> DedupStore[Any]:
        store = PostgresDedupStore(dsn, clock=clock)
        await store.open()
        return store

    async def write_effect(tx: DedupTransaction[Any], label: str) -> None:
        await tx.connection.execute("INSERT INTO effects VALUES ($1)", label)

    async def read_effects() -> set[str]:
        rows = await observer.database.pool.fetch("SELECT label FROM effects")
        return {r[0] for r in rows}

    try:
        yield Backend("postgres", clock, open_store, write_effect, read_effects)
    finally:
        await observer.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        b = _memory_backend()
        yield b
    else:
        source = (
            _sqlite_backend(tmp_path / "bus.db")
            if request.param == "sqlite"
            else _postgres_backend(request.getfixturevalue("postgres_server"))
        )
        b = await anext(source)
        try:
            yield b
        finally:
            await source.aclose()
    for store in b.stores:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    source = (
        _sqlite_backend(tmp_path / "bus.db")
        if request.param == "sqlite"
        else _postgres_backend(request.getfixturevalue("postgres_server"))
    )
    b = await anext(source)
    try:
        yield b
    finally:
        for store in b.stores:
            await store.close()
        await source.aclose()


def key(id_: str = "id-1", *, handler: str = "provision", source: str = "/hr") -> DedupKey:
    return DedupKey(handler, source, id_)


OUTPUTS = (
    OutgoingRecord(
        "it.commands",
        b"u-1",
        b'{"user":"u-1"}',
        (
            ("ce_id", b"0190-a"),
            ("ce_type", b"it.create.v1"),
            ("bin", b"\x00\xff\x80"),
            ("bin", b""),
        ),
    ),
    OutgoingRecord("audit", None, b"\x00\x01", ()),
    OutgoingRecord("tombstones", b"k", None, (("x", b"1"),), partition=3),
)


async def test_a_key_never_recorded_has_no_entry(backend: Backend) -> None:
    store = await backend.store()
    assert isinstance(store, DedupStore)
    assert await store.get(key()) is None
    async with store.transaction(key("other")) as tx:
        assert isinstance(tx, DedupTransaction)


async def test_recorded_outputs_come_back_byte_for_byte(backend: Backend) -> None:
    store = await backend.store()
    recorded = await store.record(key(), OUTPUTS)
    entry = await store.get(key())
    assert entry is not None
    assert entry.key == key()
    assert entry.outputs == OUTPUTS
    assert entry.completed_at_ms == int(START.timestamp() * 1000) == recorded.completed_at_ms


async def test_outputs_are_unsent_until_marked_and_marking_is_seen_by_other_stores(
    backend: Backend,
) -> None:
    store, other = await backend.store(), await backend.store()
    await store.record(key("a"), OUTPUTS)
    async with store.transaction(key("b")) as tx:
        tx.complete(OUTPUTS)
    for k in (key("a"), key("b")):
        entry = await other.get(k)
        assert entry is not None
        assert not entry.sent
    await store.mark_sent([key("a"), key("never-recorded")])
    await store.mark_sent([])
    a, b = await other.get(key("a")), await other.get(key("b"))
    assert a is not None
    assert b is not None
    assert (a.sent, b.sent) == (True, False)
    assert a.outputs == OUTPUTS


async def test_recording_a_key_twice_raises_duplicate_and_keeps_the_first_outputs(
    backend: Backend,
) -> None:
    store = await backend.store()
    await store.record(key(), OUTPUTS[:1])
    with pytest.raises(DuplicateMessageError) as raised:
        await store.record(key(), OUTPUTS)
    assert raised.value.key == key()
    assert not raised.value.retryable
    entry = await store.get(key())
    assert entry is not None
    assert entry.outputs == OUTPUTS[:1]


async def test_the_same_id_from_another_source_is_another_message(backend: Backend) -> None:
    store = await backend.store()
    await store.record(key(source="/hr"))
    assert await store.get(key(source="/crm")) is None
    await store.record(key(source="/crm"), OUTPUTS)
    entry = await store.get(key(source="/crm"))
    assert entry is not None
    assert entry.outputs == OUTPUTS


async def test_the_same_message_for_another_handler_is_another_key(backend: Backend) -> None:
    store = await backend.store()
    await store.record(key(handler="provision"))
    assert await store.get(key(handler="notify")) is None
    async with store.transaction(key(handler="notify")) as tx:
        tx.complete(OUTPUTS[:1])
    entry = await store.get(key(handler="notify"))
    assert entry is not None
    assert entry.outputs == OUTPUTS[:1]


async def test_a_committed_transaction_makes_effect_and_record_visible_together(
    backend: Backend,
) -> None:
    store = await backend.store()
    async with store.transaction(key()) as tx:
        assert tx.key == key()
        await backend.write_effect(tx, "mailbox:u-1")
        tx.complete(OUTPUTS)
        assert await backend.read_effects() == set()
        assert await store.get(key()) is None
    assert await backend.read_effects() == {"mailbox:u-1"}
    entry = await store.get(key())
    assert entry is not None
    assert entry.outputs == OUTPUTS


async def test_a_transaction_that_never_sets_outputs_records_none(backend: Backend) -> None:
    store = await backend.store()
    async with store.transaction(key()) as tx:
        await backend.write_effect(tx, "e")
    entry = await store.get(key())
    assert entry is not None
    assert entry.outputs == ()


async def test_an_exception_in_the_transaction_rolls_back_effect_and_record(
    backend: Backend,
) -> None:
    store = await backend.store()

    async def failing_handler() -> None:
        async with store.transaction(key()) as tx:
            await backend.write_effect(tx, "half-done")
            tx.complete(OUTPUTS)
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await failing_handler()
    assert await backend.read_effects() == set()
    assert await store.get(key()) is None
    # Nothing is left claimed: the retry commits.
    async with store.transaction(key()) as tx:
        await backend.write_effect(tx, "done")
    assert await backend.read_effects() == {"done"}


async def test_a_cancelled_transaction_rolls_back_and_releases_the_key(backend: Backend) -> None:
    """Shutdown cancels a handler mid-effect: nothing of it may stay, nor block the retry."""
    store = await backend.store()
    inside = asyncio.Event()

    async def handler() -> None:
        async with store.transaction(key()) as tx:
            await backend.write_effect(tx, "cancelled")
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(handler())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await backend.read_effects() == set()
    assert await store.get(key()) is None
    async with store.transaction(key()) as tx:
        await backend.write_effect(tx, "retried")
    assert await backend.read_effects() == {"retried"}


async def test_entering_a_transaction_for_a_completed_key_raises_before_the_block(
    backend: Backend,
) -> None:
    store = await backend.store()
    await store.record(key(), OUTPUTS)
    ran = False
    with pytest.raises(DuplicateMessageError):
        async with store.transaction(key()):
            ran = True
    assert not ran


async def test_recording_a_key_a_transaction_committed_raises_duplicate(backend: Backend) -> None:
    store = await backend.store()
    async with store.transaction(key()) as tx:
        tx.complete(OUTPUTS[:1])
    with pytest.raises(DuplicateMessageError):
        await store.record(key(), OUTPUTS)


async def test_two_consumers_racing_on_one_key_commit_exactly_once(backend: Backend) -> None:
    """A zombie consumer and the partition's new owner handle the same redelivered record."""
    first, second = await backend.store(), await backend.store()
    first_inside = asyncio.Event()

    async def owner() -> None:
        async with first.transaction(key()) as tx:
            await backend.write_effect(tx, "owner")
            tx.complete(OUTPUTS[:1])
            first_inside.set()
            await asyncio.sleep(0.2)  # the zombie tries meanwhile

    async def zombie() -> None:
        await first_inside.wait()
        async with second.transaction(key()) as tx:
            await backend.write_effect(tx, "zombie")
            tx.complete(OUTPUTS)

    results = await asyncio.gather(owner(), zombie(), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], DuplicateMessageError)
    assert await backend.read_effects() == {"owner"}
    entry = await second.get(key())
    assert entry is not None
    assert entry.outputs == OUTPUTS[:1]


async def test_many_contenders_on_one_key_yield_one_effect(backend: Backend) -> None:
    stores = [await backend.store(), await backend.store()]

    async def contender(n: int) -> str:
        async with stores[n % 2].transaction(key()) as tx:
            await backend.write_effect(tx, f"c{n}")
            await asyncio.sleep(0.01)
        return f"c{n}"

    results = await asyncio.gather(*(contender(n) for n in range(8)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, DuplicateMessageError) for r in results if r not in winners)
    assert await backend.read_effects() == set(winners)


async def test_a_rolled_back_claim_lets_the_waiting_consumer_commit(backend: Backend) -> None:
    first, second = await backend.store(), await backend.store()
    first_inside = asyncio.Event()

    async def failing() -> None:
        async with first.transaction(key()) as tx:
            await backend.write_effect(tx, "failed")
            first_inside.set()
            await asyncio.sleep(0.1)
            raise RuntimeError("crashed mid-handler")

    async def retrying() -> None:
        await first_inside.wait()
        async with second.transaction(key()) as tx:
            await backend.write_effect(tx, "retried")

    results = await asyncio.gather(failing(), retrying(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] is None
    assert await backend.read_effects() == {"retried"}


@pytest.mark.parametrize("commits", [True, False])
async def test_recording_waits_for_an_open_transaction_on_the_key(
    backend: Backend, commits: bool
) -> None:
    first, second = await backend.store(), await backend.store()
    inside = asyncio.Event()

    async def handler() -> None:
        async with first.transaction(key()) as tx:
            await backend.write_effect(tx, "tx")
            tx.complete(OUTPUTS[:1])
            inside.set()
            await asyncio.sleep(0.1)
            if not commits:
                raise RuntimeError("rolled back")

    async def recorder() -> None:
        await inside.wait()
        await second.record(key(), OUTPUTS)

    results = await asyncio.gather(handler(), recorder(), return_exceptions=True)
    entry = await second.get(key())
    assert entry is not None
    if commits:
        assert results[0] is None
        assert isinstance(results[1], DuplicateMessageError)
        assert entry.outputs == OUTPUTS[:1]
    else:
        assert isinstance(results[0], RuntimeError)
        assert results[1] is None
        assert entry.outputs == OUTPUTS


async def test_purge_forgets_entries_older_than_the_cutoff(backend: Backend) -> None:
    store = await backend.store()
    await store.record(key("old-1"))
    await store.record(key("old-2"))
    backend.clock.now = START + timedelta(hours=2)
    async with store.transaction(key("new")):
        pass
    removed = await store.purge(START + timedelta(hours=1))
    assert removed == 2
    assert await store.get(key("old-1")) is None
    assert await store.get(key("old-2")) is None
    assert await store.get(key("new")) is not None
    assert await store.purge(START + timedelta(hours=1)) == 0


async def test_many_tasks_record_and_read_at_once(backend: Backend) -> None:
    stores = [await backend.store(), await backend.store()]

    async def worker(w: int) -> None:
        for i in range(15):
            k = key(f"{w}-{i}")
            store = stores[(w + i) % 2]
            assert await store.get(k) is None
            if i % 3 == 0:
                async with store.transaction(k) as tx:
                    await backend.write_effect(tx, f"{w}-{i}")
                    tx.complete(OUTPUTS[:1])
            else:
                await store.record(k, OUTPUTS[:1])
            assert await stores[0].get(k) is not None

    await asyncio.gather(*(worker(w) for w in range(12)))
    for w in range(12):
        for i in range(15):
            entry = await stores[1].get(key(f"{w}-{i}"))
            assert entry is not None
            assert entry.outputs == OUTPUTS[:1]
    assert len(await backend.read_effects()) == 12 * 5


async def test_a_reopened_store_keeps_its_entries(durable_backend: Backend) -> None:
    store = await durable_backend.store()
    await store.record(key(), OUTPUTS)
    await store.close()
    await store.open()  # migrations again: idempotent
    entry = await store.get(key())
    assert entry is not None
    assert entry.outputs == OUTPUTS
    another = await durable_backend.store()
    assert await another.get(key()) == entry


async def test_the_memory_store_evicts_its_oldest_entries_beyond_max_entries() -> None:
    store = MemoryDedupStore(max_entries=3)
    for i in range(5):
        await store.record(key(f"m{i}"))
    assert len(store) == 3
    assert await store.get(key("m0")) is None
    assert await store.get(key("m1")) is None
    assert [await store.get(key(f"m{i}")) is not None for i in (2, 3, 4)] == [True] * 3
    async with store.transaction(key("m5")):
        pass
    assert await store.get(key("m2")) is None
    assert len(store) == 3


async def test_recording_many_new_keys_records_each_and_reports_only_earlier_ones(
    backend: Backend,
) -> None:
    store, other = await backend.store(), await backend.store()
    await store.record(key("old"), OUTPUTS[:1])
    await store.mark_sent([key("old")])
    before = await other.record_new(
        [(key("a"), OUTPUTS), (key("old"), OUTPUTS), (key("b"), ()), (key("a"), OUTPUTS[:1])]
    )
    assert list(before) == [key("old")]
    assert before[key("old")].outputs == OUTPUTS[:1]
    assert before[key("old")].sent
    a, b = await store.get(key("a")), await store.get(key("b"))
    assert a is not None
    assert b is not None
    assert (a.outputs, b.outputs, a.sent) == (OUTPUTS, (), False)
    assert await store.record_new([]) == {}
    again = await store.record_new([(key("a"), ()), (key("c"), ())])
    assert set(again) == {key("a")}


async def test_recording_many_marks_the_given_keys_sent_in_the_same_call(
    backend: Backend,
) -> None:
    store, other = await backend.store(), await backend.store()
    await store.record_new([(key("done-1"), OUTPUTS), (key("done-2"), ())])
    before = await other.record_new(
        [(key("fresh"), OUTPUTS), (key("done-1"), ())],
        sent=[key("done-1"), key("done-2"), key("never-recorded")],
    )
    assert not before[key("done-1")].sent  # read before the mark, as the caller left it
    found = [await store.get(key(k)) for k in ("done-1", "done-2", "fresh")]
    assert [entry is not None and entry.sent for entry in found] == [True, True, False]
    assert await other.record_new([], sent=[key("fresh")]) == {}
    fresh = await store.get(key("fresh"))
    assert fresh is not None
    assert fresh.sent


async def test_concurrent_groups_of_overlapping_keys_record_each_key_once(
    backend: Backend,
) -> None:
    stores = [await backend.store(), await backend.store()]
    ids = [f"k{n}" for n in range(20)]

    async def group(n: int) -> dict[DedupKey, Any]:
        chosen = ids[n % 3 :: 2] if n % 2 else list(reversed(ids))
        return await stores[n % 2].record_new([(key(i), ()) for i in chosen])

    results = await asyncio.gather(*(group(n) for n in range(6)))
    offered = [set(ids[n % 3 :: 2] if n % 2 else ids) for n in range(6)]  # every group's keys
    new_per_group = [
        {key(i) for i in chosen} - set(before)
        for chosen, before in zip(offered, results, strict=True)
    ]
    recorded_now = [k for new in new_per_group for k in new]
    assert sorted(recorded_now) == sorted({key(i) for i in ids})  # each key new exactly once
