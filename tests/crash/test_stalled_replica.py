"""A replica stopped inside its transaction holds back only the sagas it locked, and not for long.

Issue 16, item 3: a coordinator SIGSTOPped inside ``SELECT ... FOR UPDATE`` stalled the
other replica completely (40 s, nothing logged): the store set no ``lock_timeout``, and the
group commit retried the whole batch, with every other partition queued behind it.

The stalled replica is a connection holding a saga's row lock in an open transaction,
which is exactly what a stopped process leaves on the server. A real coordinator on the
same PostgreSQL database then gets inputs for that saga and for others: the others'
partitions go on while the lock is held; the locked saga's input is written once the lock
goes - released by its holder, or by the server ending the stopped session after
``idle_in_transaction_session_timeout`` - and the wait is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from bus import (
    DedupKey,
    LockTimeoutError,
    MemoryBroker,
    MemoryTransport,
    Metrics,
    PostgresDatabase,
    PostgresDedupStore,
    PostgresTimeouts,
    Publisher,
    partition_for_key,
)
from handlers.hr.contracts import HireWithdrawn
from sagas import Catalog, SagaStatus
from sagas.coordinator import Coordinator
from sagas.definitions.onboarding import onboarding
from sagas.group_commit import MAX_BACKOFF_S
from sagas.metrics import SagaMetrics
from sagas.stores import PostgresSagaStore
from tests.integration.test_onboarding_handlers import hire
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres

PARTITIONS = 4
EMPLOYEES = [f"e-{n}" for n in range(12)]
LOCKED = "e-0"
LOCK_TIMEOUT_S = 1.0


def saga_id(employee: str) -> str:
    return f"onboarding:{employee}"


@asynccontextmanager
async def coordinator(
    dsn: str, metrics: Metrics, timeouts: PostgresTimeouts
) -> AsyncIterator[Coordinator]:
    """One coordinator replica on ``dsn``, running until the block ends."""
    broker = MemoryBroker(default_partitions=PARTITIONS)
    store = PostgresSagaStore(dsn, max_connections=8, timeouts=timeouts)
    await store.open()
    transport = MemoryTransport(broker)
    await transport.start()
    c = Coordinator(
        Catalog([onboarding]), store, transport, poll_interval_s=0.02, observer=SagaMetrics(metrics)
    )
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(c.run(stop))
            try:
                yield c
            finally:
                stop.set()
    finally:
        await transport.stop()
        await store.close()


async def statuses(store: PostgresSagaStore, employees: list[str]) -> dict[str, SagaStatus | None]:
    got: dict[str, SagaStatus | None] = {}
    for e in employees:
        stored = await store.load(saga_id(e))  # a plain read: a row lock does not block it
        got[e] = None if stored is None else stored.state.status
    return got


async def start_all(c: Coordinator) -> Publisher:
    hr = Publisher(c.transport, source="bus://hr")
    for e in EMPLOYEES:
        await hr.publish(hire(e))
    await wait_until(
        lambda: statuses(c.store, EMPLOYEES),  # type: ignore[arg-type]
        until=lambda got: all(s == SagaStatus.RUNNING for s in got.values()),
        timeout_s=30,
        what="every saga started",
    )
    return hr


async def lock_row(conn: Any, employee: str) -> None:
    """What a replica stopped inside its batch leaves behind: the row locked, the
    transaction open and idle."""
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1 FROM saga_state WHERE saga_id = $1 FOR UPDATE", saga_id(employee))


async def lock_waits(dsn: str) -> int:
    """Sessions of this database waiting for a lock right now."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    finally:
        await conn.close()


def same_partition(employee: str) -> bool:
    return partition_for_key(employee.encode(), PARTITIONS) == partition_for_key(
        LOCKED.encode(), PARTITIONS
    )


