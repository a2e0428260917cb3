"""The SQLite dedup store: the embedded default, one file in WAL mode.

One ``bus_dedup`` table keyed by (handler, source, id); the primary key is the proof of a
duplicate. Transactions hold SQLite's write lock from their start (``BEGIN IMMEDIATE``), so
two processes on one file take turns and the second sees the first's record when it enters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from bus.dedup.base import DedupEntry, DedupKey, duplicate_error
from bus.dedup.outputs import decode_outputs, encode_outputs
from bus.record import OutgoingRecord
from bus.sql.migrations import Migration
from bus.sql.sqlite import SqliteDatabase, SqliteTransaction
from bus.sql.store import MigratedStore
from bus.stamping import utc_now

__all__ = ["MIGRATIONS", "SqliteDedupStore", "SqliteDedupTransaction"]

T = TypeVar("T")

#: The component name of the dedup schema in ``schema_version``.
COMPONENT = "bus.dedup"

MIGRATIONS = (
    Migration(
        1,
        "create bus_dedup",
        (
            "CREATE TABLE bus_dedup ("
            " handler TEXT NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL,"
            " completed_at_ms INTEGER NOT NULL, outputs BLOB NOT NULL,"
            " sent INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (handler, source, id))",
            "CREATE INDEX bus_dedup_completed_at ON bus_dedup (completed_at_ms)",
        ),
    ),
)

_SELECT = (
    "SELECT completed_at_ms, outputs, sent FROM bus_dedup"
    " WHERE handler = ? AND source = ? AND id = ?"
)
# The keys drive the join (CROSS JOIN fixes SQLite's join order): one primary-key search
# per key. ``WHERE (handler, source, id) IN (VALUES ...)`` with more than one key scanned
# the whole table, so every grouped write got slower as the table grew.
_SELECT_MANY = (
    "SELECT d.handler, d.source, d.id, d.completed_at_ms, d.outputs, d.sent"
    " FROM (VALUES {values}) AS k CROSS JOIN bus_dedup AS d"
    " ON d.handler = k.column1 AND d.source = k.column2 AND d.id = k.column3"
)
#: Keys per SELECT of record_new: 3 parameters each, well under SQLite's 32,766.
_KEYS_PER_SELECT = 500
_MARK_SENT = "UPDATE bus_dedup SET sent = 1 WHERE handler = ? AND source = ? AND id = ?"
_INSERT = (
    "INSERT INTO bus_dedup (handler, source, id, completed_at_ms, outputs) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)


class SqliteDedupTransaction:
    """The handler's view of the transaction: run SQL on its connection, set the outputs."""

    __slots__ = ("_key", "_tx", "outputs")

    def __init__(self, key: DedupKey, tx: SqliteTransaction) -> None:
        self._key = key
        self._tx = tx
        self.outputs: tuple[OutgoingRecord, ...] = ()

    @property
    def key(self) -> DedupKey:
        return self._key

    @property
    def connection(self) -> sqlite3.Connection:
        """The store's connection; use it inside functions given to :meth:`run`."""
        return self._tx.connection

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the store's thread, inside this transaction."""
        return await self._tx.run(fn)

    def complete(self, outputs: Iterable[OutgoingRecord]) -> None:
        self.outputs = tuple(outputs)


