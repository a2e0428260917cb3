"""PostgreSQL beyond the contract: concurrent migrations, a server restart, a wrong DSN."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bus import DedupKey, PostgresDatabase, PostgresDedupStore, StoreError
from bus.dedup.postgres import COMPONENT, MIGRATIONS
from tests.conftest import IN_CI
from tests.postgres import PostgresServer, _free_port

pytestmark = pytest.mark.postgres

KEY = DedupKey("provision", "/hr", "id-1")


async def test_processes_starting_at_once_migrate_the_schema_once(postgres_dsn: str) -> None:
    stores = [PostgresDedupStore(postgres_dsn, max_connections=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        version = await stores[0].database.pool.fetchval(
            "SELECT version FROM schema_version WHERE component = $1", COMPONENT
        )
        assert version == len(MIGRATIONS)
        assert await stores[1].database.migrate(COMPONENT, MIGRATIONS) == len(MIGRATIONS)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_store_recovers_after_the_server_restarts(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    if not postgres_server.can_restart:
        message = "BUS_TEST_POSTGRES_DSN names an external server: it cannot be restarted"
        if IN_CI:  # a restart test that cannot restart must not pass CI as skipped
            pytest.fail(message)
        pytest.skip(message)
    async with PostgresDedupStore(postgres_dsn) as store:
        await store.record(KEY)
        await asyncio.to_thread(postgres_server.stop, "immediate")
        try:
            with pytest.raises(StoreError) as raised:
                await store.get(KEY)
            assert raised.value.retryable
        finally:
            await asyncio.to_thread(postgres_server.start)
        # The pool replaces connections that died with the server; the committed row survived.
        entry = await store.get(KEY)
        assert entry is not None
        assert entry.key == KEY
        await asyncio.to_thread(postgres_server.restart, "fast")
        assert await store.get(KEY) == entry


async def test_an_unreachable_server_is_a_store_error_naming_the_fix() -> None:
    db = PostgresDatabase(
        f"postgresql://postgres@127.0.0.1:{_free_port()}/nowhere", connect_timeout_s=2
    )
    with pytest.raises(StoreError, match="check the DSN") as raised:
        await db.open()
    assert raised.value.retryable
    assert "nowhere" in repr(db)


async def test_errors_of_the_callers_own_block_pass_through_unchanged(postgres_dsn: str) -> None:
    """Only the database's faults become StoreError: an OSError of the handler's HTTP call,
    or a mistake in its SQL, stays what it was."""

    async def http_call_fails(db: PostgresDatabase) -> None:
        async with db.transaction():
            raise ConnectionRefusedError("the handler's HTTP call")

    async def bad_sql(db: PostgresDatabase) -> None:
        async with db.transaction() as conn:
            await conn.execute("SELECT * FROM no_such_table")

    async with PostgresDatabase(postgres_dsn) as db:
        with pytest.raises(ConnectionRefusedError):
            await http_call_fails(db)
        with pytest.raises(asyncpg.UndefinedTableError):
            await bad_sql(db)
        async with db.transaction() as conn:  # the pool is healthy afterwards
            assert await conn.fetchval("SELECT 1") == 1
