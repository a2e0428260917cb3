"""The app the crash tests run as killed, stopped and restarted processes.

Each ``Item(key, seq)`` is handled by writing one effect row (key, seq, event id, pid,
partition) to a database, and optionally emitting ``Done``. Everything comes from the
environment, so ``python -m bus run tests.crash.effects_app --transport kafka`` is the
whole command line:

- ``EFFECTS_RUN``: suffix of the topics (``crash.items.<run>``, ``crash.done.<run>``) and
  of the group, so every test run is alone on the shared broker;
- ``EFFECTS_DB``: a SQLite file path, or a ``postgresql://`` DSN;
- ``EFFECTS_DEDUP``: ``1`` (default) runs the handler once per CloudEvent with the effect
  in the dedup store's transaction; ``0`` writes the effect in its own transaction
  (at-least-once);
- ``EFFECTS_EMIT``: ``1`` (default) returns a ``Done`` per item.

The effects table is created by the test before any process starts (``harness.EffectsDb``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bus import App, Context, Event, PostgresDedupStore, SqliteDedupStore
from bus.sql.postgres import PostgresDatabase
from bus.sql.sqlite import SqliteDatabase

RUN = os.environ.get("EFFECTS_RUN", "default")
DB = os.environ.get("EFFECTS_DB", "effects.db")
DEDUP = os.environ.get("EFFECTS_DEDUP", "1") == "1"
EMIT = os.environ.get("EFFECTS_EMIT", "1") == "1"
POSTGRES = DB.startswith(("postgresql://", "postgres://"))
PID = os.getpid()

ITEM_TYPE = "crash.effects.item.v1"
DONE_TYPE = "crash.effects.done.v1"
SQLITE_INSERT = "INSERT INTO crash_effects (key, seq, event_id, pid, part) VALUES (?, ?, ?, ?, ?)"
POSTGRES_INSERT = (
    "INSERT INTO crash_effects (key, seq, event_id, pid, part) VALUES ($1, $2, $3, $4, $5)"
)


class Item(Event, type=ITEM_TYPE, topic=f"crash.items.{RUN}", key="key"):
    key: str
    seq: int


class Done(Event, type=DONE_TYPE, topic=f"crash.done.{RUN}", key="key"):
    key: str
    seq: int
    pid: int


store: SqliteDedupStore | PostgresDedupStore | None = None
if DEDUP:
    # 3-5 processes share the file or database; a generous busy timeout rides out the
    # queue of writers (SQLite serialises them with BEGIN IMMEDIATE).
    store = (
        PostgresDedupStore(DB, max_connections=20)
        if POSTGRES
        else SqliteDedupStore(DB, busy_timeout_s=30.0)
    )

app = App(f"crash-effects-{RUN}", dedup=store)

# Without dedup the effect has its own database, opened on first use (the runner opens
# only dedup stores).
_plain: SqliteDatabase | PostgresDatabase | None = None
_plain_lock = asyncio.Lock()


async def _plain_database() -> SqliteDatabase | PostgresDatabase:
    global _plain
    async with _plain_lock:
        if _plain is None:
            db: SqliteDatabase | PostgresDatabase = (
                PostgresDatabase(DB, max_connections=20)
                if POSTGRES
                else SqliteDatabase(DB, busy_timeout_s=30.0)
            )
            await db.open()
            _plain = db
    return _plain


def _row(item: Item, ctx: Context) -> tuple[Any, ...]:
    return (item.key, item.seq, ctx.envelope.id, PID, ctx.record.partition)


async def write_effect(item: Item, ctx: Context) -> None:
    row = _row(item, ctx)
    if DEDUP:
        if POSTGRES:
            await ctx.transaction.connection.execute(POSTGRES_INSERT, *row)
        else:
            await ctx.transaction.run(lambda db: db.execute(SQLITE_INSERT, row))
        return
    db = await _plain_database()
    if isinstance(db, PostgresDatabase):
        async with db.connection() as conn:
            await conn.execute(POSTGRES_INSERT, *row)
    else:
        async with db.transaction() as tx:
            await tx.run(lambda conn: conn.execute(SQLITE_INSERT, row))


if EMIT:

    @app.handler
    async def record_effect(item: Item, ctx: Context) -> Done:
        await write_effect(item, ctx)
        return Done(key=item.key, seq=item.seq, pid=PID)

else:

    @app.handler
    async def record_effect_quietly(item: Item, ctx: Context) -> None:
        await write_effect(item, ctx)
