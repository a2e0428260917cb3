"""A saga whose stored state cannot be read holds back itself only (issue 16, item 2).

Before: a row corrupted by hand, with a due timer, crashed the coordinator on every start
(the timer loop raised pydantic's ValidationError); timers are claimed in due order, so no
timer behind it fired, for any saga; ``bus sagas list`` died with a traceback; a reply
for it was lost. Now its first input quarantines it (needs_attention, "unreadable state",
the raw row kept), its timer and the reply are set aside, everything else goes on, and a
retry after the row is fixed applies what was set aside.

On the real stores (SQLite and PostgreSQL), with the coordinator's app on a Worker (its
lifespan tasks: timers, requests, relay) and a virtual clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus import MemoryBroker, MemoryTransport, Publisher
from handlers.identity.contracts import IdentityAccountProvisioned
from sagas import Catalog, SagaStatus, StepStatus
from sagas.coordinator import Coordinator
from sagas.definitions.onboarding import onboarding
from sagas.requests import request_action
from sagas.stores import PostgresSagaStore, SagaQuery, SagaStore, SqliteSagaStore, StoredSaga
from sagas.stores.base import UnreadableSaga
from sagas.testing import VirtualClock
from tests.integration.test_onboarding_handlers import hire
from tests.waiting import wait_until

BROKEN = '{"saga_id": "onboarding:e-1", "status": "runn'  # cut off by a bad hand edit


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], Awaitable[SagaStore]]:
    """A function opening a new store object on one database (a coordinator starting)."""

    async def sqlite() -> SagaStore:
        store = SqliteSagaStore(tmp_path / "sagas.db")
        await store.open()
        return store

    if request.param == "sqlite":
        return sqlite
    dsn = request.getfixturevalue("postgres_dsn")

    async def postgres() -> SagaStore:
        store = PostgresSagaStore(dsn, max_connections=4)
        await store.open()
        return store

    return postgres


async def overwrite_state(store: SagaStore, saga_id: str, text: str) -> None:
    """What an operator (or a bug) does to a row by hand: its state column replaced."""
    if isinstance(store, SqliteSagaStore):
        sql = "UPDATE saga_state SET state = ? WHERE saga_id = ?"
        await store.database.write(lambda c: c.execute(sql, (text, saga_id)))
        return
    assert isinstance(store, PostgresSagaStore)
    async with store.database.connection() as conn:
        await conn.execute("UPDATE saga_state SET state = $1 WHERE saga_id = $2", text, saga_id)


@asynccontextmanager
async def coordinator(
    store: SagaStore, broker: MemoryBroker, clock: VirtualClock
) -> AsyncIterator[tuple[Coordinator, asyncio.Task[None]]]:
    """A coordinator's app running on a Worker (lifespan tasks included) until the end."""
    transport = MemoryTransport(broker)
    await transport.start()
    c = Coordinator(Catalog([onboarding]), store, transport, clock=clock, poll_interval_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        yield c, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await transport.stop()
        await store.close()


async def attempts(store: SagaStore, saga_id: str) -> int:
    stored = await store.read(saga_id)
    return stored.state.steps["create_account"].attempts if isinstance(stored, StoredSaga) else 0


async def alive(task: asyncio.Task[None], check: Callable[[], Awaitable[bool]]) -> bool:
    """``check()``; a coordinator that stopped fails the test at once, with its error."""
    if task.done():
        await task
        raise AssertionError("the coordinator stopped")
    return await check()


async def test_an_unreadable_saga_is_quarantined_and_the_others_go_on(
    open_store: Callable[[], Awaitable[SagaStore]],
) -> None:
    broker = MemoryBroker(default_partitions=2)
    clock = VirtualClock(datetime(2026, 6, 1, tzinfo=UTC))
    ids = ["onboarding:e-1", "onboarding:e-2", "onboarding:e-3"]
    # e-1 starts a second earlier: its reply timer is the first due, ahead of the others'
    async with coordinator(await open_store(), broker, clock) as (c, task):
        hr = Publisher(c.transport, source="bus://hr")
        for n, saga_id in enumerate(ids):
            await hr.publish(hire(saga_id.split(":")[1]))
            await wait_until(
                lambda i=saga_id: alive(task, lambda: _started(c.store, i)),
                timeout_s=30,
                what=f"{saga_id} to send its first command",
            )
            if n == 0:
                clock.advance(timedelta(seconds=1))
    store = await open_store()
    good = await store.read("onboarding:e-1")
    assert isinstance(good, StoredSaga)
    await overwrite_state(store, "onboarding:e-1", BROKEN)
    await store.close()
    # while no coordinator runs: e-1's reply arrives, then every reply timer becomes due
    reply = IdentityAccountProvisioned(employee_id="e-1", login="e1", email="e1@example.com")
    transport = MemoryTransport(broker)
    await transport.start()
    await Publisher(transport, source="bus://identity").publish(
        reply, correlationid="onboarding:e-1"
    )
    clock.advance(timedelta(seconds=30))

    async with coordinator(await open_store(), broker, clock) as (c, task):
        store = c.store
        # the timers behind e-1's fired: e-2 and e-3 sent their command again
        await wait_until(
            lambda: alive(task, lambda: _all_at(store, ids[1:], 2)),
            timeout_s=30,
            what="the reply timers of e-2 and e-3 to fire",
        )
        # e-1 is quarantined, its timer and its reply set aside, its row kept as it was
        await wait_until(
            lambda: alive(task, lambda: _kept(store, "onboarding:e-1", 2)),
            timeout_s=30,
            what="e-1's timer and reply to be set aside",
        )
        quarantined = await store.read("onboarding:e-1")
        assert isinstance(quarantined, UnreadableSaga)
        assert quarantined.raw == BROKEN
        assert (quarantined.quarantine or "").startswith("unreadable state: ")
        kept = await store.set_aside_inputs(saga_id="onboarding:e-1", limit=10)
        assert sorted(k.timer_id is None for k in kept) == [False, True]  # a timer, a reply
        listed = {s.saga_id: s for s in await store.list_sagas(SagaQuery())}
        assert listed["onboarding:e-1"].status == SagaStatus.NEEDS_ATTENTION
        assert {listed[i].status for i in ids[1:]} == {SagaStatus.RUNNING}
        assert c.stats.set_aside == 2

        # the operator fixes the row and asks for a retry: the reply is applied
        await overwrite_state(store, "onboarding:e-1", good.state.to_json())
        await request_action(store, "onboarding:e-1", "retry", reason="row fixed", now=clock())
        fixed = await wait_until(
            lambda: alive(task, lambda: _reply_applied(store, "onboarding:e-1")),
            timeout_s=30,
            what="e-1's set-aside reply to be applied after the retry",
        )
        assert fixed
        # the reply and the timer are applied one at a time: the check waits for both
        emptied = await wait_until(
            lambda: alive(task, lambda: _nothing_set_aside(store, "onboarding:e-1")),
            timeout_s=30,
            what="e-1's set-aside timer to be applied after its reply",
        )
        assert emptied
        assert c.stats.set_aside_applied >= 1  # the timer changes nothing after the reply
        stored = await store.read("onboarding:e-1")
        assert isinstance(stored, StoredSaga)
        assert stored.quarantine is None
        assert stored.state.status == SagaStatus.RUNNING


async def _started(store: SagaStore, saga_id: str) -> bool:
    return await attempts(store, saga_id) == 1


async def _all_at(store: SagaStore, ids: list[str], n: int) -> bool:
    return all([await attempts(store, i) == n for i in ids])


async def _kept(store: SagaStore, saga_id: str, n: int) -> bool:
    return len(await store.set_aside_inputs(saga_id=saga_id, limit=10)) == n


async def _nothing_set_aside(store: SagaStore, saga_id: str) -> bool:
    return await store.set_aside_inputs(saga_id=saga_id, limit=10) == []


async def _reply_applied(store: SagaStore, saga_id: str) -> bool:
    stored = await store.read(saga_id)
    if not isinstance(stored, StoredSaga):
        return False
    return stored.state.steps["create_account"].status == StepStatus.COMPLETED