async def test_a_saga_locked_by_a_stalled_replica_holds_back_only_its_partition(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sagas.group_commit")
    metrics = Metrics()
    timeouts = PostgresTimeouts(lock_timeout_s=LOCK_TIMEOUT_S)
    free = [e for e in EMPLOYEES if not same_partition(e)]
    assert free, "every employee landed in the locked one's partition"
    async with coordinator(postgres_dsn, metrics, timeouts) as c:
        hr = await start_all(c)
        stalled = await asyncpg.connect(postgres_dsn)
        try:
            await lock_row(stalled, LOCKED)
            await hr.publish(HireWithdrawn(employee_id=LOCKED))
            await wait_until(
                lambda: lock_waits(postgres_dsn),
                timeout_s=30,
                what="the coordinator to wait for the locked saga's row",
            )
            for e in free:
                await hr.publish(HireWithdrawn(employee_id=e))
            # the stalled replica still holds the lock: the other partitions go on
            await wait_until(
                lambda: statuses(c.store, free),  # type: ignore[arg-type]
                until=lambda got: all(s != SagaStatus.RUNNING for s in got.values()),
                timeout_s=10 * LOCK_TIMEOUT_S + MAX_BACKOFF_S,
                what="the withdrawals of sagas in other partitions than the locked one's",
            )
            assert (await statuses(c.store, [LOCKED]))[LOCKED] == SagaStatus.RUNNING  # type: ignore[arg-type]
            released_at = time.monotonic()
        finally:
            await stalled.close()  # its transaction ends: the lock is released
        await wait_until(
            lambda: statuses(c.store, [LOCKED]),  # type: ignore[arg-type]
            until=lambda got: got[LOCKED] != SagaStatus.RUNNING,
            timeout_s=LOCK_TIMEOUT_S + MAX_BACKOFF_S + 5,
            what="the locked saga's withdrawal once the lock is released",
        )
        assert time.monotonic() - released_at < LOCK_TIMEOUT_S + MAX_BACKOFF_S + 5
    waits = metrics.sample("bus_saga_store_waits_total", {"outcome": "lock_timeout"})
    assert waits is not None
    assert waits >= 1
    logged = [r.getMessage() for r in caplog.records if "row lock" in r.getMessage()]
    assert any(saga_id(LOCKED) in line for line in logged), logged


async def test_a_stopped_replicas_locks_end_with_its_idle_session(postgres_dsn: str) -> None:
    # The stalled replica has the store's own settings: the server ends its session once
    # it has idled inside its transaction for the timeout, and its lock goes with it.
    idle_s = 2.0
    stalled_db = PostgresDatabase(
        postgres_dsn,
        min_connections=0,
        timeouts=PostgresTimeouts(idle_in_transaction_timeout_s=idle_s),
    )
    metrics = Metrics()
    timeouts = PostgresTimeouts(lock_timeout_s=LOCK_TIMEOUT_S)
    async with coordinator(postgres_dsn, metrics, timeouts) as c:
        hr = await start_all(c)
        await stalled_db.open()
        try:
            conn = await stalled_db.pool.acquire()
            await lock_row(conn, LOCKED)  # and never a statement more: stopped
            await hr.publish(HireWithdrawn(employee_id=LOCKED))
            await wait_until(
                lambda: statuses(c.store, [LOCKED]),  # type: ignore[arg-type]
                until=lambda got: got[LOCKED] != SagaStatus.RUNNING,
                timeout_s=idle_s + LOCK_TIMEOUT_S + MAX_BACKOFF_S + 5,
                what="the locked saga's withdrawal after the stalled session was ended",
            )
        finally:
            await stalled_db.close(timeout_s=1)


class StoppedError(Exception):
    """Ends the stalled transaction with a rollback, as the server does to a dead session."""


async def test_a_dedup_claim_behind_a_stalled_transaction_gives_up_at_the_lock_timeout(
    postgres_dsn: str,
) -> None:
    key = DedupKey("h", "/hr", "id-1")
    timeouts = PostgresTimeouts(lock_timeout_s=LOCK_TIMEOUT_S)
    async with (
        PostgresDedupStore(postgres_dsn) as zombie,
        PostgresDedupStore(postgres_dsn, timeouts=timeouts) as owner,
    ):
        stalled = zombie.transaction(key)
        await stalled.__aenter__()  # claimed, then stopped: the claim stays
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as gave_up:
            await asyncio.wait_for(_claim(owner, key), timeout=10 * LOCK_TIMEOUT_S)
        assert time.monotonic() - started < 5 * LOCK_TIMEOUT_S
        assert gave_up.value.retryable
        await stalled.__aexit__(StoppedError, StoppedError(), None)  # rolled back
        await _claim(owner, key)  # the claim is free again: the retry goes through
        assert await owner.get(key) is not None


async def _claim(store: PostgresDedupStore, key: DedupKey) -> None:
    async with store.transaction(key) as tx:
        tx.complete(())
