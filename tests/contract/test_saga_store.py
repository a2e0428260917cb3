"""One contract for every SagaStore: memory, SQLite and PostgreSQL pass the same tests.

A backend joins through the ``backend`` fixture: how to open a store, and a second one on
the same database (as a second coordinator replica would).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus import OutgoingRecord
from sagas import SagaState, SagaStatus, TimerToSet
from sagas.state import TERMINAL, EarlySignal, StepState, StepStatus
from sagas.stores import (
    ControlRequest,
    MemorySagaStore,
    OutboxEntry,
    PostgresSagaStore,
    RevisionConflictError,
    SagaQuery,
    SagaStore,
    SagaWrite,
    SqliteSagaStore,
    StoredSaga,
    store_from_url,
)
from sagas.stores.base import (
    Change,
    SetAside,
    SetAsideInput,
    UnreadableSaga,
    UnreadableStateError,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)


@dataclass
class Backend:
    name: str
    open_store: Callable[[], Awaitable[SagaStore]]
    durable: bool
    stores: list[SagaStore] = field(default_factory=list)

    async def store(self) -> SagaStore:
        store = await self.open_store()
        self.stores.append(store)
        return store


def _backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if kind == "memory":
        shared = MemorySagaStore()  # one process: a "second store" is the same object

        async def open_memory() -> SagaStore:
            return shared

        return Backend("memory", open_memory, durable=False)
    url = (
        f"sqlite:{tmp_path / 'sagas.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_dsn")
    )

    async def open_sql() -> SagaStore:
        store = store_from_url(url)
        await store.open()
        return store

    return Backend(kind, open_sql, durable=True)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    b = _backend(request.param, request, tmp_path)
    yield b
    for store in b.stores:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backends whose data outlives the store object (the memory store's does not)."""
    b = _backend(request.param, request, tmp_path)
    yield b
    for store in b.stores:
        await store.close()


def state(saga_id: str = "demo:1", *, status: SagaStatus = SagaStatus.RUNNING,
          started: datetime = T0, name: str = "demo", step: int = 0) -> SagaState:  # fmt: skip
    return SagaState(
        saga_id=saga_id,
        name=name,
        version=1,
        status=status,
        data={"n": step, "text": "é ü \u2603"},
        steps={},
        stage=step,
        trigger_id="m-1",
        started_at=started,
        updated_at=started + timedelta(seconds=step),
    )


def entry(id_: str, saga_id: str = "demo:1") -> OutboxEntry:
    headers = (("ce_id", id_.encode()), ("ce_type", b"demo.do.v1"), ("raw", b"\x00\xff\x80"))
    return OutboxEntry(id_, saga_id, "demo.commands", b"k-1", b'{"x":1}', headers, T0)


async def test_an_unknown_saga_loads_as_none(backend: Backend) -> None:
    store = await backend.store()
    assert await store.load("demo:nope") is None


async def test_a_new_saga_is_stored_at_revision_1_and_loads_equal(backend: Backend) -> None:
    store = await backend.store()
    assert await store.save(SagaWrite(state(), 0)) == 1
    stored = await store.load("demo:1")
    assert stored is not None
    assert stored.revision == 1
    assert stored.state == state()


async def test_what_adaptive_sagas_keep_in_the_state_survives_reopening_the_store(
    durable_backend: Backend,
) -> None:
    # early signals, the branches taken, the deadline and late flag, uncertain steps: all in
    # the state column, so no schema change; a reopened store (a restart) reads them back
    adaptive = replace(
        state(),
        steps={"s": StepState(name="s", uncertain=True, status=StepStatus.COMPENSATING)},
        substage=1,
        branches={"payroll": "de"},
        deadline_at=T0 + timedelta(days=3),
        deadline_timer="demo:1/_saga/deadline/1",
        late=True,
        early=[
            EarlySignal(step="approval", type="hr.ok.v1", message_id="a-1", data={"by": "g"}, at=T0)
        ],
    )
    store = await durable_backend.store()
    await store.save(SagaWrite(adaptive, 0))
    await store.close()
    reopened = await durable_backend.store()
    stored = await reopened.load("demo:1")
    assert stored is not None
    assert stored.state == adaptive


