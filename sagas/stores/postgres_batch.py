"""How writes are stored on PostgreSQL: the statements, a write's effects in bulk, and a
batch of inputs applied in memory then written in a few statements (group commit).

:class:`~sagas.stores.postgres.PostgresSagaStore` locks and loads a batch's sagas
(:func:`lock_and_load`), applies the changes in input order (:class:`Batch`), and writes
states and effects with one statement each (:func:`write_batch`, :func:`write_effects`).

Example::

    batch = Batch(await lock_and_load(conn, ids, states))
    lost = await write_batch(conn, batch)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus import StoreError
from sagas.early import EarlyInput
from sagas.effects import TaskToMark, TaskToOpen, TimerToSet
from sagas.state import SagaState
from sagas.stores.base import (
    Change,
    KeepEarly,
    Loaded,
    OutboxEntry,
    SagaWrite,
    SetAside,
    SetAsideInput,
    StoredSaga,
    UnreadableSaga,
    Unstarted,
    Write,
    to_ms,
)
from sagas.stores.early_rows import (
    DONE_PG,
    KEEP_PG,
    LOCK_PG,
    OF_SAGAS_PG,
    early_from_row,
    early_row,
)
from sagas.stores.sql import (
    STATE_COLUMNS,
    StateCache,
    decode_state,
    encode_headers,
    set_aside_row,
)
from sagas.stores.task_rows import MARK_PG, OPEN_PG, open_row

__all__ = [
    "CANCEL_TIMERS",
    "DROP_SET_ASIDE",
    "INSERT",
    "QUARANTINE",
    "SET_ASIDE_COLUMNS",
    "UPDATE",
    "Batch",
    "Effects",
    "absent",
    "lock_and_load",
    "write_batch",
    "write_effects",
]

INSERT = (
    "INSERT INTO saga_state (saga_id, name, status, revision, started_at_ms, updated_at_ms,"
    " state) VALUES ($1, $2, $3, 1, $4, $5, $6) ON CONFLICT DO NOTHING"
)
UPDATE = (
    "UPDATE saga_state SET status = $1, revision = revision + 1, updated_at_ms = $2,"
    " state = $3 WHERE saga_id = $4 AND revision = $5"
)
OUTBOX = (
    "INSERT INTO saga_outbox (id, saga_id, topic, key, value, headers, created_at_ms)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[],"
    " $6::bytea[], $7::bigint[]) ON CONFLICT DO NOTHING"
)
SET_TIMERS = (
    "INSERT INTO saga_timers (id, saga_id, due_at_ms)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
    " ON CONFLICT (id) DO UPDATE SET due_at_ms = excluded.due_at_ms, claimed_until_ms = 0"
)
CANCEL_TIMERS = "DELETE FROM saga_timers WHERE id = ANY($1::text[])"
DROP_REQUESTS = "DELETE FROM saga_requests WHERE id = ANY($1::text[])"
LOCK_AND_LOAD = (
    f"SELECT saga_id, {STATE_COLUMNS} FROM saga_state WHERE saga_id = ANY($1::text[])"
    " ORDER BY saga_id FOR UPDATE"
)
QUARANTINE = (
    "UPDATE saga_state SET status = 'needs_attention', quarantine = coalesce(quarantine, $1),"
    " revision = revision + 1 WHERE saga_id = $2 AND revision = $3"
)
RELEASE = "UPDATE saga_state SET quarantine = NULL WHERE saga_id = ANY($1::text[])"
SET_ASIDE = (
    "INSERT INTO saga_set_aside (saga_id, set_aside_at_ms, timer_id, topic, key, value,"
    " headers) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
DROP_SET_ASIDE = "DELETE FROM saga_set_aside WHERE seq = ANY($1::bigint[])"
SET_ASIDE_COLUMNS = (
    "a.seq, a.saga_id, a.set_aside_at_ms, a.timer_id, a.topic, a.key, a.value, a.headers"
)
INSERT_MANY = (
    "INSERT INTO saga_state (saga_id, name, status, revision, started_at_ms, updated_at_ms,"
    " state) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],"
    " $5::bigint[], $6::bigint[], $7::text[]) ON CONFLICT DO NOTHING RETURNING saga_id"
)
UPDATE_MANY = (
    "UPDATE saga_state AS s SET status = u.status, revision = u.revision,"
    " updated_at_ms = u.updated_at_ms, state = u.state FROM unnest($1::text[], $2::text[],"
    " $3::bigint[], $4::bigint[], $5::text[], $6::bigint[])"
    " AS u(saga_id, status, revision, updated_at_ms, state, loaded)"
    " WHERE s.saga_id = u.saga_id AND s.revision = u.loaded"
)


@dataclass(frozen=True, slots=True)
class Effects:
    """What the writes of a batch add and remove beside the states, in one piece each."""

    outbox: tuple[OutboxEntry, ...]
    timers_to_set: tuple[TimerToSet, ...]
    timers_to_cancel: tuple[str, ...]
    requests_done: tuple[str, ...]
    #: Inputs set aside for quarantined sagas; sagas released; set-aside inputs applied.
    set_aside: tuple[SetAsideInput, ...] = ()
    released: tuple[str, ...] = ()
    set_aside_done: tuple[int, ...] = ()
    #: Task rows to write, and open ones whose status changes.
    tasks_to_open: tuple[TaskToOpen, ...] = ()
    tasks_to_mark: tuple[TaskToMark, ...] = ()
    #: Inputs kept for sagas not started; (saga id, message id) of those a start applied.
    early_kept: tuple[EarlyInput, ...] = ()
    early_done: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, write: Write) -> Effects:
        """The effects of one write."""
        if isinstance(write, KeepEarly):
            return cls((), (), (), (), early_kept=(write.input,))
        done = () if write.request_done is None else (write.request_done,)
        if isinstance(write, SetAside):
            return cls((), (), write.timers_to_cancel, done, write.inputs)
        released = (write.state.saga_id,) if write.release else ()
        early_done = tuple((write.state.saga_id, m) for m in write.early_done)
        return cls(write.outbox, write.timers_to_set, write.timers_to_cancel, done, (),
                   released, write.set_aside_done, write.tasks_to_open,
                   write.tasks_to_mark, (), early_done)  # fmt: skip


class Batch:
    """A batch's changes applied in memory, in input order, each on the state before it."""

    def __init__(self, loaded: dict[str, Loaded]) -> None:
        self.loaded = loaded
        self.current = dict(loaded)
        #: Inputs kept for sagas not started (a start later in the batch applies them).
        self.kept: list[EarlyInput] = []
        #: saga id -> (its last state, its revision after the batch)
        self.final: dict[str, tuple[SagaState, int]] = {}
        self.writes: list[SagaWrite] = []
        #: Inputs set aside for quarantined sagas (their state rows are not written).
        self.aside: list[SetAside] = []

    def apply(self, saga_id: str, change: Change) -> Write | None:
        write = change(self.current[saga_id])
        if write is None:
            return None
        if isinstance(write, SetAside):
            self.aside.append(write)
            return write
        if isinstance(write, KeepEarly):  # the saga is absent: its row lock is ours
            self.kept.append(write.input)
            before = self.current[saga_id]
            early = before.early if isinstance(before, Unstarted) else ()
            self.current[saga_id] = Unstarted(saga_id, (*early, write.input))
            return write
        revision = write.expected_revision + 1
        self.current[saga_id] = StoredSaga(write.state, revision)
        self.final[saga_id] = (write.state, revision)
        self.writes.append(write)
        return write

    def loaded_revision(self, saga_id: str) -> int:
        stored = self.loaded[saga_id]
        return stored.revision if isinstance(stored, StoredSaga | UnreadableSaga) else 0

    def early(self, lost: set[str]) -> tuple[list[EarlyInput], list[tuple[str, str]]]:
        """The inputs to keep and those to delete, net: one kept and applied within the
        batch is neither inserted nor deleted."""
        done = [(w.state.saga_id, m) for w in self.writes for m in w.early_done]
        done = [d for d in done if d[0] not in lost]
        applied = set(done)
        keep = [e for e in self.kept if e.saga_id not in lost]
        kept = {(e.saga_id, e.message_id) for e in keep}
        keep = [e for e in keep if (e.saga_id, e.message_id) not in applied]
        return keep, [d for d in done if d not in kept]

    def effects(self, lost: set[str]) -> Effects:
        """The effects of every write but those of ``lost`` sagas, net of one another: a
        timer set and cancelled within the batch is neither set nor deleted."""
        kept = [w for w in self.writes if w.state.saga_id not in lost]
        timers: dict[str, TimerToSet] = {}
        cancel: list[str] = []
        for w in kept:
            for timer_id in w.timers_to_cancel:
                if timers.pop(timer_id, None) is None:
                    cancel.append(timer_id)
            for t in w.timers_to_set:
                timers[t.id] = t
        cancel += [i for a in self.aside for i in a.timers_to_cancel]
        early_kept, early_done = self.early(lost)
        done = [w.request_done for w in kept if w.request_done is not None]
        done += [a.request_done for a in self.aside if a.request_done is not None]
        return Effects(
            tuple(e for w in kept for e in w.outbox),
            tuple(timers.values()),
            tuple(cancel),
            tuple(done),
            tuple(i for a in self.aside for i in a.inputs),
            tuple(w.state.saga_id for w in kept if w.release),
            tuple(seq for w in kept for seq in w.set_aside_done),
            tuple(t for w in kept for t in w.tasks_to_open),
            tuple(m for w in kept for m in w.tasks_to_mark),
            tuple(early_kept),
            tuple(early_done),
        )


