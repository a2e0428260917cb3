"""The PostgreSQL dedup store: several processes (consumer-group members) share one table.

A transaction *claims* its key first (``INSERT ... ON CONFLICT DO NOTHING`` of the dedup
row, uncommitted): a second transaction on the same key - a zombie consumer still working
on a partition that moved - blocks on that row until the first ends, then finds it
committed and raises :class:`~bus.errors.DuplicateMessageError` before running its effect
(or proceeds, if the first rolled back). The outputs are written into the claimed row at the
end, in the same transaction as the handler's effect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from bus.dedup.base import DedupEntry, DedupKey, duplicate_error
from bus.dedup.outputs import decode_outputs, encode_outputs
from bus.record import OutgoingRecord
from bus.sql.migrations import Migration
from bus.sql.postgres import PostgresDatabase, PostgresTimeouts
from bus.sql.store import MigratedStore
from bus.stamping import utc_now

__all__ = ["MIGRATIONS", "PostgresDedupStore", "PostgresDedupTransaction"]

COMPONENT = "bus.dedup"

MIGRATIONS = (
    Migration(
        1,
        "create bus_dedup",
        (
            "CREATE TABLE bus_dedup ("
            " handler TEXT NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL,"
            " completed_at_ms BIGINT NOT NULL, outputs BYTEA NOT NULL,"
            " sent BOOLEAN NOT NULL DEFAULT FALSE,"
            " PRIMARY KEY (handler, source, id))",
            "CREATE INDEX bus_dedup_completed_at ON bus_dedup (completed_at_ms)",
        ),
    ),
)

_SELECT = (
    "SELECT completed_at_ms, outputs, sent FROM bus_dedup"
    " WHERE handler = $1 AND source = $2 AND id = $3"
)
_MARK_SENT = (
    "UPDATE bus_dedup AS d SET sent = TRUE FROM unnest($1::text[], $2::text[], $3::text[])"
    " AS k(handler, source, id) WHERE d.handler = k.handler AND d.source = k.source"
    " AND d.id = k.id"
)
_INSERT = (
    "INSERT INTO bus_dedup (handler, source, id, completed_at_ms, outputs)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)
# Sorted, so two replicas recording overlapping groups take the row locks in one order
# (no deadlock); DISTINCT ON: a key given twice is inserted once.
_INSERT_MANY = (
    "INSERT INTO bus_dedup (handler, source, id, completed_at_ms, outputs)"
    " SELECT DISTINCT ON (k.handler, k.source, k.id) k.handler, k.source, k.id, $4, k.outputs"
    " FROM unnest($1::text[], $2::text[], $3::text[], $5::bytea[])"
    " AS k(handler, source, id, outputs) ORDER BY k.handler, k.source, k.id"
    " ON CONFLICT DO NOTHING RETURNING handler, source, id"
)
_SELECT_MANY = (
    "SELECT d.handler, d.source, d.id, d.completed_at_ms, d.outputs, d.sent FROM bus_dedup AS d"
    " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(handler, source, id)"
    " ON d.handler = k.handler AND d.source = k.source AND d.id = k.id"
)
_COMPLETE = (
    "UPDATE bus_dedup SET completed_at_ms = $4, outputs = $5"
    " WHERE handler = $1 AND source = $2 AND id = $3"
)


class PostgresDedupTransaction:
    """The handler's view of the transaction: its asyncpg connection and the outputs."""

    __slots__ = ("_connection", "_key", "outputs")

    def __init__(self, key: DedupKey, connection: Any) -> None:
        self._key = key
        self._connection = connection
        self.outputs: tuple[OutgoingRecord, ...] = ()

    @property
    def key(self) -> DedupKey:
        return self._key

    @property
    def connection(self) -> Any:
        """An ``asyncpg.Connection`` inside the transaction: ``await tx.connection.execute(...)``."""
        return self._connection

    def complete(self, outputs: Iterable[OutgoingRecord]) -> None:
        self.outputs = tuple(outputs)