async def test_starting_a_saga_twice_conflicts_and_keeps_the_first(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(step=0), 0))
    with pytest.raises(RevisionConflictError):
        await store.save(SagaWrite(state(step=5), 0, outbox=(entry("c-1"),)))
    stored = await store.load("demo:1")
    assert stored is not None
    assert stored.state.stage == 0
    assert await store.claim_outbox(now=T0, limit=10, lease=LEASE) == []


async def test_a_stale_revision_writes_nothing_at_all(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))
    assert await store.save(SagaWrite(state(step=1), 1)) == 2
    stale = SagaWrite(
        state(step=9),
        1,
        outbox=(entry("c-9"),),
        timers_to_set=(TimerToSet("t-9", "demo:1", T0),),
    )
    with pytest.raises(RevisionConflictError):
        await store.save(stale)
    stored = await store.load("demo:1")
    assert stored is not None
    assert (stored.revision, stored.state.stage) == (2, 1)
    assert await store.claim_outbox(now=T0, limit=10, lease=LEASE) == []
    assert await store.claim_due_timers(now=T0, limit=10, lease=LEASE) == []


async def test_outbox_rows_come_back_in_order_byte_for_byte(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, outbox=(entry("c-2"), entry("c-1"))))
    await store.save(SagaWrite(state(step=1), 1, outbox=(entry("c-3"),)))
    claimed = await store.claim_outbox(now=T0, limit=10, lease=LEASE)
    assert claimed == [entry("c-2"), entry("c-1"), entry("c-3")]
    assert claimed[0].record.headers == entry("c-2").headers


async def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, outbox=(entry("c-1"), entry("c-2"))))
    first = await store.claim_outbox(now=T0, limit=1, lease=LEASE)
    second = await store.claim_outbox(now=T0, limit=10, lease=LEASE)
    assert [e.id for e in first] == ["c-1"]
    assert [e.id for e in second] == ["c-2"]
    assert await store.claim_outbox(now=T0 + LEASE / 2, limit=10, lease=LEASE) == []
    again = await store.claim_outbox(now=T0 + LEASE, limit=10, lease=LEASE)
    assert [e.id for e in again] == ["c-1", "c-2"]  # the relay that claimed them died


async def test_sent_rows_are_gone_and_a_repeated_id_is_stored_once(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, outbox=(entry("c-1"), entry("c-2"))))
    await store.save(SagaWrite(state(step=1), 1, outbox=(entry("c-1"),)))
    await store.mark_sent(["c-1", "unknown"])
    claimed = await store.claim_outbox(now=T0, limit=10, lease=LEASE)
    assert [e.id for e in claimed] == ["c-2"]
    await store.mark_sent(["c-2"])
    assert (await store.counts())["outbox"] == 0


async def test_only_due_timers_are_claimed_earliest_first(backend: Backend) -> None:
    store = await backend.store()
    timers = (
        TimerToSet("t-late", "demo:1", T0 + timedelta(minutes=5)),
        TimerToSet("t-b", "demo:1", T0 + timedelta(seconds=30)),
        TimerToSet("t-a", "demo:1", T0 + timedelta(seconds=10)),
    )
    await store.save(SagaWrite(state(), 0, timers_to_set=timers))
    assert await store.claim_due_timers(now=T0, limit=10, lease=LEASE) == []
    due = await store.claim_due_timers(now=T0 + timedelta(minutes=1), limit=10, lease=LEASE)
    assert [(t.id, t.at) for t in due] == [("t-a", timers[2].at), ("t-b", timers[1].at)]
    assert all(t.saga_id == "demo:1" for t in due)
    # held by the claim until the lease ends; cancelled ones never come back
    assert await store.claim_due_timers(now=T0 + timedelta(minutes=1), limit=10, lease=LEASE) == []
    await store.cancel_timers(["t-a"])
    later = T0 + timedelta(minutes=1) + LEASE
    assert [t.id for t in await store.claim_due_timers(now=later, limit=10, lease=LEASE)] == ["t-b"]


