"""The SQLite saga store: the embedded default, one file in WAL mode.

Each operation is one function run on the database's thread inside one ``BEGIN
IMMEDIATE`` transaction (bus's :class:`~bus.SqliteDatabase`), so a save - state, outbox,
timers - is atomic and two processes on one file take turns. Statements are constants,
which the driver's statement cache prepares once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bus import MigratedStore, Migration, SqliteDatabase
from sagas.early import EarlyInput
from sagas.state import TERMINAL, SagaState
from sagas.stores.base import (
    ACTIVE,
    COMPONENT,
    Change,
    ControlRequest,
    DueTimer,
    OutboxEntry,
    SagaQuery,
    SagaWrite,
    SetAsideInput,
    StoredSaga,
    StoreGauges,
    UnreadableSaga,
    Write,
    from_ms,
    listed_state,
    loaded,
    to_ms,
)
from sagas.stores.early_rows import (
    EARLY_TABLE,
    sqlite_early,
    sqlite_may_start,
    sqlite_purge_early,
)
from sagas.stores.sql import (
    STATE_COLUMNS,
    StateCache,
    decode_headers,
    decode_state,
    gauges_from_rows,
    revision_conflict,
    set_aside_from_row,
)
from sagas.stores.sqlite_writes import (
    CANCEL_TIMER,
    DROP_REQUEST,
    DROP_SET_ASIDE,
    LOAD,
    SET_ASIDE_COLUMNS,
    store_write,
    update_in,
)
from sagas.stores.task_rows import (
    PURGE_ORPHANS,
    TASK_TABLE,
    TaskQuery,
    TaskRow,
    completion_args,
    sqlite_complete,
    sqlite_get,
    sqlite_list,
)

__all__ = ["MIGRATIONS", "SqliteSagaStore"]

MIGRATIONS = (
    Migration(
        1,
        "create saga_state, saga_outbox, saga_timers, saga_requests",
        (
            "CREATE TABLE saga_state (saga_id TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " status TEXT NOT NULL, revision INTEGER NOT NULL, started_at_ms INTEGER NOT NULL,"
            " updated_at_ms INTEGER NOT NULL, state TEXT NOT NULL)",
            "CREATE INDEX saga_state_started ON saga_state (started_at_ms)",
            "CREATE INDEX saga_state_status ON saga_state (status, started_at_ms)",
            "CREATE TABLE saga_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " id TEXT NOT NULL UNIQUE, saga_id TEXT NOT NULL, topic TEXT NOT NULL, key BLOB,"
            " value BLOB NOT NULL, headers BLOB NOT NULL, created_at_ms INTEGER NOT NULL,"
            " claimed_until_ms INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE saga_timers (id TEXT PRIMARY KEY, saga_id TEXT NOT NULL,"
            " due_at_ms INTEGER NOT NULL, claimed_until_ms INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX saga_timers_due ON saga_timers (due_at_ms)",
            "CREATE TABLE saga_requests (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " id TEXT NOT NULL UNIQUE, saga_id TEXT NOT NULL, action TEXT NOT NULL,"
            " reason TEXT NOT NULL, requested_at_ms INTEGER NOT NULL)",
        ),
    ),
    Migration(
        2,
        "quarantine of unreadable sagas: saga_state.quarantine, saga_set_aside",
        (
            "ALTER TABLE saga_state ADD COLUMN quarantine TEXT",
            "CREATE TABLE saga_set_aside (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " saga_id TEXT NOT NULL, set_aside_at_ms INTEGER NOT NULL, timer_id TEXT,"
            " topic TEXT, key BLOB, value BLOB, headers BLOB)",
            "CREATE INDEX saga_set_aside_saga ON saga_set_aside (saga_id, seq)",
        ),
    ),
    Migration(
        3, "tasks for people: saga_tasks", tuple(s.format(int="INTEGER") for s in TASK_TABLE)
    ),
    Migration(
        4,
        "inputs kept for sagas not started yet: saga_early",
        tuple(s.format(int="INTEGER", serial="INTEGER") for s in EARLY_TABLE),
    ),
)


class SqliteSagaStore(MigratedStore[SqliteDatabase]):
    """Sagas in a SQLite file (created if missing; schema migrated on open).

    Example::

        async with SqliteSagaStore("sagas.db") as store:
            stored = await store.load("onboarding:e-1")
    """

    kind = "sqlite"

    component = COMPONENT
    migrations = MIGRATIONS

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.database = SqliteDatabase(path, busy_timeout_s=busy_timeout_s)
        self.states = StateCache()

    def __repr__(self) -> str:
        return f"SqliteSagaStore({str(self.database.path)!r})"

    async def load(self, saga_id: str) -> StoredSaga | None:
        return loaded(await self.read(saga_id))

    async def read(self, saga_id: str) -> StoredSaga | UnreadableSaga | None:
        row = await self.database.run(lambda c: c.execute(LOAD, (saga_id,)).fetchone())
        return None if row is None else decode_state(self.states, saga_id, row)

    async def save(self, write: Write) -> int:
        if not await self.database.write(lambda c: _may_start(c, write) and store_write(c, write)):
            raise revision_conflict(write)  # nothing was written: the state row decided first
        self.states.remember((write,))
        return write.expected_revision + 1

    async def update(
        self, saga_id: str, change: Change, *, on_conflict: Callable[[str], None] | None = None
    ) -> Write | None:
        # Load, change and save in one call on the database thread, inside one BEGIN
        # IMMEDIATE transaction: one thread hop per input instead of two, and no other
        # writer in between (so no revision conflict).
        write = await self.database.write(lambda c: update_in(c, saga_id, change, self.states))
        self.states.remember((write,))
        return write

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[Write | None]:
        # Group commit: a whole fetched batch in one transaction and one thread hop; each
        # change sees the writes of the ones before it (the same saga twice in a batch).
        if not items:
            return []
        writes = await self.database.write(
            lambda c: [update_in(c, i, ch, self.states) for i, ch in items]
        )
        self.states.remember(writes)
        return writes

    async def claim_outbox(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxEntry]:
        now_ms, until = to_ms(now), to_ms(now + lease)

        def claim(c: sqlite3.Connection) -> list[OutboxEntry]:
            rows = c.execute(
                "SELECT id, saga_id, topic, key, value, headers, created_at_ms FROM saga_outbox"
                " WHERE claimed_until_ms <= ? ORDER BY seq LIMIT ?",
                (now_ms, limit),
            ).fetchall()
            c.executemany(
                "UPDATE saga_outbox SET claimed_until_ms = ? WHERE id = ?",
                [(until, r[0]) for r in rows],
            )
            return [
                OutboxEntry(r[0], r[1], r[2], r[3], r[4], decode_headers(r[5]), from_ms(r[6]))
                for r in rows
            ]

        return await self.database.write(claim)

    async def mark_sent(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        rows = [(i,) for i in ids]
        await self.database.write(
            lambda c: c.executemany("DELETE FROM saga_outbox WHERE id = ?", rows)
        )

    async def claim_due_timers(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[DueTimer]:
        now_ms, until = to_ms(now), to_ms(now + lease)

        def claim(c: sqlite3.Connection) -> list[DueTimer]:
            rows = c.execute(
                "SELECT id, saga_id, due_at_ms FROM saga_timers WHERE due_at_ms <= ?"
                " AND claimed_until_ms <= ? ORDER BY due_at_ms, id LIMIT ?",
                (now_ms, now_ms, limit),
            ).fetchall()
            c.executemany(
                "UPDATE saga_timers SET claimed_until_ms = ? WHERE id = ?",
                [(until, r[0]) for r in rows],
            )
            return [DueTimer(r[0], r[1], from_ms(r[2])) for r in rows]

        return await self.database.write(claim)

    async def cancel_timers(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        rows = [(i,) for i in ids]
        await self.database.write(lambda c: c.executemany(CANCEL_TIMER, rows))

    async def request(self, request: ControlRequest) -> None:
        args = (request.id, request.saga_id, request.action, request.reason,
                to_ms(request.requested_at))  # fmt: skip
        await self.database.write(
            lambda c: c.execute(
                "INSERT INTO saga_requests (id, saga_id, action, reason, requested_at_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                args,
            )
        )

    async def pending_requests(self, *, limit: int) -> list[ControlRequest]:
        rows = await self.database.run(
            lambda c: c.execute(
                "SELECT id, saga_id, action, reason, requested_at_ms FROM saga_requests"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [ControlRequest(r[0], r[1], r[2], r[3], from_ms(r[4])) for r in rows]

    async def drop_request(self, request_id: str) -> None:
        await self.database.write(lambda c: c.execute(DROP_REQUEST, (request_id,)))

    async def list_sagas(self, query: SagaQuery) -> list[SagaState]:
        where: list[str] = ["1 = 1"]
        args: list[str | int] = []
        if query.statuses:
            where.append(f"status IN ({', '.join('?' for _ in query.statuses)})")
            args.extend(s.value for s in query.statuses)
        if query.name is not None:
            where.append("name = ?")
            args.append(query.name)
        if query.since is not None:
            where.append("started_at_ms >= ?")
            args.append(to_ms(query.since))
        sql = (
            f"SELECT saga_id, {STATE_COLUMNS} FROM saga_state WHERE {' AND '.join(where)}"
            " ORDER BY started_at_ms DESC, saga_id LIMIT ?"
        )
        args.append(query.limit)
        rows = await self.database.run(lambda c: c.execute(sql, args).fetchall())
        return [listed_state(decode_state(self.states, r[0], r[1:])) for r in rows]

    async def set_aside_inputs(
        self, *, limit: int, saga_id: str | None = None
    ) -> list[SetAsideInput]:
        if saga_id is None:  # the inputs of sagas released since (or gone)
            sql = (
                f"SELECT {SET_ASIDE_COLUMNS} FROM saga_set_aside a LEFT JOIN saga_state s"
                " ON s.saga_id = a.saga_id WHERE s.quarantine IS NULL ORDER BY a.seq LIMIT ?"
            )
            args: tuple[str | int, ...] = (limit,)
        else:
            sql = (
                f"SELECT {SET_ASIDE_COLUMNS} FROM saga_set_aside a WHERE a.saga_id = ?"
                " ORDER BY a.seq LIMIT ?"
            )
            args = (saga_id, limit)
        rows = await self.database.run(lambda c: c.execute(sql, args).fetchall())
        return [set_aside_from_row(r) for r in rows]

    async def drop_set_aside(self, seqs: Sequence[int]) -> None:
        if seqs:
            rows = [(s,) for s in seqs]
            await self.database.write(lambda c: c.executemany(DROP_SET_ASIDE, rows))

    async def purge_finished(self, older_than: datetime) -> int:
        statuses = [s.value for s in TERMINAL]
        sql = (
            f"DELETE FROM saga_state WHERE status IN ({', '.join('?' for _ in statuses)})"
            " AND updated_at_ms < ?"
        )
        args = [*statuses, to_ms(older_than)]

        def purge(c: sqlite3.Connection) -> int:
            n = int(c.execute(sql, args).rowcount)
            c.execute(PURGE_ORPHANS)
            return n

        return await self.database.write(purge)

    async def early_inputs(
        self, saga_id: str | None = None, *, limit: int = 100
    ) -> list[EarlyInput]:
        return await self.database.run(lambda c: sqlite_early(c, saga_id, limit))

    async def purge_early(self, older_than: datetime) -> int:
        return await self.database.write(lambda c: sqlite_purge_early(c, to_ms(older_than)))

    async def list_tasks(self, query: TaskQuery) -> list[TaskRow]:
        return await self.database.run(lambda c: sqlite_list(c, query))

    async def get_task(self, task_id: str) -> TaskRow | None:
        return await self.database.run(lambda c: sqlite_get(c, task_id))

    async def complete_task(
        self, task_id: str, *, data: dict[str, Any], actor: str, at: datetime,
        request: ControlRequest,
    ) -> bool:  # fmt: skip
        args = completion_args(task_id, data, actor, at)
        row = (request.id, request.saga_id, request.action, request.reason,
               to_ms(request.requested_at))  # fmt: skip
        return await self.database.write(lambda c: sqlite_complete(c, args, row))

    async def counts(self) -> dict[str, int]:
        def count(c: sqlite3.Connection) -> dict[str, int]:
            tables = {"sagas": "saga_state", "outbox": "saga_outbox", "timers": "saga_timers",
                      "requests": "saga_requests"}  # fmt: skip
            return {k: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                    for k, t in tables.items()}  # fmt: skip

        return await self.database.run(count)

    async def gauges(self) -> StoreGauges:
        statuses = tuple(st.value for st in ACTIVE)

        def read(c: sqlite3.Connection) -> StoreGauges:
            backlog, oldest_ms = c.execute(
                "SELECT count(*), min(created_at_ms) FROM saga_outbox"
            ).fetchone()
            rows = c.execute(
                "SELECT name, status, count(*), min(started_at_ms) FROM saga_state"
                f" WHERE status IN ({', '.join('?' for _ in statuses)}) GROUP BY name, status",
                statuses,
            ).fetchall()
            return gauges_from_rows(int(backlog), oldest_ms, rows)

        return await self.database.run(read)


def _may_start(c: sqlite3.Connection, write: Write) -> bool:
    """A new saga's save applied every input kept for it (else: a conflict, decide again)."""
    if not isinstance(write, SagaWrite) or write.expected_revision != 0:
        return True
    return sqlite_may_start(c, write.state.saga_id, write.early_done)
