"""The PostgreSQL saga store: production, several coordinator replicas on one database.

Replicas stay safe without coordination between them:

- a save updates the state row ``WHERE revision = $expected``: of two replicas deciding on
  the same saga, one commits and the other gets :class:`RevisionConflictError` and decides
  again on the fresh state (its outbox rows and timers are rolled back with it);
- the outbox relay and the timer loop *claim* rows with ``FOR UPDATE SKIP LOCKED`` and a
  lease (``claimed_until_ms``): replicas take disjoint batches, and rows of a replica that
  died are claimed again once the lease ran out. Publishing twice is harmless: the
  CloudEvents id is the command id, which handlers deduplicate.

asyncpg prepares each statement once per connection (its statement cache).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bus import MigratedStore, PostgresDatabase, PostgresTimeouts
from sagas.early import EarlyInput
from sagas.state import TERMINAL, SagaState
from sagas.stores import postgres_early as early
from sagas.stores.base import (
    ACTIVE,
    COMPONENT,
    Change,
    ControlRequest,
    DueTimer,
    KeepEarly,
    Loaded,
    OutboxEntry,
    SagaQuery,
    SetAside,
    SetAsideInput,
    StoredSaga,
    StoreGauges,
    UnreadableSaga,
    Write,
    from_ms,
    listed_state,
    loaded,
    to_ms,
    update_by_revision,
)
from sagas.stores.postgres_batch import (
    CANCEL_TIMERS,
    DROP_SET_ASIDE,
    INSERT,
    QUARANTINE,
    SET_ASIDE_COLUMNS,
    UPDATE,
    Batch,
    Effects,
    lock_and_load,
    write_batch,
    write_effects,
)
from sagas.stores.postgres_schema import MIGRATIONS
from sagas.stores.sql import (
    STATE_COLUMNS,
    StateCache,
    decode_headers,
    decode_state,
    gauges_from_rows,
    revision_conflict,
    set_aside_from_row,
)
from sagas.stores.task_rows import (
    COMPLETE_PG,
    PURGE_ORPHANS,
    TASK_COLUMNS,
    TaskQuery,
    TaskRow,
    completion_args,
    list_sql,
    task_from_row,
)

__all__ = ["MIGRATIONS", "PostgresSagaStore"]

_CLAIM_OUTBOX = (
    "UPDATE saga_outbox SET claimed_until_ms = $2 WHERE seq IN (SELECT seq FROM saga_outbox"
    " WHERE claimed_until_ms <= $1 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " RETURNING seq, id, saga_id, topic, key, value, headers, created_at_ms"
)
_CLAIM_TIMERS = (
    "UPDATE saga_timers SET claimed_until_ms = $2 WHERE id IN (SELECT id FROM saga_timers"
    " WHERE due_at_ms <= $1 AND claimed_until_ms <= $1 ORDER BY due_at_ms, id LIMIT $3"
    " FOR UPDATE SKIP LOCKED) RETURNING id, saga_id, due_at_ms"
)


class PostgresSagaStore(MigratedStore[PostgresDatabase]):
    """Sagas in a PostgreSQL database (schema migrated on open, under an advisory lock).

    Example::

        async with PostgresSagaStore("postgresql://bus@127.0.0.1/bus") as store:
            stored = await store.load("onboarding:e-1")
    """

    kind = "postgres"

    component = COMPONENT
    migrations = MIGRATIONS

    def __init__(
        self,
        dsn: str,
        *,
        max_connections: int = 10,
        connect_timeout_s: float = 10.0,
        password: str | None = None,
        timeouts: PostgresTimeouts | None = None,
    ) -> None:
        # ``timeouts`` bound how long a replica stopped inside its transaction holds the
        # others back (a lock wait becomes a retryable LockTimeoutError; default 5 s).
        self.database = PostgresDatabase(
            dsn,
            max_connections=max_connections,
            connect_timeout_s=connect_timeout_s,
            password=password,
            timeouts=timeouts,
        )
        self.states = StateCache()

    def __repr__(self) -> str:
        return f"PostgresSagaStore({self.database!r})"

    async def load(self, saga_id: str) -> StoredSaga | None:
        return loaded(await self.read(saga_id))

    async def read(self, saga_id: str) -> StoredSaga | UnreadableSaga | None:
        async with self.database.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {STATE_COLUMNS} FROM saga_state WHERE saga_id = $1", saga_id
            )
        return None if row is None else decode_state(self.states, saga_id, tuple(row))

    async def save(self, write: Write) -> int:
        if isinstance(write, SetAside):
            async with self.database.transaction() as conn:
                args = (write.reason, write.saga_id, write.expected_revision)
                if await conn.execute(QUARANTINE, *args) != "UPDATE 1":
                    raise revision_conflict(write)
                await write_effects(conn, Effects.of(write))
            self.states.remember((write,))
            return write.expected_revision + 1
        if isinstance(write, KeepEarly):
            async with self.database.transaction() as conn:
                if not await early.keep(conn, write):
                    raise revision_conflict(write)
            return 0
        s = write.state
        state_json = s.to_json()
        async with self.database.transaction() as conn:
            if write.expected_revision == 0 and not await early.may_start(conn, write):
                raise revision_conflict(write)
            if write.expected_revision == 0:
                status = await conn.execute(
                    INSERT, s.saga_id, s.name, s.status.value, to_ms(s.started_at),
                    to_ms(s.updated_at), state_json,
                )  # fmt: skip
                ok = status == "INSERT 0 1"
            else:
                status = await conn.execute(
                    UPDATE, s.status.value, to_ms(s.updated_at), state_json, s.saga_id,
                    write.expected_revision,
                )  # fmt: skip
                ok = status == "UPDATE 1"
            if not ok:
                raise revision_conflict(write)
            await write_effects(conn, Effects.of(write))
        self.states.remember((write,))
        return write.expected_revision + 1

    async def update(
        self, saga_id: str, change: Change, *, on_conflict: Callable[[str], None] | None = None
    ) -> Write | None:
        return await update_by_revision(
            saga_id, change, load=self._loaded, save=self.save, on_conflict=on_conflict
        )

    async def _loaded(self, saga_id: str) -> Loaded:
        stored = await self.read(saga_id)
        async with self.database.connection() as conn:
            return await early.unstarted(conn, saga_id, stored)

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[Write | None]:
        # Group commit: the whole batch in one transaction of a few statements, whatever its
        # size - lock and load every saga it names, change them in memory in input order,
        # then write states, outbox rows, timers and requests in one bulk statement each.
        # A transaction per input cost ~8 round trips and a commit each (bench/sagas.py).
        if not items:
            return []
        async with self.database.transaction() as conn:
            ids = sorted({saga_id for saga_id, _ in items})
            current = await lock_and_load(conn, ids, self.states)
            batch = Batch(current)
            results = [batch.apply(saga_id, change) for saga_id, change in items]
            lost = await write_batch(conn, batch)
        self.states.remember(w for w in batch.writes if w.state.saga_id not in lost)
        self.states.remember(batch.aside)
        if not lost:
            return results
        # Another replica started these sagas first (between our lock and our insert): our
        # changes to them were made on a state that never existed. Decide those again, one by
        # one, on the state the other replica stored.
        for saga_id in sorted(lost):
            if on_conflict is not None:
                on_conflict(saga_id)
        for k, (saga_id, change) in enumerate(items):
            if saga_id in lost:
                results[k] = await self.update(saga_id, change, on_conflict=on_conflict)
        return results

    async def claim_outbox(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxEntry]:
        async with self.database.connection() as conn:
            rows = await conn.fetch(_CLAIM_OUTBOX, to_ms(now), to_ms(now + lease), limit)
        rows = sorted(rows, key=lambda r: r[0])  # RETURNING has no order
        return [
            OutboxEntry(r[1], r[2], r[3], r[4], r[5], decode_headers(r[6]), from_ms(r[7]))
            for r in rows
        ]

    async def mark_sent(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self.database.connection() as conn:
            await conn.execute("DELETE FROM saga_outbox WHERE id = ANY($1::text[])", list(ids))

    async def claim_due_timers(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[DueTimer]:
        async with self.database.connection() as conn:
            rows = await conn.fetch(_CLAIM_TIMERS, to_ms(now), to_ms(now + lease), limit)
        timers = [DueTimer(r[0], r[1], from_ms(r[2])) for r in rows]
        return sorted(timers, key=lambda t: (t.at, t.id))

    async def cancel_timers(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self.database.connection() as conn:
            await conn.execute(CANCEL_TIMERS, list(ids))

    async def request(self, request: ControlRequest) -> None:
        async with self.database.connection() as conn:
            await conn.execute(
                "INSERT INTO saga_requests (id, saga_id, action, reason, requested_at_ms)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                request.id, request.saga_id, request.action, request.reason,
                to_ms(request.requested_at),
            )  # fmt: skip

    async def pending_requests(self, *, limit: int) -> list[ControlRequest]:
        async with self.database.connection() as conn:
            rows = await conn.fetch(
                "SELECT id, saga_id, action, reason, requested_at_ms FROM saga_requests"
                " ORDER BY seq LIMIT $1",
                limit,
            )
        return [ControlRequest(r[0], r[1], r[2], r[3], from_ms(r[4])) for r in rows]

    async def drop_request(self, request_id: str) -> None:
        async with self.database.connection() as conn:
            await conn.execute("DELETE FROM saga_requests WHERE id = $1", request_id)

    async def list_sagas(self, query: SagaQuery) -> list[SagaState]:
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        if query.statuses:
            args.append([s.value for s in query.statuses])
            where.append(f"status = ANY(${len(args)}::text[])")
        if query.name is not None:
            args.append(query.name)
            where.append(f"name = ${len(args)}")
        if query.since is not None:
            args.append(to_ms(query.since))
            where.append(f"started_at_ms >= ${len(args)}")
        args.append(query.limit)
        sql = (
            f"SELECT saga_id, {STATE_COLUMNS} FROM saga_state WHERE {' AND '.join(where)}"
            f" ORDER BY started_at_ms DESC, saga_id LIMIT ${len(args)}"
        )
        async with self.database.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [listed_state(decode_state(self.states, r[0], tuple(r)[1:])) for r in rows]

    async def set_aside_inputs(
        self, *, limit: int, saga_id: str | None = None
    ) -> list[SetAsideInput]:
        if saga_id is None:  # the inputs of sagas released since (or gone)
            sql = (
                f"SELECT {SET_ASIDE_COLUMNS} FROM saga_set_aside a LEFT JOIN saga_state s"
                " ON s.saga_id = a.saga_id WHERE s.quarantine IS NULL ORDER BY a.seq LIMIT $1"
            )
            args: tuple[Any, ...] = (limit,)
        else:
            sql = (
                f"SELECT {SET_ASIDE_COLUMNS} FROM saga_set_aside a WHERE a.saga_id = $1"
                " ORDER BY a.seq LIMIT $2"
            )
            args = (saga_id, limit)
        async with self.database.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [set_aside_from_row(tuple(r)) for r in rows]

    async def drop_set_aside(self, seqs: Sequence[int]) -> None:
        if seqs:
            async with self.database.connection() as conn:
                await conn.execute(DROP_SET_ASIDE, list(seqs))

    async def purge_finished(self, older_than: datetime) -> int:
        async with self.database.connection() as conn:
            status = await conn.execute(
                "DELETE FROM saga_state WHERE status = ANY($1::text[]) AND updated_at_ms < $2",
                [s.value for s in TERMINAL],
                to_ms(older_than),
            )
            await conn.execute(PURGE_ORPHANS)
        return int(status.split()[-1])  # "DELETE <n>"

    async def early_inputs(
        self, saga_id: str | None = None, *, limit: int = 100
    ) -> list[EarlyInput]:
        async with self.database.connection() as conn:
            return await early.inputs(conn, saga_id, limit)

    async def purge_early(self, older_than: datetime) -> int:
        async with self.database.connection() as conn:
            return await early.purge(conn, older_than)

    async def list_tasks(self, query: TaskQuery) -> list[TaskRow]:
        sql, args = list_sql(query, lambda n: f"${n}")
        async with self.database.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return [task_from_row(tuple(r)) for r in rows]

    async def get_task(self, task_id: str) -> TaskRow | None:
        async with self.database.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {TASK_COLUMNS} FROM saga_tasks WHERE id = $1", task_id
            )
        return None if row is None else task_from_row(tuple(row))

    async def complete_task(
        self, task_id: str, *, data: dict[str, Any], actor: str, at: datetime,
        request: ControlRequest,
    ) -> bool:  # fmt: skip
        async with self.database.transaction() as conn:
            done = await conn.execute(COMPLETE_PG, *completion_args(task_id, data, actor, at))
            if done != "UPDATE 1":
                return False
            await conn.execute(
                "INSERT INTO saga_requests (id, saga_id, action, reason, requested_at_ms)"
                " VALUES ($1, $2, $3, $4, $5)",
                request.id, request.saga_id, request.action, request.reason,
                to_ms(request.requested_at),
            )  # fmt: skip
        return True

    async def counts(self) -> dict[str, int]:
        async with self.database.connection() as conn:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM saga_state), (SELECT count(*) FROM saga_outbox),"
                " (SELECT count(*) FROM saga_timers), (SELECT count(*) FROM saga_requests)"
            )
        return dict(zip(("sagas", "outbox", "timers", "requests"), map(int, row), strict=True))

    async def gauges(self) -> StoreGauges:
        async with self.database.connection() as conn:
            backlog, oldest_ms = await conn.fetchrow(
                "SELECT count(*), min(created_at_ms) FROM saga_outbox"
            )
            rows = await conn.fetch(
                "SELECT name, status, count(*), min(started_at_ms) FROM saga_state"
                " WHERE status = ANY($1::text[]) GROUP BY name, status",
                [st.value for st in ACTIVE],
            )
        return gauges_from_rows(int(backlog), oldest_ms, [tuple(r) for r in rows])