async def test_a_save_cancels_timers_then_sets_new_ones(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, timers_to_set=(TimerToSet("t-1", "demo:1", T0),)))
    write = SagaWrite(
        state(step=1),
        1,
        timers_to_set=(TimerToSet("t-2", "demo:1", T0 + timedelta(seconds=1)),),
        timers_to_cancel=("t-1",),
    )
    await store.save(write)
    due = await store.claim_due_timers(now=T0 + timedelta(hours=1), limit=10, lease=LEASE)
    assert [t.id for t in due] == ["t-2"]


async def test_resetting_a_timer_moves_it_and_releases_its_claim(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, timers_to_set=(TimerToSet("t-1", "demo:1", T0),)))
    assert len(await store.claim_due_timers(now=T0, limit=10, lease=LEASE)) == 1
    moved = TimerToSet("t-1", "demo:1", T0 + timedelta(seconds=5))
    await store.save(SagaWrite(state(step=1), 1, timers_to_set=(moved,)))
    assert await store.claim_due_timers(now=T0, limit=10, lease=LEASE) == []
    due = await store.claim_due_timers(now=moved.at, limit=10, lease=LEASE)
    assert [(t.id, t.at) for t in due] == [("t-1", moved.at)]


async def test_requests_queue_in_order_and_leave_with_the_write_that_does_them(
    backend: Backend,
) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))
    first = ControlRequest("r-1", "demo:1", "cancel", "hire withdrawn", T0)
    second = ControlRequest("r-2", "demo:1", "retry", "fixed", T0 + timedelta(seconds=1))
    await store.request(first)
    await store.request(second)
    await store.request(first)  # the same request again: queued once
    assert await store.pending_requests(limit=10) == [first, second]
    await store.save(SagaWrite(state(step=1), 1, request_done="r-1"))
    assert await store.pending_requests(limit=10) == [second]
    await store.drop_request("r-2")
    assert await store.pending_requests(limit=10) == []


async def test_listing_filters_by_status_name_and_start_newest_first(backend: Backend) -> None:
    store = await backend.store()
    rows = [
        state("demo:1", started=T0),
        state("demo:2", started=T0 + timedelta(minutes=1), status=SagaStatus.COMPLETED),
        state("other:3", started=T0 + timedelta(minutes=2), name="other"),
        state("demo:4", started=T0 + timedelta(minutes=3), status=SagaStatus.NEEDS_ATTENTION),
    ]
    for s in rows:
        await store.save(SagaWrite(s, 0))

    async def ids(**kw: object) -> list[str]:
        return [s.saga_id for s in await store.list_sagas(SagaQuery(**kw))]  # type: ignore[arg-type]

    assert await ids() == ["demo:4", "other:3", "demo:2", "demo:1"]
    assert await ids(limit=2) == ["demo:4", "other:3"]
    assert await ids(name="demo") == ["demo:4", "demo:2", "demo:1"]
    assert await ids(statuses=(SagaStatus.RUNNING,)) == ["other:3", "demo:1"]
    assert await ids(statuses=(SagaStatus.COMPLETED, SagaStatus.NEEDS_ATTENTION)) == [
        "demo:4",
        "demo:2",
    ]
    assert await ids(since=T0 + timedelta(minutes=1), name="demo") == ["demo:4", "demo:2"]
    assert (await store.counts())["sagas"] == 4


