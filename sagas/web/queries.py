"""What the console reads from a saga store beyond :class:`~sagas.stores.base.SagaStore`:
pages of sagas by keyset, a saga's outbox rows, and the console's audit records.

Keyset pagination: a page is ``ORDER BY started_at_ms DESC, saga_id`` after the last row
of the page before (its ``(started_at_ms, saga_id)`` is the cursor), never ``OFFSET``,
so page 2,000 costs what page 1 costs. The console's own migrations (component
``console``) add the audit table, an index ``(name, started_at_ms)`` for the
definition filter and one on the trigger's correlation id (in the state's JSON) for the
search; status and time use the store's indexes.

Example::

    queries = queries_for(store)
    await queries.migrate()
    page = await queries.page(SagaFilter(status="needs_attention"), limit=50)
    more = await queries.page(SagaFilter(status="needs_attention"), after=page.next, limit=50)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from bus import Migration
from sagas.state import SagaState
from sagas.stores.base import SagaQuery, SagaStore, from_ms, listed_state, to_ms
from sagas.stores.memory import MemorySagaStore
from sagas.stores.postgres import PostgresSagaStore
from sagas.stores.sql import STATE_COLUMNS, decode_headers, decode_state
from sagas.stores.sqlite import SqliteSagaStore

__all__ = [
    "AuditRecord",
    "ConsoleQueries",
    "Cursor",
    "OutboxRow",
    "SagaFilter",
    "SagaPage",
    "decode_cursor",
    "encode_cursor",
    "queries_for",
]

_AUDIT_TABLE = (
    "CREATE TABLE console_audit (seq {serial} PRIMARY KEY, at_ms BIGINT NOT NULL,"
    " subject TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,"
    " reason TEXT NOT NULL, detail TEXT NOT NULL)"
)
_INDEXES = (
    "CREATE INDEX console_audit_target ON console_audit (target, seq)",
    "CREATE INDEX IF NOT EXISTS saga_state_name_started ON saga_state (name, started_at_ms)",
)
# The trigger's correlation id inside the state's JSON text. An expression index needs the
# query to use the very same expression; a row whose JSON is bad (quarantined) must not
# make the index (or the search) fail: SQLite checks json_valid first, PostgreSQL reads the
# compact JSON SagaState.to_json writes with a pattern instead of casting to jsonb.
SQLITE_CORRELATION = (
    "(CASE WHEN json_valid(state) THEN json_extract(state, '$.correlation_id') END)"
)
POSTGRES_CORRELATION = '(substring(state from \'"correlation_id":"([^"]*)"\'))'
_CORRELATION_INDEX = "CREATE INDEX saga_state_correlation ON saga_state ({expr})"
_CORRELATION_WHY = "saga_state: an index on the trigger's correlation id, for the search"
SQLITE_MIGRATIONS = (
    Migration(
        1,
        "console_audit; saga_state (name, started_at_ms) for the definition filter",
        (_AUDIT_TABLE.format(serial="INTEGER"), *_INDEXES),
    ),
    Migration(2, _CORRELATION_WHY, (_CORRELATION_INDEX.format(expr=SQLITE_CORRELATION),)),
)
POSTGRES_MIGRATIONS = (
    Migration(
        1,
        "console_audit; saga_state (name, started_at_ms) for the definition filter",
        (_AUDIT_TABLE.format(serial="BIGSERIAL"), *_INDEXES),
    ),
    Migration(2, _CORRELATION_WHY, (_CORRELATION_INDEX.format(expr=POSTGRES_CORRELATION),)),
)

#: (started_at_ms, saga_id) of the last row shown.
Cursor = tuple[int, str]


@dataclass(frozen=True, slots=True)
class SagaFilter:
    """The sagas list's filters (all optional)."""

    name: str | None = None
    status: str | None = None
    #: Only sagas started at least this long ago (stuck ones), as a start-time bound.
    started_before: datetime | None = None
    #: Only sagas started at or after this time (recent ones).
    started_after: datetime | None = None
    #: A saga id, a business key (``<definition>:<key>``), a saga id prefix, or the
    #: correlation id of the trigger that started it.
    search: str | None = None
    #: Definition names, to turn a business key into saga ids.
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SagaPage:
    sagas: list[SagaState]
    #: Cursor of the next page (None: this is the last).
    next: Cursor | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    topic: str
    type: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to which saga or dead letter, when and why."""

    at: datetime
    subject: str
    role: str
    action: str
    target: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def encode_cursor(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(cursor))).decode()


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor in a page link, or None (absent or not one of ours)."""
    if not text:
        return None
    try:
        started, saga_id = orjson.loads(base64.urlsafe_b64decode(text.encode()))
        return int(started), str(saga_id)
    except (ValueError, TypeError):
        return None


