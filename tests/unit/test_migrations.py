"""bus.sql.migrations (pure) and how SQLite applies them: versioned, idempotent, atomic."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import DefinitionError, Migration, SchemaVersionError, SqliteDatabase, StoreError
from bus.sql.migrations import pending

V1 = Migration(1, "create a", ("CREATE TABLE a (x INTEGER)",))
V2 = Migration(2, "add b", ("CREATE TABLE b (y INTEGER)", "CREATE INDEX b_y ON b (y)"))


# Timing is not under test: a loaded CI machine must not fail these on a deadline.
@settings(deadline=None)
@given(st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=6))
def test_pending_is_every_migration_after_the_current_version(known: int, current: int) -> None:
    migrations = [Migration(v, f"m{v}", ("SELECT 1",)) for v in range(1, known + 1)]
    if current > known:
        with pytest.raises(SchemaVersionError, match="newer version of the code"):
            pending("c", migrations, current)
    else:
        assert [m.version for m in pending("c", migrations, current)] == list(
            range(current + 1, known + 1)
        )


def test_invalid_migrations_are_reported_all_at_once() -> None:
    with pytest.raises(DefinitionError) as raised:
        pending("", [Migration(2, "skips one", ()), Migration(3, "follows", ("SELECT 1",))], 0)
    assert len(raised.value.problems) == 4  # empty name, 2 at 0, no statements, 3 at 1


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _version(path: Path, component: str) -> int | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
    return None if row is None else int(row[0])


async def test_sqlite_applies_pending_migrations_once_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with SqliteDatabase(path) as db:
        assert await db.migrate("app", [V1]) == 1
        assert await db.migrate("app", [V1]) == 1  # idempotent
        assert await db.migrate("app", [V1, V2]) == 2
        assert await db.migrate("other", [Migration(1, "c", ("CREATE TABLE c (z TEXT)",))]) == 1
    assert {"a", "b", "c", "schema_version"} <= _tables(path)
    assert _version(path, "app") == 2
    assert _version(path, "other") == 1


async def test_sqlite_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "m.db") as db:
        await db.migrate("app", [V1, V2])
        with pytest.raises(SchemaVersionError) as raised:
            await db.migrate("app", [V1])
        assert not raised.value.retryable


async def test_a_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    broken = Migration(2, "broken", ("CREATE TABLE b (y INTEGER)", "CREATE TABLE oops ("))
    async with SqliteDatabase(path) as db:
        await db.migrate("app", [V1])
        with pytest.raises(sqlite3.OperationalError):
            await db.migrate("app", [V1, broken])
        assert await db.migrate("app", [V1, V2]) == 2  # the connection is usable again
    assert _version(path, "app") == 2


async def test_a_database_locked_past_the_busy_timeout_is_a_retryable_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.db"

    async def write(db: SqliteDatabase) -> None:
        async with db.transaction() as tx:
            await tx.run(lambda conn: conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))

    first, second = SqliteDatabase(path), SqliteDatabase(path, busy_timeout_s=0.05)
    async with first, second, first.transaction():
        with pytest.raises(StoreError, match="locked") as raised:
            await write(second)
        assert raised.value.retryable


async def test_using_a_closed_database_names_the_fix(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "m.db")
    with pytest.raises(StoreError, match="await open"):
        await db.run(lambda conn: conn.execute("SELECT 1"))


async def test_a_failing_first_or_before_commit_step_rolls_the_transaction_back(
    tmp_path: Path,
) -> None:
    def refuse(conn: sqlite3.Connection) -> None:
        raise LookupError("refused")

    async def attempt(db: SqliteDatabase, *, at_start: bool) -> None:
        async with db.transaction(first=refuse if at_start else None) as tx:
            await tx.run(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
            tx.before_commit(refuse)

    async with SqliteDatabase(tmp_path / "m.db") as db:
        await db.write(lambda conn: conn.execute("CREATE TABLE t (x INTEGER)"))
        for at_start in (True, False):
            with pytest.raises(LookupError):
                await attempt(db, at_start=at_start)
        assert await db.write(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()) == (
            0,
        )