async def test_two_replicas_saving_the_same_revision_one_wins(backend: Backend) -> None:
    a, b = await backend.store(), await backend.store()
    await a.save(SagaWrite(state(), 0))
    results = await asyncio.gather(
        a.save(SagaWrite(state(step=1), 1, outbox=(entry("from-a"),))),
        b.save(SagaWrite(state(step=2), 1, outbox=(entry("from-b"),))),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["RevisionConflictError", "int"]
    stored = await a.load("demo:1")
    assert stored is not None
    assert stored.revision == 2
    winner = "from-a" if stored.state.stage == 1 else "from-b"
    assert [e.id for e in await b.claim_outbox(now=T0, limit=10, lease=LEASE)] == [winner]


async def test_two_relays_claim_disjoint_batches(backend: Backend) -> None:
    a, b = await backend.store(), await backend.store()
    await a.save(SagaWrite(state(), 0, outbox=tuple(entry(f"c-{i:02}") for i in range(40))))
    batches = await asyncio.gather(
        *(s.claim_outbox(now=T0, limit=7, lease=LEASE) for s in (a, b, a, b, a, b, a))
    )
    ids = [e.id for batch in batches for e in batch]
    assert sorted(ids) == [f"c-{i:02}" for i in range(40)]


async def test_everything_survives_reopening_the_database(durable_backend: Backend) -> None:
    backend = durable_backend
    store = await backend.store()
    await store.save(
        SagaWrite(
            state(),
            0,
            outbox=(entry("c-1"),),
            timers_to_set=(TimerToSet("t-1", "demo:1", T0),),
        )
    )
    await store.request(ControlRequest("r-1", "demo:1", "cancel", "why", T0))
    await store.close()
    backend.stores.remove(store)
    again = await backend.store()
    stored = await again.load("demo:1")
    assert stored is not None
    assert stored.state == state()
    assert await again.counts() == {"sagas": 1, "outbox": 1, "timers": 1, "requests": 1}


async def test_store_urls_pick_the_backend() -> None:
    assert isinstance(store_from_url("memory"), MemorySagaStore)
    assert isinstance(store_from_url("sqlite:/tmp/x.db"), SqliteSagaStore)
    assert isinstance(store_from_url("postgresql://u@127.0.0.1/db"), PostgresSagaStore)
    with pytest.raises(Exception, match="sqlite:PATH"):
        store_from_url("mysql://x")


async def test_update_loads_changes_and_saves_in_one_step(backend: Backend) -> None:
    store = await backend.store()
    seen: list[int | None] = []

    def bump(stored: StoredSaga | None) -> SagaWrite | None:
        seen.append(None if stored is None else stored.revision)
        step = 0 if stored is None else stored.state.stage + 1
        revision = 0 if stored is None else stored.revision
        return SagaWrite(state(step=step), revision, outbox=(entry(f"c-{step}"),))

    await store.update("demo:1", bump)
    written = await store.update("demo:1", bump)
    assert written is not None
    assert written.state.stage == 1
    assert seen == [None, 1]
    assert await store.update("demo:1", lambda stored: None) is None
    stored = await store.load("demo:1")
    assert stored is not None
    assert (stored.revision, stored.state.stage) == (2, 1)
    assert [e.id for e in await store.claim_outbox(now=T0, limit=9, lease=LEASE)] == ["c-0", "c-1"]


async def test_an_update_whose_change_raises_writes_nothing(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))

    def broken(stored: StoredSaga | None) -> SagaWrite | None:
        raise ValueError("a bug in a saga definition")

    with pytest.raises(ValueError, match="a bug"):
        await store.update("demo:1", broken)
    stored = await store.load("demo:1")
    assert stored is not None
    assert stored.revision == 1
    await store.save(SagaWrite(state(step=1), 1))  # the store is still usable


async def test_concurrent_updates_of_one_saga_all_land(backend: Backend) -> None:
    a, b = await backend.store(), await backend.store()
    await a.save(SagaWrite(state(), 0))
    conflicts: list[str] = []

    def bump(stored: StoredSaga | None) -> SagaWrite | None:
        assert stored is not None
        return SagaWrite(state(step=stored.state.stage + 1), stored.revision)

    await asyncio.gather(
        *(s.update("demo:1", bump, on_conflict=conflicts.append) for s in (a, b) * 5)
    )
    stored = await a.load("demo:1")
    assert stored is not None
    assert (stored.revision, stored.state.stage) == (11, 10)
    assert set(conflicts) <= {"demo:1"}


async def test_gauges_count_the_outbox_and_the_unfinished_sagas(backend: Backend) -> None:
    store = await backend.store()
    empty = await store.gauges()
    assert (empty.outbox_backlog, empty.outbox_oldest, empty.active, empty.oldest_active) == (
        0,
        None,
        {},
        {},
    )
    minute = timedelta(minutes=1)
    await store.save(SagaWrite(state("demo:1"), 0, outbox=(entry("c-1"), entry("c-2"))))
    await store.save(SagaWrite(state("demo:2", status=SagaStatus.COMPLETED), 0))
    attention = state("other:3", name="other", status=SagaStatus.NEEDS_ATTENTION)
    await store.save(SagaWrite(replace(attention, started_at=T0 + 2 * minute), 0))
    compensating = state("demo:4", status=SagaStatus.COMPENSATING, started=T0 + 3 * minute)
    await store.save(SagaWrite(compensating, 0))
    g = await store.gauges()
    assert (g.outbox_backlog, g.outbox_oldest) == (2, T0)
    assert g.active == {"demo": {"running": 1, "compensating": 1}, "other": {"needs_attention": 1}}
    assert g.oldest_active == {"demo": T0, "other": T0 + 2 * minute}
    assert store.kind == backend.name


