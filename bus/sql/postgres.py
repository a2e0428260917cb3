"""One PostgreSQL database used from asyncio: an asyncpg pool, transactions, versioned schema.

asyncpg is asyncio-native (no thread per call) and the fastest maintained driver; bus uses
it directly, without an ORM. Database faults - the server unreachable or restarting, a
connection lost, a deadlock or serialization failure - become a retryable
:class:`~bus.errors.StoreError` here, once; errors in the caller's own SQL (a constraint of
its table, a typo) propagate as asyncpg raised them.

Every connection carries three server-side timeouts (:class:`PostgresTimeouts`), so a
peer that stops inside its transaction - SIGSTOP, a frozen VM - holds others back for a
bounded time only: a lock wait gives up after ``lock_timeout`` (a retryable
:class:`~bus.errors.LockTimeoutError`), a statement after ``statement_timeout``, and the
server ends a session idle inside a transaction after
``idle_in_transaction_session_timeout``, releasing its locks.

Migrations run in one transaction under a transaction-scoped advisory lock, so several
processes starting at once apply them exactly once (PostgreSQL's DDL is transactional).

Example::

    db = PostgresDatabase("postgresql://bus@127.0.0.1/bus")
    await db.open()
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO mailbox VALUES ($1)", "u-1")
    await db.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import asyncpg

from bus.errors import ConfigError, LockTimeoutError, StoreError
from bus.sql.migrations import SCHEMA_VERSION_TABLE, Migration, pending

__all__ = ["PostgresDatabase", "PostgresTimeouts", "is_database_fault"]

#: ``pg_advisory_xact_lock`` key held while migrating (any constant; "bus" in ASCII).
_MIGRATION_LOCK = 0x627573

#: What asyncpg raises when the database, not the SQL, failed.
_DRIVER_FAULTS: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,  # "connection is closed", pool closing
    asyncpg.PostgresConnectionError,  # connection lost or rejected
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, starting up, crash
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, too many connections
    # the server ended our session, idle in a transaction too long (we were the stalled one)
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    # statement_timeout (57014) is a QueryCanceledError: an OperatorInterventionError above
)
#: The same plus the socket errors of connecting (our own calls only: an OSError raised in
#: a caller's block may be its HTTP call, not the database).
_FAULTS: tuple[type[BaseException], ...] = (OSError, TimeoutError, *_DRIVER_FAULTS)


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresTimeouts:
    """Server-side timeouts of every connection of a :class:`PostgresDatabase` (0: none).

    Without them a peer stopped inside its transaction (SIGSTOP, a frozen VM, a GC pause)
    holds its row locks, and everyone waiting on them, for as long as it is stopped.

    Example::

        PostgresDatabase(dsn, timeouts=PostgresTimeouts(lock_timeout_s=2.0))
    """

    #: Seconds a statement waits for a lock (a row another transaction holds) before it
    #: gives up with :class:`~bus.errors.LockTimeoutError` (retryable). Default 5: a healthy
    #: peer holds a saga's row for milliseconds, so a longer wait means a stalled one.
    lock_timeout_s: float = 5.0
    #: Seconds any one statement may run before the server cancels it (a retryable
    #: StoreError). Default 30: bus's statements take milliseconds; a bound, not a budget.
    statement_timeout_s: float = 30.0
    #: Seconds a session may sit idle inside an open transaction before the server ends
    #: it, rolling back and releasing its locks. Default 60: above any pause a healthy
    #: process makes between two statements of one transaction (a dedup handler's own
    #: calls run inside it), and bounds how long a stalled peer's locks last.
    idle_in_transaction_timeout_s: float = 60.0

    def problems(self) -> list[str]:
        """What is wrong with these values (none negative)."""
        return [
            f"{name} must be 0 (no timeout) or more seconds"
            for name in ("lock_timeout_s", "statement_timeout_s", "idle_in_transaction_timeout_s")
            if getattr(self, name) < 0
        ]

    def server_settings(self) -> dict[str, str]:
        """The settings each connection starts with (milliseconds, as PostgreSQL takes them).

        >>> PostgresTimeouts(lock_timeout_s=0.5).server_settings()["lock_timeout"]
        '500'
        """
        return {
            "lock_timeout": _ms(self.lock_timeout_s),
            "statement_timeout": _ms(self.statement_timeout_s),
            "idle_in_transaction_session_timeout": _ms(self.idle_in_transaction_timeout_s),
        }


def _ms(seconds: float) -> str:
    # A positive value below 1 ms would round to 0, which PostgreSQL reads as "never".
    return str(max(1, round(seconds * 1000)) if seconds > 0 else 0)


def is_database_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the database failed (retry later) rather than the SQL."""
    return isinstance(exc, _FAULTS)


def _dsn_problem(exc: ValueError) -> str:
    """What is wrong with a DSN, never echoing it: a misplaced character of a password
    can end up in what asyncpg calls the port."""
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return str(exc)  # asyncpg's own words name the option, e.g. an unknown sslmode
    if "invalid literal for int()" in str(exc):
        return "its port is not a number"
    return "it cannot be parsed"


