"""Many stored sagas at once, for the console's page-time test and bench/console.py.

Rows are written straight into ``saga_state`` (one multi-row statement per chunk), each a
real :class:`~sagas.state.SagaState` of a small definition: 1 in 50 needs attention, 1 in 5
is running, the rest completed; one a second apart, newest last.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sagas.state import HistoryEntry, SagaState, SagaStatus, StepState, StepStatus
from sagas.stores.base import SagaStore, to_ms
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sqlite import SqliteSagaStore

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NAMES = ("console_order", "onboarding")


def status_of(i: int) -> SagaStatus:
    if i % 50 == 0:
        return SagaStatus.NEEDS_ATTENTION
    if i % 5 == 0:
        return SagaStatus.RUNNING
    return SagaStatus.COMPLETED


def saga_row(i: int) -> tuple[Any, ...]:
    """(saga_id, name, status, revision, started_at_ms, updated_at_ms, state JSON)."""
    started = START + timedelta(seconds=i)
    status = status_of(i)
    name = NAMES[i % 2]
    saga_id = f"{name}:k-{i:07d}"
    done = status == SagaStatus.COMPLETED
    step = StepState(
        name="reserve_stock",
        status=StepStatus.COMPLETED if done else StepStatus.RUNNING,
        attempts=1,
        started_at=started,
        completed_at=started + timedelta(milliseconds=40) if done else None,
    )
    state = SagaState(
        saga_id=saga_id, name=name, version=1, status=status,
        data={"order_id": f"k-{i:07d}", "needs_approval": False},
        steps={"reserve_stock": step}, trigger_id=f"trigger-{i}",
        started_at=started, updated_at=started + timedelta(milliseconds=50),
        attention="release_stock keeps failing" if status == SagaStatus.NEEDS_ATTENTION else None,
        history=[HistoryEntry(at=started, event="started"),
                 HistoryEntry(at=started, event="sent", step="reserve_stock")],
    )  # fmt: skip
    ms = to_ms(started)
    return (saga_id, name, status.value, 1, ms, ms + 50, state.to_json())


async def seed(store: SagaStore, n: int, *, chunk: int = 5_000) -> None:
    """Write ``n`` sagas into an open SQLite or PostgreSQL store."""
    for first in range(0, n, chunk):
        rows = [saga_row(i) for i in range(first, min(n, first + chunk))]
        if isinstance(store, SqliteSagaStore):
            sql = (
                "INSERT INTO saga_state (saga_id, name, status, revision, started_at_ms,"
                " updated_at_ms, state) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            await store.database.write(lambda c, rows=rows, sql=sql: c.executemany(sql, rows))
        elif isinstance(store, PostgresSagaStore):
            columns = [
                "saga_id",
                "name",
                "status",
                "revision",
                "started_at_ms",
                "updated_at_ms",
                "state",
            ]
            async with store.database.connection() as conn:
                await conn.copy_records_to_table("saga_state", records=rows, columns=columns)
        else:
            raise TypeError(f"cannot seed a {type(store).__name__}")
