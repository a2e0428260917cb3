"""One SQLite file used from asyncio: one connection on one thread, WAL, versioned schema.

The stdlib ``sqlite3`` driver blocks, so every call runs on a dedicated single-thread
executor owned by the database object: the event loop never waits on disk, the connection
is only ever touched by its own thread (``check_same_thread`` stays on and catches misuse),
and calls run in submission order. ``aiosqlite`` does the same with a thread per
connection, but adds a dependency and a queue hop per call and hides the thread we need to
run a handler's own multi-statement function in; a 1-thread executor is all of it.

Writes go through :meth:`SqliteDatabase.transaction`: ``BEGIN IMMEDIATE`` takes SQLite's
write lock at the start (a deferred transaction that upgrades later can fail with
"database is locked" when another process writes), and an ``asyncio.Lock`` keeps the
tasks of this process from interleaving statements on the one connection. Other
processes wait up to ``busy_timeout_s`` for the lock. Reads (:meth:`run`) do not take the
lock: on the shared connection they see committed data plus the open transaction's own
writes. ``synchronous=NORMAL`` with WAL survives a crash of the process (not necessarily
of the OS or power: the last commits may be lost then).

Example::

    db = SqliteDatabase("bus.db")
    await db.open()
    await db.migrate("app", [Migration(1, "mailboxes", ("CREATE TABLE mailbox (id TEXT)",))])
    async with db.transaction() as tx:
        await tx.run(lambda conn: conn.execute("INSERT INTO mailbox VALUES ('u-1')"))
    rows = await db.run(lambda conn: conn.execute("SELECT id FROM mailbox").fetchall())
    await db.close()
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from bus.errors import ConfigError, StoreError
from bus.sql.migrations import SCHEMA_VERSION_TABLE, Migration, pending

__all__ = ["SqliteDatabase", "SqliteTransaction"]

T = TypeVar("T")

#: Error codes that say the database (lock, disk), not the SQL, failed: worth retrying.
_DATABASE_FAULTS = (
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL", "SQLITE_READONLY",
)  # fmt: skip


class SqliteTransaction:
    """An open write transaction: run functions of the connection inside it."""

    __slots__ = ("_db", "last")

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        #: Run on the connection right before COMMIT, in the same trip (set by before_commit).
        self.last: Callable[[sqlite3.Connection], object] | None = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection; only usable inside a function given to :meth:`run` (its thread)."""
        return self._db.connection

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the database's thread, inside this transaction."""
        return await self._db.run(fn)

    def before_commit(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``fn(connection)`` just before COMMIT; if it raises, the transaction rolls back."""
        self.last = fn


class SqliteDatabase:
    """A SQLite file: open, migrate, run functions and transactions on its thread."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        if busy_timeout_s < 0:
            raise ConfigError(f"busy_timeout_s must be >= 0 seconds, got {busy_timeout_s}")
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"SQLite database {self.path} is not open: await open() first")
        return self._connection

    async def open(self) -> None:
        """Open the file (created if missing) in WAL mode. Idempotent."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"bus-sqlite-{self.path.name}")
        try:
            self._connection = await self._submit(self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the driver issues no implicit BEGIN/COMMIT; we do, explicitly.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_s)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the connection and stop the thread. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._connection = self._connection, None
        try:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=False)

    async def __aenter__(self) -> SqliteDatabase:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _submit(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError(f"SQLite database {self.path} is not open: await open() first")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith(_DATABASE_FAULTS):
                raise  # a mistake in the SQL: the caller's error, not the database's
            raise StoreError(f"SQLite database {self.path}: {exc}") from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the database's thread; its result.

        A database fault (locked past ``busy_timeout_s``, I/O, disk full) becomes a retryable
        :class:`~bus.errors.StoreError`; any other error of ``fn`` propagates as it is.
        """
        conn = self.connection
        return await self._submit(lambda: fn(conn))

    @asynccontextmanager
    async def transaction(
        self, *, first: Callable[[sqlite3.Connection], object] | None = None
    ) -> AsyncIterator[SqliteTransaction]:
        """A write transaction: committed when the block ends, rolled back on an exception.

        ``first(connection)`` runs right after BEGIN in the same trip to the thread (a check
        that may raise); :meth:`SqliteTransaction.before_commit` sets work that runs right
        before COMMIT, likewise. Each trip saved is a thread hand-off.
        """
        async with self._write_lock:
            conn = self.connection
            await self._submit(lambda: _begin(conn, first))
            tx = SqliteTransaction(self)
            try:
                yield tx
                await self._submit(lambda: _commit(conn, tx.last))
            except BaseException:
                # Calls run in submission order, so this rollback follows anything the block
                # submitted, even a call whose await was cancelled.
                await self._submit(lambda: _rollback(conn))
                raise

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in a transaction of its own, in one trip to the thread.

        The short form of :meth:`transaction` for work that needs no await in between:
        BEGIN, ``fn`` and COMMIT (or ROLLBACK if ``fn`` raises) run back to back.
        """
        async with self._write_lock:
            conn = self.connection
            return await self._submit(lambda: _in_transaction(conn, fn))

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the pending ``migrations`` of ``component`` in one transaction; the version."""
        return await self.write(lambda conn: _migrate(conn, component, migrations))


def _begin(
    conn: sqlite3.Connection, first: Callable[[sqlite3.Connection], object] | None = None
) -> None:
    if conn.in_transaction:
        # Left open by a call whose caller was cancelled before it could roll back.
        conn.rollback()
    conn.execute("BEGIN IMMEDIATE")
    if first is not None:
        try:
            first(conn)
        except BaseException:
            conn.rollback()
            raise


def _commit(conn: sqlite3.Connection, last: Callable[[sqlite3.Connection], object] | None) -> None:
    if last is not None:
        last(conn)
    conn.commit()


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    _begin(conn)
    try:
        result = fn(conn)
        conn.commit()
    except BaseException:
        _rollback(conn)
        raise
    return result


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.rollback()


def _migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} ("
        "component TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at_ms INTEGER NOT NULL)"
    )
    row = conn.execute(
        f"SELECT version FROM {SCHEMA_VERSION_TABLE} WHERE component = ?", (component,)
    ).fetchone()
    current = int(row[0]) if row else 0
    todo = pending(component, migrations, current)
    for migration in todo:
        for statement in migration.statements:
            conn.execute(statement)
    if todo:
        conn.execute(
            f"INSERT INTO {SCHEMA_VERSION_TABLE} (component, version, applied_at_ms) "
            "VALUES (?, ?, ?) ON CONFLICT (component) DO UPDATE SET "
            "version = excluded.version, applied_at_ms = excluded.applied_at_ms",
            (component, todo[-1].version, time.time_ns() // 1_000_000),
        )
        return todo[-1].version
    return current
