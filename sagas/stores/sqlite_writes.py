"""How a write is stored on SQLite: the statements, and the functions that run them inside
the store's transaction (on the database's thread).

:class:`~sagas.stores.sqlite.SqliteSagaStore` calls :func:`update_in` for each input (load,
change, store: one call, no other writer in between) and :func:`store_write` for a save.

Example::

    write = await database.write(lambda c: update_in(c, saga_id, change, states))
"""

from __future__ import annotations

import sqlite3

from sagas.stores.base import Change, SetAside, Write, to_ms
from sagas.stores.early_rows import sqlite_early_done, sqlite_keep, sqlite_take_early
from sagas.stores.sql import (
    STATE_COLUMNS,
    StateCache,
    decode_state,
    encode_headers,
    revision_conflict,
    set_aside_row,
)
from sagas.stores.task_rows import sqlite_write_tasks
from sagas.stores.writes import KeepEarly, Unstarted

__all__ = [
    "CANCEL_TIMER",
    "DROP_REQUEST",
    "DROP_SET_ASIDE",
    "LOAD",
    "SET_ASIDE_COLUMNS",
    "store_write",
    "update_in",
]

LOAD = f"SELECT {STATE_COLUMNS} FROM saga_state WHERE saga_id = ?"
_INSERT = (
    "INSERT INTO saga_state (saga_id, name, status, revision, started_at_ms, updated_at_ms,"
    " state) VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_UPDATE = (
    "UPDATE saga_state SET status = ?, revision = revision + 1, updated_at_ms = ?, state = ?"
    " WHERE saga_id = ? AND revision = ?"
)
_OUTBOX = (
    "INSERT INTO saga_outbox (id, saga_id, topic, key, value, headers, created_at_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_SET_TIMER = (
    "INSERT INTO saga_timers (id, saga_id, due_at_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET due_at_ms = excluded.due_at_ms, claimed_until_ms = 0"
)
CANCEL_TIMER = "DELETE FROM saga_timers WHERE id = ?"
_QUARANTINE = (
    "UPDATE saga_state SET status = 'needs_attention', quarantine = coalesce(quarantine, ?),"
    " revision = revision + 1 WHERE saga_id = ? AND revision = ?"
)
_RELEASE = "UPDATE saga_state SET quarantine = NULL WHERE saga_id = ?"
_SET_ASIDE = (
    "INSERT INTO saga_set_aside (saga_id, set_aside_at_ms, timer_id, topic, key, value,"
    " headers) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
DROP_SET_ASIDE = "DELETE FROM saga_set_aside WHERE seq = ?"
SET_ASIDE_COLUMNS = (
    "a.seq, a.saga_id, a.set_aside_at_ms, a.timer_id, a.topic, a.key, a.value, a.headers"
)
DROP_REQUEST = "DELETE FROM saga_requests WHERE id = ?"


def update_in(
    c: sqlite3.Connection, saga_id: str, change: Change, states: StateCache
) -> Write | None:
    row = c.execute(LOAD, (saga_id,)).fetchone()
    if row is None:  # not there (yet): with the inputs kept for it, if any
        early = sqlite_take_early(c, saga_id)
        write = change(Unstarted(saga_id, early) if early else None)
    else:
        write = change(decode_state(states, saga_id, row))
    if write is not None and not store_write(c, write):
        raise revision_conflict(write)  # change() named a revision it was not given
    return write


def store_write(c: sqlite3.Connection, write: Write) -> bool:
    """Write state, outbox and timers; False (nothing written) on a revision mismatch."""
    if isinstance(write, SetAside):
        return _set_aside(c, write)
    if isinstance(write, KeepEarly):
        return sqlite_keep(c, write.input)
    s = write.state
    state_json = s.to_json()
    if write.expected_revision == 0:
        args = (s.saga_id, s.name, s.status.value, to_ms(s.started_at), to_ms(s.updated_at),
                state_json)  # fmt: skip
        ok = c.execute(_INSERT, args).rowcount == 1
    else:
        args2 = (s.status.value, to_ms(s.updated_at), state_json, s.saga_id,
                 write.expected_revision)  # fmt: skip
        ok = c.execute(_UPDATE, args2).rowcount == 1
    if not ok:
        return False
    # Each statement only when it has rows: an empty executemany still costs a call.
    if write.outbox:
        c.executemany(
            _OUTBOX,
            [(e.id, e.saga_id, e.topic, e.key, e.value, encode_headers(e.headers),
              to_ms(e.created_at)) for e in write.outbox],
        )  # fmt: skip
    if write.timers_to_cancel:
        c.executemany(CANCEL_TIMER, [(i,) for i in write.timers_to_cancel])
    if write.timers_to_set:
        c.executemany(_SET_TIMER, [(t.id, t.saga_id, to_ms(t.at)) for t in write.timers_to_set])
    if write.request_done is not None:
        c.execute(DROP_REQUEST, (write.request_done,))
    if write.release:
        c.execute(_RELEASE, (s.saga_id,))
    if write.set_aside_done:
        c.executemany(DROP_SET_ASIDE, [(i,) for i in write.set_aside_done])
    if write.tasks_to_open or write.tasks_to_mark:
        sqlite_write_tasks(c, write.tasks_to_open, write.tasks_to_mark)
    if write.early_done:
        sqlite_early_done(c, s.saga_id, write.early_done)
    return True


def _set_aside(c: sqlite3.Connection, write: SetAside) -> bool:
    """Quarantine the saga (its state column untouched) and keep its inputs aside."""
    args = (write.reason, write.saga_id, write.expected_revision)
    if c.execute(_QUARANTINE, args).rowcount != 1:
        return False
    if write.inputs:
        c.executemany(_SET_ASIDE, [set_aside_row(i) for i in write.inputs])
    if write.timers_to_cancel:
        c.executemany(CANCEL_TIMER, [(i,) for i in write.timers_to_cancel])
    if write.request_done is not None:
        c.execute(DROP_REQUEST, (write.request_done,))
    return True