async def test_update_many_applies_in_order_and_each_sees_the_one_before(backend: Backend) -> None:
    store = await backend.store()

    def bump(stored: StoredSaga | None) -> SagaWrite | None:
        if stored is None:
            return SagaWrite(state(), 0, outbox=(entry("c-0"),))
        step = stored.state.stage + 1
        return SagaWrite(state(step=step), stored.revision, outbox=(entry(f"c-{step}"),))

    writes = await store.update_many(
        [("demo:1", bump), ("demo:1", bump), ("demo:2", lambda stored: None), ("demo:1", bump)]
    )
    assert [None if w is None else w.state.stage for w in writes] == [0, 1, None, 2]
    stored = await store.load("demo:1")
    assert stored is not None
    assert stored.revision == 3
    claimed = await store.claim_outbox(now=T0, limit=9, lease=LEASE)
    assert [e.id for e in claimed] == ["c-0", "c-1", "c-2"]
    assert await store.update_many([]) == []


async def test_update_many_of_many_sagas_keeps_each_sagas_order_and_the_input_order(
    backend: Backend,
) -> None:
    """Sagas interleaved in one batch (PostgreSQL runs different sagas at the same time):
    each saga sees its own updates in order, and the writes come back in input order."""
    store = await backend.store()

    def bump(stored: StoredSaga | None, *, saga_id: str) -> SagaWrite | None:
        if stored is None:
            return SagaWrite(state(saga_id), 0, outbox=(entry(f"{saga_id}/0", saga_id),))
        step = stored.state.stage + 1
        write = state(saga_id, step=step)
        return SagaWrite(write, stored.revision, outbox=(entry(f"{saga_id}/{step}", saga_id),))

    ids = [f"demo:{k % 7}" for k in range(40)]
    writes = await store.update_many([(i, functools.partial(bump, saga_id=i)) for i in ids])
    seen: dict[str, int] = {}
    for saga_id, write in zip(ids, writes, strict=True):
        assert write is not None
        assert write.state.saga_id == saga_id
        assert write.state.stage == seen.get(saga_id, -1) + 1
        seen[saga_id] = write.state.stage
    for saga_id, last in seen.items():
        stored = await store.load(saga_id)
        assert stored is not None
        assert stored.state.stage == last
        assert stored.revision == last + 1


async def test_two_replicas_starting_the_same_sagas_in_batches_start_each_once(
    backend: Backend,
) -> None:
    """Two coordinators fed the same triggers at once: each saga starts once, with the
    commands of the one that started it, and the other's change sees that saga as stored."""
    a, b = await backend.store(), await backend.store()
    ids = [f"demo:{k}" for k in range(30)]
    conflicts: list[str] = []

    def start(stored: StoredSaga | None, *, saga_id: str, who: str) -> SagaWrite | None:
        if stored is not None:
            return None  # the trigger came again: started already
        return SagaWrite(state(saga_id), 0, outbox=(entry(f"{saga_id}/{who}", saga_id),))

    def batch(who: str) -> list[tuple[str, Change]]:
        return [(i, functools.partial(start, saga_id=i, who=who)) for i in ids]

    by_a, by_b = await asyncio.gather(
        a.update_many(batch("a"), on_conflict=conflicts.append),
        b.update_many(batch("b"), on_conflict=conflicts.append),
    )
    for saga_id, x, y in zip(ids, by_a, by_b, strict=True):
        assert (x is None) != (y is None), f"{saga_id} started {'twice' if x else 'never'}"
        stored = await a.load(saga_id)
        assert stored is not None
        assert stored.revision == 1
    claimed = await a.claim_outbox(now=T0, limit=100, lease=LEASE)
    assert sorted(e.saga_id for e in claimed) == sorted(ids)
    winners = {e.saga_id: e.id.rsplit("/", 1)[1] for e in claimed}
    assert winners == {i: ("a" if x is not None else "b") for i, x in zip(ids, by_a, strict=True)}