class PostgresDedupStore(MigratedStore[PostgresDatabase]):
    """Completions in a PostgreSQL table; handlers may keep their own tables in the database.

    Example::

        async with PostgresDedupStore("postgresql://bus@127.0.0.1/bus") as store:
            async with store.transaction(DedupKey("h", "/hr", "id-1")) as tx:
                await tx.connection.execute("INSERT INTO mailbox VALUES ($1)", "u-1")
                tx.complete(outputs)
    """

    component = COMPONENT
    migrations = MIGRATIONS

    def __init__(
        self,
        dsn: str,
        *,
        max_connections: int = 10,
        connect_timeout_s: float = 10.0,
        clock: Callable[[], datetime] = utc_now,
        timeouts: PostgresTimeouts | None = None,
    ) -> None:
        #: The database, for the handler's own reads and schema (``database.pool``). Its
        #: ``timeouts`` (default :class:`~bus.sql.postgres.PostgresTimeouts`) bound a claim
        #: waiting on a stalled zombie's key (a retryable LockTimeoutError: the record is
        #: tried again) and the handler's own statements and transaction too.
        self.database = PostgresDatabase(
            dsn,
            max_connections=max_connections,
            connect_timeout_s=connect_timeout_s,
            timeouts=timeouts,
        )
        self.clock = clock

    async def get(self, key: DedupKey) -> DedupEntry | None:
        async with self.database.connection() as conn:
            row = await conn.fetchrow(_SELECT, *key)
        if row is None:
            return None
        return DedupEntry(key, decode_outputs(row[1]), int(row[0]), bool(row[2]))

    async def record(self, key: DedupKey, outputs: Iterable[OutgoingRecord] = ()) -> DedupEntry:
        completion = DedupEntry(key, tuple(outputs), self._now_ms())
        blob = encode_outputs(completion.outputs)
        async with self.database.connection() as conn:
            status = await conn.execute(_INSERT, *key, completion.completed_at_ms, blob)
        if status != "INSERT 0 1":
            raise duplicate_error(key)
        return completion

    @asynccontextmanager
    async def transaction(self, key: DedupKey) -> AsyncIterator[PostgresDedupTransaction]:
        async with self.database.transaction() as conn:
            # The claim: waits for a concurrent transaction holding the key, then inserts
            # nothing if it committed. Only this transaction sees the claimed row until commit.
            status = await conn.execute(_INSERT, *key, self._now_ms(), b"")
            if status != "INSERT 0 1":
                raise duplicate_error(key)
            tx = PostgresDedupTransaction(key, conn)
            yield tx
            await conn.execute(_COMPLETE, *key, self._now_ms(), encode_outputs(tx.outputs))

    async def record_new(
        self,
        entries: Sequence[tuple[DedupKey, Sequence[OutgoingRecord]]],
        *,
        sent: Sequence[DedupKey] = (),
    ) -> dict[DedupKey, DedupEntry]:
        if not entries:
            await self.mark_sent(sent)
            return {}
        keys = [key for key, _ in entries]
        blobs = [encode_outputs(tuple(outputs)) for _, outputs in entries]
        rows: list[Any] = []
        async with self.database.transaction() as conn:
            inserted = await conn.fetch(_INSERT_MANY, *_columns(keys), self._now_ms(), blobs)
            if len(inserted) < len(set(keys)):
                new = {DedupKey(*row) for row in inserted}
                rows = await conn.fetch(
                    _SELECT_MANY, *_columns([k for k in dict.fromkeys(keys) if k not in new])
                )
            if sent:
                await conn.execute(_MARK_SENT, *_columns(sent))
        return {
            (key := DedupKey(r[0], r[1], r[2])): DedupEntry(
                key, decode_outputs(r[4]), int(r[3]), bool(r[5])
            )
            for r in rows
        }

    async def mark_sent(self, keys: Sequence[DedupKey]) -> None:
        if not keys:
            return
        async with self.database.connection() as conn:
            await conn.execute(_MARK_SENT, *_columns(keys))

    async def purge(self, older_than: datetime) -> int:
        limit = int(older_than.timestamp() * 1000)
        async with self.database.connection() as conn:
            status = await conn.execute("DELETE FROM bus_dedup WHERE completed_at_ms < $1", limit)
        return int(status.split()[-1])

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)


def _columns(keys: Sequence[DedupKey]) -> tuple[list[str], list[str], list[str]]:
    """The keys as three arrays (handlers, sources, ids), for ``unnest``."""
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
