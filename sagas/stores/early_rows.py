"""Early inputs in the saga store: events kept for a saga that did not exist yet.

A row per (saga id, message id) - so a duplicate or a replay is kept once - with the event's
type, data and arrival time (:class:`~sagas.early.EarlyInput`). A :class:`KeepEarly` write
adds one, if the saga still does not exist; a start reads them (its :data:`Change` gets an
:class:`Unstarted`) and its write deletes those it applied (``SagaWrite.early_done``), in
its transaction, so a crash leaves them either kept or applied. The purge deletes those
whose saga never started once they are older than the retention. This module holds the
table, the SQL both SQL stores share, and the row codec.

Example::

    kept = await store.early_inputs("onboarding:e-9")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from sagas.early import EarlyInput
from sagas.stores.rows import from_ms, to_ms

__all__ = [
    "DONE_PG",
    "EARLY_COLUMNS",
    "EARLY_TABLE",
    "EXISTS_PG",
    "KEEP_PG",
    "LIST_ONE_PG",
    "LIST_PG",
    "LOCK_PG",
    "OF_SAGAS_PG",
    "OTHERS_PG",
    "PURGE_PG",
    "early_from_row",
    "early_row",
    "sqlite_early",
    "sqlite_early_done",
    "sqlite_keep",
    "sqlite_may_start",
    "sqlite_purge_early",
    "sqlite_take_early",
]

EARLY_TABLE = (
    "CREATE TABLE saga_early (seq {serial} PRIMARY KEY, saga_id TEXT NOT NULL,"
    " message_id TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, causation_id TEXT,"
    " received_at_ms {int} NOT NULL, UNIQUE (saga_id, message_id))",
    "CREATE INDEX saga_early_received ON saga_early (received_at_ms)",
)
EARLY_COLUMNS = "saga_id, message_id, type, data, causation_id, received_at_ms"


def early_row(e: EarlyInput) -> tuple[Any, ...]:
    """The columns of ``e`` in :data:`EARLY_COLUMNS` order."""
    return (e.saga_id, e.message_id, e.type, orjson.dumps(e.data).decode(), e.causation_id,
            to_ms(e.received_at))  # fmt: skip


def early_from_row(row: Sequence[Any]) -> EarlyInput:
    """A row of ``SELECT {EARLY_COLUMNS}`` as an :class:`EarlyInput`."""
    saga_id, message_id, type_, data, causation_id, at_ms = row
    return EarlyInput(
        saga_id, type_, message_id, orjson.loads(data), from_ms(int(at_ms)), causation_id
    )


# -- PostgreSQL ---------------------------------------------------------------------------

#: A transaction lock per saga id, taken in the given order (sorted by the caller) by every
#: transaction that starts a saga or keeps an input for one: a keep and a start of the same
#: saga take turns, so no input is kept for a saga started meanwhile. (The two-key form, so
#: it never meets the migrations' one-key advisory lock: the key spaces do not overlap.)
LOCK_PG = (
    "SELECT pg_advisory_xact_lock(1396787009, hashtext(x))"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n"
)
KEEP_PG = (
    f"INSERT INTO saga_early ({EARLY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT DO NOTHING"
)
OF_SAGAS_PG = f"SELECT {EARLY_COLUMNS} FROM saga_early WHERE saga_id = ANY($1::text[]) ORDER BY seq"
DONE_PG = (
    "DELETE FROM saga_early e USING unnest($1::text[], $2::text[]) AS d(saga_id, message_id)"
    " WHERE e.saga_id = d.saga_id AND e.message_id = d.message_id"
)
#: Inputs kept for a saga beyond those a start applied (a keep that came in between).
OTHERS_PG = (
    "SELECT count(*) FROM saga_early WHERE saga_id = $1 AND NOT (message_id = ANY($2::text[]))"
)
EXISTS_PG = "SELECT 1 FROM saga_state WHERE saga_id = $1"
LIST_PG = f"SELECT {EARLY_COLUMNS} FROM saga_early ORDER BY seq LIMIT $1"
LIST_ONE_PG = f"SELECT {EARLY_COLUMNS} FROM saga_early WHERE saga_id = $1 ORDER BY seq LIMIT $2"
PURGE_PG = "DELETE FROM saga_early WHERE received_at_ms < $1"


# -- SQLite ---------------------------------------------------------------------------------

_KEEP = f"INSERT INTO saga_early ({EARLY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
_OF_SAGA = f"SELECT {EARLY_COLUMNS} FROM saga_early WHERE saga_id = ? ORDER BY seq"
_ALL = f"SELECT {EARLY_COLUMNS} FROM saga_early ORDER BY seq LIMIT ?"
_DONE = "DELETE FROM saga_early WHERE saga_id = ? AND message_id = ?"
_PURGE = "DELETE FROM saga_early WHERE received_at_ms < ?"
_EXISTS = "SELECT 1 FROM saga_state WHERE saga_id = ?"


def sqlite_take_early(c: Any, saga_id: str) -> tuple[EarlyInput, ...]:
    """The inputs kept for ``saga_id``, in arrival order (inside the caller's transaction)."""
    return tuple(early_from_row(r) for r in c.execute(_OF_SAGA, (saga_id,)).fetchall())


def sqlite_keep(c: Any, e: EarlyInput) -> bool:
    """Keep ``e`` unless its saga exists (False: nothing written; decide on the saga)."""
    if c.execute(_EXISTS, (e.saga_id,)).fetchone() is not None:
        return False
    c.execute(_KEEP, early_row(e))
    return True


def sqlite_early_done(c: Any, saga_id: str, message_ids: Sequence[str]) -> None:
    """Delete the inputs a start applied."""
    c.executemany(_DONE, [(saga_id, m) for m in message_ids])


def sqlite_may_start(c: Any, saga_id: str, applied: Sequence[str]) -> bool:
    """Whether a new saga's start applied every input kept for it (else decide again)."""
    kept = {r[1] for r in c.execute(_OF_SAGA, (saga_id,)).fetchall()}
    return kept <= set(applied)


def sqlite_early(c: Any, saga_id: str | None, limit: int) -> list[EarlyInput]:
    rows = (
        c.execute(_ALL, (limit,)).fetchall()
        if saga_id is None
        else c.execute(_OF_SAGA, (saga_id,)).fetchall()[:limit]
    )
    return [early_from_row(r) for r in rows]


def sqlite_purge_early(c: Any, older_than_ms: int) -> int:
    return int(c.execute(_PURGE, (older_than_ms,)).rowcount)