async def test_purge_finished_removes_only_ended_sagas_last_updated_before_the_cutoff(
    backend: Backend,
) -> None:
    store = await backend.store()
    hour = timedelta(hours=1)
    old, cutoff = T0, T0 + 2 * hour
    for i, status in enumerate(SagaStatus):
        await store.save(SagaWrite(state(f"old:{i}", status=status, started=old), 0))
        await store.save(SagaWrite(state(f"new:{i}", status=status, started=cutoff), 0))
    # Started long ago but updated after the cutoff: it ended recently, so it stays.
    late = state("late:1", status=SagaStatus.COMPLETED, started=old)
    late.updated_at = cutoff + hour
    await store.save(SagaWrite(late, 0, outbox=(entry("c-late", "late:1"),)))
    # Its outbox row is not the store's to purge, even for a saga purged.
    ended = state("ended:1", status=SagaStatus.CANCELLED, started=old)
    await store.save(SagaWrite(ended, 0, outbox=(entry("c-ended", "ended:1"),)))

    assert await store.purge_finished(cutoff) == len(TERMINAL) + 1
    remaining = {s.saga_id for s in await store.list_sagas(SagaQuery(limit=100))}
    old_kept = {f"old:{i}" for i, s in enumerate(SagaStatus) if s not in TERMINAL}
    assert remaining == old_kept | {f"new:{i}" for i in range(len(SagaStatus))} | {"late:1"}
    claimed = await store.claim_outbox(limit=10, now=cutoff, lease=timedelta(seconds=30))
    assert sorted(e.id for e in claimed) == ["c-ended", "c-late"]
    assert await store.purge_finished(cutoff) == 0


# -- quarantine: a saga whose stored state cannot be read (issue 16, item 2) --------------

BROKEN = '{"saga_id": "demo:1", "status": "runn'  # a row cut off, as a bad hand edit leaves it


async def overwrite_state(store: SagaStore, saga_id: str, text: str) -> None:
    """What an operator (or a bug) does to a row by hand: its state column replaced."""
    if isinstance(store, MemorySagaStore):
        store._sagas[saga_id].json = text
    elif isinstance(store, SqliteSagaStore):
        sql = "UPDATE saga_state SET state = ? WHERE saga_id = ?"
        await store.database.write(lambda c: c.execute(sql, (text, saga_id)))
    else:
        assert isinstance(store, PostgresSagaStore)
        async with store.database.connection() as conn:
            await conn.execute("UPDATE saga_state SET state = $1 WHERE saga_id = $2", text, saga_id)


def kept_reply(n: int) -> SetAsideInput:
    headers = (("ce_id", f"r-{n}".encode()), ("ce_type", b"demo.done.v1"), ("raw", b"\x00\xff"))
    record = OutgoingRecord("demo.replies", b"k-1", b'{"n":%d}' % n, headers)
    return SetAsideInput("demo:1", T0 + timedelta(seconds=n), record=record)


async def test_an_unreadable_state_reads_as_its_raw_row_and_lists_as_needing_attention(
    backend: Backend,
) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))
    await store.save(SagaWrite(state("demo:2", started=T0 + timedelta(minutes=1)), 0))
    await overwrite_state(store, "demo:1", BROKEN)
    fresh = await backend.store()  # a coordinator starting on the row
    unreadable = await fresh.read("demo:1")
    assert isinstance(unreadable, UnreadableSaga)
    assert (unreadable.raw, unreadable.revision, unreadable.name) == (BROKEN, 1, "demo")
    assert unreadable.error
    assert unreadable.quarantine is None
    with pytest.raises(UnreadableStateError, match="demo:1"):
        await fresh.load("demo:1")
    listed = await fresh.list_sagas(SagaQuery())
    assert [(s.saga_id, s.status) for s in listed] == [
        ("demo:2", SagaStatus.RUNNING),
        ("demo:1", SagaStatus.NEEDS_ATTENTION),
    ]
    assert (listed[1].attention or "").startswith("unreadable state: ")