def absent(stored: Loaded) -> bool:
    """Not stored (yet): nothing, or only inputs kept for it."""
    return stored is None or isinstance(stored, Unstarted)


async def lock_and_load(conn: Any, saga_ids: list[str], states: StateCache) -> dict[str, Loaded]:
    """Lock the sagas of ``saga_ids`` (sorted) and load them; an absent one with the inputs
    kept for it. The per-id lock (``LOCK_PG``) comes first: a saga absent now stays absent
    until the commit, and no other replica keeps an input for it meanwhile."""
    # Sorted ids and ORDER BY: replicas lock rows in one order, so they cannot deadlock.
    await conn.execute(LOCK_PG, saga_ids)
    rows = await conn.fetch(LOCK_AND_LOAD, saga_ids)
    loaded: dict[str, Loaded] = dict.fromkeys(saga_ids)
    for row in rows:
        loaded[row[0]] = decode_state(states, row[0], tuple(row)[1:])
    missing = [i for i in saga_ids if loaded[i] is None]
    if missing:
        kept: dict[str, list[EarlyInput]] = {}
        for r in await conn.fetch(OF_SAGAS_PG, missing):
            kept.setdefault(r[0], []).append(early_from_row(tuple(r)))
        for saga_id, early in kept.items():
            loaded[saga_id] = Unstarted(saga_id, tuple(early))
    return loaded