class PostgresDatabase:
    """A pool of connections to one database: open, migrate, transactions."""

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_s: float = 10.0,
        password: str | None = None,
        timeouts: PostgresTimeouts | None = None,
    ) -> None:
        if not 0 <= min_connections <= max_connections or max_connections < 1:
            raise ConfigError(
                "PostgreSQL pool sizes need 0 <= min_connections <= max_connections and "
                f"max_connections >= 1; got {min_connections} and {max_connections}"
            )
        self.timeouts = timeouts or PostgresTimeouts()
        if problems := self.timeouts.problems():
            raise ConfigError("PostgreSQL timeouts: " + "; ".join(problems))
        self.dsn = dsn
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        # Kept out of the DSN so it need not be in argv (``ps``); None: the DSN's, or
        # libpq's PGPASSWORD / PGPASSFILE, which asyncpg reads itself.
        self._password = password
        self._pool: Any = None

    def __repr__(self) -> str:
        # The DSN may hold a password: show the database only.
        return f"PostgresDatabase(database={self._database_name()!r})"

    def _database_name(self) -> str:
        return self.dsn.rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def pool(self) -> Any:
        """The asyncpg pool (for reads outside a transaction: ``await db.pool.fetch(...)``)."""
        if self._pool is None:
            raise StoreError(
                f"PostgreSQL database {self._database_name()!r} is not open: await open() first"
            )
        return self._pool

    async def open(self) -> None:
        """Create the pool (connections opened now, so a wrong DSN fails here). Idempotent.

        A DSN that cannot be parsed is a :class:`ConfigError` saying "bad DSN".
        """
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_connections,
                max_size=self.max_connections,
                timeout=self.connect_timeout_s,
                password=self._password,
                server_settings=self.timeouts.server_settings(),
            )
        except ValueError as exc:  # asyncpg parses the DSN when it first connects
            raise ConfigError(
                f"bad DSN for PostgreSQL database {self._database_name()!r}: {_dsn_problem(exc)} "
                "(expected postgresql://USER@HOST[:PORT]/DATABASE; the password may come "
                "from the environment instead, see the README)"
            ) from exc
        except BaseException as exc:
            if is_database_fault(exc) or isinstance(exc, asyncpg.PostgresError):
                raise StoreError(
                    f"cannot connect to PostgreSQL database {self._database_name()!r}: {exc} "
                    "(check the DSN, that the server runs and accepts this user)"
                ) from exc
            raise

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close the pool, waiting up to ``timeout_s`` for connections in use. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await pool.close()
        except _FAULTS:
            pool.terminate()

    async def __aenter__(self) -> PostgresDatabase:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def fault(self, exc: BaseException) -> StoreError:
        """``exc`` (a database fault) as the StoreError to raise from it."""
        return StoreError(f"PostgreSQL database {self._database_name()!r}: {exc!r}")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; database faults become :class:`StoreError`."""
        try:
            conn = await self.pool.acquire()
        except _FAULTS as exc:
            raise self.fault(exc) from exc
        try:
            yield conn
        except asyncpg.exceptions.LockNotAvailableError as exc:
            raise LockTimeoutError(
                f"PostgreSQL database {self._database_name()!r}: a lock wait reached "
                f"lock_timeout ({self.timeouts.lock_timeout_s:g}s): another transaction "
                "(a stalled replica?) holds the row"
            ) from exc
        except _DRIVER_FAULTS as exc:
            raise self.fault(exc) from exc
        finally:
            # A connection that died is discarded by the pool; never mask the block's error.
            with contextlib.suppress(*_FAULTS):
                await self.pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection inside a transaction: committed when the block ends, rolled back on
        an exception (which propagates; database faults as :class:`StoreError`)."""
        async with self.connection() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                yield conn
            except BaseException:
                # On a dead connection there is nothing to roll back: the server did.
                with contextlib.suppress(*_FAULTS):
                    await tx.rollback()
                raise
            await tx.commit()

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the pending ``migrations`` of ``component`` in one transaction; the version."""
        async with self.transaction() as conn:
            # Another process migrating holds the lock for as long as its DDL takes, and
            # DDL on a big table may run long: wait, here only, without the timeouts.
            await conn.execute("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} (component TEXT PRIMARY KEY,"
                " version INTEGER NOT NULL, applied_at_ms BIGINT NOT NULL)"
            )
            current = await conn.fetchval(
                f"SELECT version FROM {SCHEMA_VERSION_TABLE} WHERE component = $1", component
            )
            todo = pending(component, migrations, int(current or 0))
            for migration in todo:
                for statement in migration.statements:
                    await conn.execute(statement)
            if not todo:
                return int(current or 0)
            await conn.execute(
                f"INSERT INTO {SCHEMA_VERSION_TABLE} (component, version, applied_at_ms)"
                " VALUES ($1, $2, $3) ON CONFLICT (component) DO UPDATE SET"
                " version = excluded.version, applied_at_ms = excluded.applied_at_ms",
                component,
                todo[-1].version,
                time.time_ns() // 1_000_000,
            )
            return todo[-1].version