class ConsoleQueries(Protocol):
    async def migrate(self) -> None: ...

    async def page(self, f: SagaFilter, *, after: Cursor | None, limit: int) -> SagaPage: ...

    async def outbox(self, saga_id: str) -> list[OutboxRow]: ...

    async def add_audit(self, record: AuditRecord) -> None: ...

    async def audit(self, target: str, *, limit: int = 100) -> list[AuditRecord]: ...


def _where(
    f: SagaFilter, after: Cursor | None, mark: Any, correlation: str
) -> tuple[str, list[Any]]:
    """The WHERE clause of a page; ``mark(n)`` is the placeholder of the n-th argument,
    ``correlation`` the backend's expression of the state's correlation id."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return str(mark(len(args)))

    if f.name:
        where.append(f"name = {arg(f.name)}")
    if f.status:
        where.append(f"status = {arg(f.status)}")
    if f.started_before is not None:
        where.append(f"started_at_ms <= {arg(to_ms(f.started_before))}")
    if f.started_after is not None:
        where.append(f"started_at_ms >= {arg(to_ms(f.started_after))}")
    if f.search:
        q = f.search.strip()
        exact = [q, *(f"{n}:{q}" for n in f.names)]
        ids = ", ".join(arg(i) for i in exact)
        low, high = arg(q), arg(q + "\U0010ffff")
        by_id = f"saga_id IN ({ids}) OR (saga_id >= {low} AND saga_id < {high})"
        where.append(f"({by_id} OR {correlation} = {arg(q)})")
    if after is not None:
        # the bare bound first, so the planner can range-scan the start-time index
        a, b, c = arg(after[0]), arg(after[0]), arg(after[1])
        where.append(f"started_at_ms <= {a} AND (started_at_ms < {b} OR saga_id > {c})")
    return (" AND ".join(where) or "1 = 1"), args


def _page_sql(where: str, limit_mark: str) -> str:
    return (
        f"SELECT saga_id, {STATE_COLUMNS} FROM saga_state WHERE {where}"
        f" ORDER BY started_at_ms DESC, saga_id LIMIT {limit_mark}"
    )


def _paged(states: list[SagaState], limit: int) -> SagaPage:
    if len(states) <= limit:
        return SagaPage(states, None)
    last = states[limit - 1]
    return SagaPage(states[:limit], (to_ms(last.started_at), last.saga_id))


def _outbox_row(row: Any) -> OutboxRow:
    headers = dict(orjson.loads(row[2])) if row[2] else {}
    kind = headers.get("ce_type", "")
    return OutboxRow(row[0], row[1], kind if isinstance(kind, str) else "", from_ms(int(row[3])))


def _audit_row(row: Any) -> AuditRecord:
    return AuditRecord(
        from_ms(int(row[0])), row[1], row[2], row[3], row[4], row[5], orjson.loads(row[6])
    )


def _audit_args(r: AuditRecord) -> tuple[Any, ...]:
    return (
        to_ms(r.at),
        r.subject,
        r.role,
        r.action,
        r.target,
        r.reason,
        orjson.dumps(r.detail).decode(),
    )


_AUDIT_COLUMNS = "at_ms, subject, role, action, target, reason, detail"


class SqliteQueries:
    def __init__(self, store: SqliteSagaStore) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.database.migrate("console", SQLITE_MIGRATIONS)

    async def page(self, f: SagaFilter, *, after: Cursor | None, limit: int) -> SagaPage:
        where, args = _where(f, after, lambda n: "?", SQLITE_CORRELATION)
        sql = _page_sql(where, "?")
        args.append(limit + 1)
        rows = await self.store.database.run(lambda c: c.execute(sql, args).fetchall())
        states = [listed_state(decode_state(self.store.states, r[0], r[1:])) for r in rows]
        return _paged(states, limit)

    async def outbox(self, saga_id: str) -> list[OutboxRow]:
        sql = (
            "SELECT id, topic, headers, created_at_ms FROM saga_outbox WHERE saga_id = ?"
            " ORDER BY seq LIMIT 200"
        )
        rows = await self.store.database.run(lambda c: c.execute(sql, (saga_id,)).fetchall())
        return [_outbox_row(_headers_json(r)) for r in rows]

    async def add_audit(self, record: AuditRecord) -> None:
        sql = f"INSERT INTO console_audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        args = _audit_args(record)
        await self.store.database.write(lambda c: c.execute(sql, args))

    async def audit(self, target: str, *, limit: int = 100) -> list[AuditRecord]:
        sql = (
            f"SELECT {_AUDIT_COLUMNS} FROM console_audit WHERE target = ? ORDER BY seq DESC LIMIT ?"
        )
        rows = await self.store.database.run(lambda c: c.execute(sql, (target, limit)).fetchall())
        return [_audit_row(r) for r in rows]


class PostgresQueries:
    def __init__(self, store: PostgresSagaStore) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.database.migrate("console", POSTGRES_MIGRATIONS)

    async def page(self, f: SagaFilter, *, after: Cursor | None, limit: int) -> SagaPage:
        where, args = _where(f, after, lambda n: f"${n}", POSTGRES_CORRELATION)
        args.append(limit + 1)
        sql = _page_sql(where, f"${len(args)}")
        async with self.store.database.connection() as conn:
            rows = await conn.fetch(sql, *args)
        states = [listed_state(decode_state(self.store.states, r[0], tuple(r)[1:])) for r in rows]
        return _paged(states, limit)

    async def outbox(self, saga_id: str) -> list[OutboxRow]:
        sql = (
            "SELECT id, topic, headers, created_at_ms FROM saga_outbox WHERE saga_id = $1"
            " ORDER BY seq LIMIT 200"
        )
        async with self.store.database.connection() as conn:
            rows = await conn.fetch(sql, saga_id)
        return [_outbox_row(_headers_json(tuple(r))) for r in rows]

    async def add_audit(self, record: AuditRecord) -> None:
        sql = f"INSERT INTO console_audit ({_AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        async with self.store.database.connection() as conn:
            await conn.execute(sql, *_audit_args(record))

    async def audit(self, target: str, *, limit: int = 100) -> list[AuditRecord]:
        sql = (
            f"SELECT {_AUDIT_COLUMNS} FROM console_audit WHERE target = $1"
            " ORDER BY seq DESC LIMIT $2"
        )
        async with self.store.database.connection() as conn:
            rows = await conn.fetch(sql, target, limit)
        return [_audit_row(tuple(r)) for r in rows]


class MemoryQueries:
    """The same over the memory store (tests, demos): filters in Python."""

    def __init__(self, store: SagaStore) -> None:
        self.store = store
        self._audit: list[AuditRecord] = []

    async def migrate(self) -> None:
        return None

    async def page(self, f: SagaFilter, *, after: Cursor | None, limit: int) -> SagaPage:
        everything = await self.store.list_sagas(SagaQuery(limit=10**9))
        kept = [s for s in everything if _matches(s, f, after)]
        kept.sort(key=lambda s: (-to_ms(s.started_at), s.saga_id))
        return _paged(kept[: limit + 1], limit)

    async def outbox(self, saga_id: str) -> list[OutboxRow]:
        return []

    async def add_audit(self, record: AuditRecord) -> None:
        self._audit.append(record)

    async def audit(self, target: str, *, limit: int = 100) -> list[AuditRecord]:
        return [r for r in reversed(self._audit) if r.target == target][:limit]


def _matches(s: SagaState, f: SagaFilter, after: Cursor | None) -> bool:
    started = to_ms(s.started_at)
    if f.name and s.name != f.name:
        return False
    if f.status and s.status.value != f.status:
        return False
    if f.started_before is not None and started > to_ms(f.started_before):
        return False
    if f.started_after is not None and started < to_ms(f.started_after):
        return False
    if f.search:
        q = f.search.strip()
        names = {f"{n}:{q}" for n in f.names}
        if not (s.saga_id.startswith(q) or s.saga_id in names or s.correlation_id == q):
            return False
    return after is None or started < after[0] or (started == after[0] and s.saga_id > after[1])


def _headers_json(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The outbox row with its headers as a JSON list of [name, text] pairs."""
    pairs = [(k, v.decode("utf-8", "replace")) for k, v in decode_headers(row[2])]
    return (row[0], row[1], orjson.dumps(pairs), row[3])


def queries_for(store: SagaStore) -> ConsoleQueries:
    """The console's queries for ``store``'s backend."""
    if isinstance(store, SqliteSagaStore):
        return SqliteQueries(store)
    if isinstance(store, PostgresSagaStore):
        return PostgresQueries(store)
    if isinstance(store, MemorySagaStore):
        return MemoryQueries(store)
    return MemoryQueries(store)