async def write_effects(conn: Any, write: Effects) -> None:
    """Store a write's (or a batch's) effects beside its state, in ``conn``'s transaction."""
    if write.outbox:
        columns: list[list[Any]] = [[] for _ in range(7)]
        for e in write.outbox:
            row = (e.id, e.saga_id, e.topic, e.key, e.value, encode_headers(e.headers),
                   to_ms(e.created_at))  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        await conn.execute(OUTBOX, *columns)
    if write.timers_to_cancel:
        await conn.execute(CANCEL_TIMERS, list(write.timers_to_cancel))
    if write.timers_to_set:
        timers = write.timers_to_set
        await conn.execute(
            SET_TIMERS, [t.id for t in timers], [t.saga_id for t in timers],
            [to_ms(t.at) for t in timers],
        )  # fmt: skip
    if write.requests_done:
        await conn.execute(DROP_REQUESTS, list(write.requests_done))
    if write.set_aside:
        await conn.executemany(SET_ASIDE, [set_aside_row(i) for i in write.set_aside])
    if write.released:
        await conn.execute(RELEASE, list(write.released))
    if write.set_aside_done:
        await conn.execute(DROP_SET_ASIDE, list(write.set_aside_done))
    if write.tasks_to_open:
        await conn.executemany(OPEN_PG, [open_row(t) for t in write.tasks_to_open])
    if write.tasks_to_mark:
        await conn.executemany(MARK_PG, [(m.status, m.id) for m in write.tasks_to_mark])
    if write.early_kept:
        await conn.executemany(KEEP_PG, [early_row(e) for e in write.early_kept])
    if write.early_done:
        done = write.early_done
        await conn.execute(DONE_PG, [d[0] for d in done], [d[1] for d in done])


async def write_batch(conn: Any, batch: Batch) -> set[str]:
    """Store the batch's states and effects; the new sagas another replica started first."""
    new = sorted(i for i in batch.final if absent(batch.loaded[i]))
    old = [i for i in batch.final if not absent(batch.loaded[i])]
    lost: set[str] = set()
    if new:
        rows = [batch.final[i] for i in new]
        inserted = await conn.fetch(
            INSERT_MANY, new, [s.name for s, _ in rows], [s.status.value for s, _ in rows],
            [r for _, r in rows], [to_ms(s.started_at) for s, _ in rows],
            [to_ms(s.updated_at) for s, _ in rows], [s.to_json() for s, _ in rows],
        )  # fmt: skip
        lost = set(new) - {r[0] for r in inserted}
    if old:
        rows = [batch.final[i] for i in old]
        status = await conn.execute(
            UPDATE_MANY, old, [s.status.value for s, _ in rows], [r for _, r in rows],
            [to_ms(s.updated_at) for s, _ in rows], [s.to_json() for s, _ in rows],
            [batch.loaded_revision(i) for i in old],
        )  # fmt: skip
        if status != f"UPDATE {len(old)}":  # the rows are locked: only a bug gets here
            raise StoreError(f"saga store: {status} of {len(old)} locked saga rows")
    quarantined = {a.saga_id: a for a in batch.aside}  # once a saga: its row is locked
    for a in quarantined.values():
        await conn.execute(QUARANTINE, a.reason, a.saga_id, batch.loaded_revision(a.saga_id))
    await write_effects(conn, batch.effects(lost))
    return lost