async def test_setting_aside_quarantines_the_saga_and_keeps_its_inputs_in_order(
    backend: Backend,
) -> None:
    store = await backend.store()
    timer = TimerToSet("t-1", "demo:1", T0)
    await store.save(SagaWrite(state(), 0, timers_to_set=(timer,)))
    await store.save(SagaWrite(state("demo:2"), 0))
    await overwrite_state(store, "demo:1", BROKEN)
    fresh = await backend.store()

    def aside(*inputs: SetAsideInput, cancel: tuple[str, ...] = ()) -> Change:
        def change(stored: StoredSaga | UnreadableSaga | None) -> SetAside | SagaWrite | None:
            if isinstance(stored, UnreadableSaga):
                reason = f"unreadable state: {stored.error}"
                return SetAside("demo:1", stored.revision, reason, inputs, cancel)
            assert stored is not None
            return SagaWrite(state(stored.state.saga_id, step=1), stored.revision)

        return change

    timer_kept = SetAsideInput("demo:1", T0, timer_id="t-1")
    await fresh.update("demo:1", aside(timer_kept, cancel=("t-1",)))
    writes = await fresh.update_many(
        [("demo:1", aside(kept_reply(1))), ("demo:2", aside()), ("demo:1", aside(kept_reply(2)))]
    )
    assert [type(w).__name__ for w in writes] == ["SetAside", "SagaWrite", "SetAside"]
    quarantined = await fresh.read("demo:1")
    assert isinstance(quarantined, UnreadableSaga)
    assert (quarantined.quarantine or "").startswith("unreadable state: ")
    assert quarantined.raw == BROKEN  # the row is kept as it was, for the operator
    assert quarantined.revision > 1  # so a writer that loaded it before conflicts
    assert await fresh.claim_due_timers(now=T0, limit=10, lease=LEASE) == []
    kept = await fresh.set_aside_inputs(saga_id="demo:1", limit=10)
    assert [replace(k, seq=0) for k in kept] == [timer_kept, kept_reply(1), kept_reply(2)]
    assert [k.seq for k in kept] == sorted(k.seq for k in kept)
    assert await fresh.set_aside_inputs(limit=10) == []  # nothing to apply until released
    needing = await fresh.list_sagas(SagaQuery(statuses=(SagaStatus.NEEDS_ATTENTION,)))
    assert [s.saga_id for s in needing] == ["demo:1"]
    stale = SetAside("demo:1", 1, "unreadable state", (kept_reply(3),))
    with pytest.raises(RevisionConflictError):
        await fresh.save(stale)


async def test_a_retry_of_the_fixed_row_releases_it_and_hands_out_its_inputs(
    backend: Backend,
) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))
    await overwrite_state(store, "demo:1", BROKEN)
    fresh = await backend.store()
    unreadable = await fresh.read("demo:1")
    assert isinstance(unreadable, UnreadableSaga)
    inputs = (kept_reply(1), kept_reply(2))
    await fresh.save(SetAside("demo:1", unreadable.revision, "unreadable state: x", inputs))
    await overwrite_state(fresh, "demo:1", state().to_json())  # the operator's fix
    fixed = await (await backend.store()).read("demo:1")
    assert isinstance(fixed, StoredSaga)
    assert fixed.state == state()
    assert fixed.quarantine == "unreadable state: x"  # still held until the retry
    await fresh.save(SagaWrite(state(step=1), fixed.revision, release=True))
    released = await fresh.read("demo:1")
    assert isinstance(released, StoredSaga)
    assert released.quarantine is None
    first, second = await fresh.set_aside_inputs(limit=10)
    assert (first.record, second.record) == (inputs[0].record, inputs[1].record)
    await fresh.save(SagaWrite(state(step=2), released.revision, set_aside_done=(first.seq,)))
    assert await fresh.set_aside_inputs(limit=10) == [second]
    await fresh.drop_set_aside([second.seq, 10**9])
    assert await fresh.set_aside_inputs(limit=10) == []
    assert await fresh.set_aside_inputs(saga_id="demo:1", limit=10) == []
