"""One SQLite file used from asyncio: one connection, WAL, versioned schema.

The stdlib ``sqlite3`` driver blocks. Calls run on the event loop's own thread, because
a SQLite call in WAL mode with ``synchronous=NORMAL`` takes microseconds (a commit writes
the WAL without fsync) and handing it to a thread costs far more: every statement there
releases the GIL and then waits up to the interpreter's switch interval (5 ms) to get it
back from a busy loop - measured on the saga coordinator, 190 vs 300 sagas/s (the "GIL
convoy"). The one wait that can be long is another process's write lock (``BEGIN
IMMEDIATE`` answering SQLITE_BUSY): the loop never waits for it. Its busy timeout is 0, and
a call refused that way (nothing done) is run again on the database's single-thread
executor with ``busy_timeout_s``; while any call is out on that thread, later calls queue
behind it there, so calls still run in submission order. ``inline=False`` puts every call
on the thread (the loop then never touches the disk, at the convoy's price).

The other slow step is a WAL checkpoint, which copies the log into the database file and
fsyncs both: SQLite runs one inside a commit every 1,000 pages, which held the loop for up
to 48 ms. Inline, automatic checkpoints are off on the loop's connection and a second
connection on the thread checkpoints at most every ``checkpoint_interval_s`` after a
commit: ``PASSIVE`` (never blocking a writer) until the WAL passes 4,000 pages, then one
``RESTART`` (writers wait for it, on the thread) so that the WAL starts over.

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
import logging
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

log = logging.getLogger(__name__)

#: WAL frames (pages) past which the next checkpoint is a RESTART: 16 MB of 4 KiB pages.
_RESTART_FRAMES = 4000

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
        """The connection; only usable inside a function given to :meth:`run`."""
        return self._db.connection

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` inside this transaction."""
        return await self._db.run(fn)

    def before_commit(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``fn(connection)`` just before COMMIT; if it raises, the transaction rolls back."""
        self.last = fn


class SqliteDatabase:
    """A SQLite file: open, migrate, run functions and transactions on its connection."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 5.0,
        inline: bool = True,
        checkpoint_interval_s: float = 0.5,
    ) -> None:
        if busy_timeout_s < 0:
            raise ConfigError(f"busy_timeout_s must be >= 0 seconds, got {busy_timeout_s}")
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        #: Calls run on the event loop's thread (see the module's docstring).
        self.inline = inline
        self._executor: ThreadPoolExecutor | None = None
        #: Calls submitted to the executor and not finished: later calls queue behind them.
        self._on_thread = 0
        self.checkpoint_interval_s = checkpoint_interval_s
        #: Inline only: checkpoints the WAL on the thread (see the module's docstring).
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Future[int] | None = None
        self._wal_frames = 0
        self._last_checkpoint = 0.0
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
            # on the thread: other processes opening the file too make this wait
            self._connection = await self._on_executor(self._executor, self._connect)
            if self.inline:
                loop = asyncio.get_running_loop()
                self._checkpointer = await loop.run_in_executor(
                    self._executor, self._connect_checkpointer
                )
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the driver issues no implicit BEGIN/COMMIT; we do, explicitly.
        # Run on the executor's thread with the busy timeout: switching a file to WAL needs
        # its lock, which another process opening the same file at the same moment may
        # hold (with no wait, one of several processes started together failed to open it:
        # "database is locked"). Inline, the lock is then never waited for on the loop
        # (timeout 0): see _submit.
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            timeout=self.busy_timeout_s,
            check_same_thread=not self.inline,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if self.inline:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
                conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        # Used on the executor's thread only; it waits for locks there, never on the loop.
        return sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_s)

    def _committed(self) -> None:
        """After a commit: start a checkpoint on the thread if one is due and none runs."""
        executor, checkpointer = self._executor, self._checkpointer
        if executor is None or checkpointer is None or self._checkpoint is not None:
            return
        now = time.monotonic()
        if now - self._last_checkpoint < self.checkpoint_interval_s:
            return
        self._last_checkpoint = now
        restart = self._wal_frames >= _RESTART_FRAMES
        self._checkpoint = asyncio.wrap_future(executor.submit(_checkpoint, checkpointer, restart))
        self._checkpoint.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, done: asyncio.Future[int]) -> None:
        self._checkpoint = None
        if done.cancelled():
            return
        if done.exception() is not None:
            log.warning("SQLite database %s: checkpoint failed: %s", self.path, done.exception())
            return
        self._wal_frames = done.result()

    async def close(self) -> None:
        """Close the connection and stop the thread. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conns = [c for c in (self._connection, self._checkpointer) if c is not None]
        self._connection = self._checkpointer = None
        try:
            for conn in conns:  # after any checkpoint still running: the executor is FIFO
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
        executor = self._executor
        if executor is None:
            raise StoreError(f"SQLite database {self.path} is not open: await open() first")
        try:
            if self.inline and self._on_thread == 0:
                try:
                    return fn()
                except sqlite3.OperationalError as exc:
                    if not self._refused_by_lock(exc):
                        raise
                # Another process holds the write lock and nothing was done: wait for it
                # on the thread, with the busy timeout, instead of blocking the loop.
                return await self._on_executor(executor, lambda: self._waiting(fn))
            return await self._on_executor(executor, fn)
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith(_DATABASE_FAULTS):
                raise  # a mistake in the SQL: the caller's error, not the database's
            raise StoreError(f"SQLite database {self.path}: {exc}") from exc

    async def _on_executor(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        self._on_thread += 1
        done = executor.submit(fn)
        # Counted down when fn has returned on the thread, not when our await ends: a
        # cancelled caller must not let the next call run inline while fn still runs.
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(self._thread_call_done))
        return await asyncio.wrap_future(done)

    def _thread_call_done(self) -> None:
        self._on_thread -= 1

    def _refused_by_lock(self, exc: sqlite3.OperationalError) -> bool:
        conn = self._connection
        return (
            exc.sqlite_errorname.startswith("SQLITE_BUSY")
            and conn is not None
            and not conn.in_transaction  # nothing half-done that running again would repeat
        )

    def _waiting(self, fn: Callable[[], T]) -> T:
        """``fn()`` with the busy timeout set (on the executor's thread only)."""
        conn = self.connection
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        try:
            return fn()
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)``; its result (calls run one at a time, in submission order).

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

        ``first(connection)`` runs right after BEGIN in the same call (a check
        that may raise); :meth:`SqliteTransaction.before_commit` sets work that runs right
        before COMMIT, likewise (each call saved is a hand-off when calls go to the thread).
        """
        async with self._write_lock:
            conn = self.connection
            await self._submit(lambda: _begin(conn, first))
            tx = SqliteTransaction(self)
            try:
                yield tx
                await self._submit(lambda: _commit(conn, tx.last))
                self._committed()
            except BaseException:
                # Calls run in submission order, so this rollback follows anything the block
                # submitted, even a call whose await was cancelled.
                await self._submit(lambda: _rollback(conn))
                raise

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in a transaction of its own, in one call.

        The short form of :meth:`transaction` for work that needs no await in between:
        BEGIN, ``fn`` and COMMIT (or ROLLBACK if ``fn`` raises) run back to back.
        """
        async with self._write_lock:
            conn = self.connection
            result = await self._submit(lambda: _in_transaction(conn, fn))
            self._committed()
            return result

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


def _checkpoint(conn: sqlite3.Connection, restart: bool) -> int:
    """Copy the WAL into the database file; the frames the WAL holds now.

    PASSIVE never waits for a writer, but never catches up with one that keeps writing, and
    SQLite reuses the WAL from its start only once all of it was copied: under a steady load
    the WAL would grow without bound. So once it holds ``_RESTART_FRAMES`` the next
    checkpoint is a RESTART, which holds writers off while it copies (the loop's ``BEGIN
    IMMEDIATE`` answers SQLITE_BUSY and that call queues on this thread behind it) and then
    lets the WAL start over. RESTART every time cost 25% of the saga benchmark: the writes
    it holds off pay the thread hand-off.
    """
    mode = "RESTART" if restart else "PASSIVE"
    _, frames, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(frames)


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