class SqliteDedupStore(MigratedStore[SqliteDatabase]):
    """Completions in a SQLite file; handlers may keep their own tables in the same file.

    Example::

        async with SqliteDedupStore("bus.db") as store:
            async with store.transaction(DedupKey("h", "/hr", "id-1")) as tx:
                await tx.run(lambda db: db.execute("INSERT INTO mailbox VALUES ('u-1')"))
                tx.complete(outputs)
    """

    component = COMPONENT
    migrations = MIGRATIONS

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        #: The database, for the handler's own reads and schema (``await database.run(fn)``).
        self.database = SqliteDatabase(path, busy_timeout_s=busy_timeout_s)
        self.clock = clock

    async def get(self, key: DedupKey) -> DedupEntry | None:
        row = await self.database.run(lambda conn: conn.execute(_SELECT, key).fetchone())
        if row is None:
            return None
        return DedupEntry(key, decode_outputs(row[1]), int(row[0]), bool(row[2]))

    async def record(self, key: DedupKey, outputs: Iterable[OutgoingRecord] = ()) -> DedupEntry:
        completion = DedupEntry(key, tuple(outputs), self._now_ms())
        if not await self.database.write(lambda conn: _insert(conn, completion)):
            raise duplicate_error(key)
        return completion

    @asynccontextmanager
    async def transaction(self, key: DedupKey) -> AsyncIterator[SqliteDedupTransaction]:
        def check(conn: sqlite3.Connection) -> None:
            # BEGIN IMMEDIATE waited for any other writer, so this check is final.
            if conn.execute(_SELECT, key).fetchone() is not None:
                raise duplicate_error(key)

        async with self.database.transaction(first=check) as tx:
            dedup_tx = SqliteDedupTransaction(key, tx)
            yield dedup_tx
            entry = DedupEntry(key, dedup_tx.outputs, self._now_ms())

            def record(conn: sqlite3.Connection) -> None:
                if not _insert(conn, entry):
                    raise duplicate_error(key)  # rolls the effect back with it

            # Runs in the COMMIT's trip to the thread: the record and the effect commit together.
            tx.before_commit(record)

    async def record_new(
        self,
        entries: Sequence[tuple[DedupKey, Sequence[OutgoingRecord]]],
        *,
        sent: Sequence[DedupKey] = (),
    ) -> dict[DedupKey, DedupEntry]:
        if not entries:
            await self.mark_sent(sent)
            return {}
        now_ms = self._now_ms()
        # encoded before the transaction: the write lock is held for two statements only
        rows = {key: (*key, now_ms, encode_outputs(outputs)) for key, outputs in reversed(entries)}
        keys = list(rows)

        def record_all(conn: sqlite3.Connection) -> dict[DedupKey, DedupEntry]:
            before: dict[DedupKey, DedupEntry] = {}
            for start in range(0, len(keys), _KEYS_PER_SELECT):
                chunk = keys[start : start + _KEYS_PER_SELECT]
                values = ",".join(["(?, ?, ?)"] * len(chunk))
                found = conn.execute(
                    _SELECT_MANY.format(values=values), [part for key in chunk for part in key]
                )
                for handler, source, id_, at_ms, blob, was_sent in found:
                    key = DedupKey(handler, source, id_)
                    before[key] = DedupEntry(key, decode_outputs(blob), int(at_ms), bool(was_sent))
            conn.executemany(_INSERT, [row for key, row in rows.items() if key not in before])
            _mark(conn, sent)
            return before

        return await self.database.write(record_all)

    async def mark_sent(self, keys: Sequence[DedupKey]) -> None:
        if not keys:
            return
        await self.database.write(lambda conn: _mark(conn, keys))

    async def purge(self, older_than: datetime) -> int:
        limit = int(older_than.timestamp() * 1000)
        return await self.database.write(
            lambda conn: (
                conn.execute("DELETE FROM bus_dedup WHERE completed_at_ms < ?", (limit,)).rowcount
            )
        )

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)


def _insert(conn: sqlite3.Connection, completion: DedupEntry) -> bool:
    """Insert the row; False if the key was already there (the primary key decides)."""
    handler, source, id_ = completion.key
    blob = encode_outputs(completion.outputs)
    cursor = conn.execute(_INSERT, (handler, source, id_, completion.completed_at_ms, blob))
    return cursor.rowcount == 1


def _mark(conn: sqlite3.Connection, keys: Sequence[DedupKey]) -> None:
    """Set ``sent`` on the rows of ``keys`` (DedupKeys are the statement's parameters)."""
    if keys:
        conn.executemany(_MARK_SENT, keys)
