"""The in-memory saga store: for tests and the test kit; one process, gone on exit.

States are kept as their JSON text, as the SQL stores keep them, so a caller can never
change a stored state by mutating an object it loaded, and the JSON round trip is
exercised in every test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import orjson

from sagas.early import EarlyInput
from sagas.state import TERMINAL, SagaState, SagaStatus
from sagas.stores.base import (
    ACTIVE,
    Change,
    ControlRequest,
    DueTimer,
    KeepEarly,
    Loaded,
    OutboxEntry,
    RevisionConflictError,
    SagaQuery,
    SagaWrite,
    SetAside,
    SetAsideInput,
    StoredSaga,
    StoreGauges,
    UnreadableSaga,
    UnreadableStateError,
    Unstarted,
    Write,
    listed_state,
    loaded,
    parse_error,
    update_by_revision,
)
from sagas.stores.task_rows import OPEN, TaskQuery, TaskRow, opened_task

__all__ = ["MemorySagaStore"]


@dataclass
class _Row:
    json: str
    revision: int
    started_at: datetime
    name: str
    status: str
    updated_at: datetime
    quarantine: str | None = None


class MemorySagaStore:
    """Saga state, outbox, timers and requests in dicts.

    Example::

        store = MemorySagaStore()
        await store.save(SagaWrite(state, expected_revision=0))
    """

    kind = "memory"

    def __init__(self) -> None:
        self._sagas: dict[str, _Row] = {}
        #: id -> (entry, claimed_until); dicts keep insertion order = outbox order.
        self._outbox: dict[str, tuple[OutboxEntry, datetime | None]] = {}
        self._timers: dict[str, tuple[DueTimer, datetime | None]] = {}
        self._requests: dict[str, ControlRequest] = {}
        self._set_aside: list[SetAsideInput] = []
        self._seq = 0
        self._tasks: dict[str, TaskRow] = {}
        #: saga id -> inputs kept for it before it existed, in arrival order.
        self._early: dict[str, list[EarlyInput]] = {}
        #: (saga id, message id) -> its place in the arrival order of every kept input.
        self._early_seq: dict[tuple[str, str], int] = {}
        self._early_count = itertools.count()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> MemorySagaStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def load(self, saga_id: str) -> StoredSaga | None:
        row = self._sagas.get(saga_id)
        return None if row is None else loaded(_decode(saga_id, row))

    async def read(self, saga_id: str) -> StoredSaga | UnreadableSaga | None:
        # Through load(): a test store that overrides load (a racing replica) sees updates.
        try:
            return await self.load(saga_id)
        except UnreadableStateError as exc:
            return exc.saga

    async def save(self, write: Write) -> int:
        # No await in here: the whole write happens in one step of the event loop, which
        # is what a transaction is for a single-threaded store.
        saga_id = write.state.saga_id if isinstance(write, SagaWrite) else write.saga_id
        row = self._sagas.get(saga_id)
        if isinstance(write, KeepEarly):
            return self._keep(row, write)
        current = 0 if row is None else row.revision
        if current != write.expected_revision:
            raise RevisionConflictError(
                f"saga {saga_id} is at revision {current}, not {write.expected_revision}: "
                "load it again and decide again"
            )
        revision = current + 1
        if isinstance(write, SetAside):
            assert row is not None  # revision 0 is never a quarantined saga's
            self._quarantine(row, write)
            return revision
        others = [e for e in self._early.get(saga_id, []) if e.message_id not in write.early_done]
        if row is None and others:  # kept since the start loaded: start again with them
            raise RevisionConflictError(f"saga {saga_id}: inputs were kept for it meanwhile")
        s = write.state
        quarantine = None if row is None or write.release else row.quarantine
        self._sagas[saga_id] = _Row(
            s.to_json(), revision, s.started_at, s.name, s.status.value, s.updated_at,
            quarantine,
        )  # fmt: skip
        if write.early_done:
            done_ids = set(write.early_done)
            kept = [e for e in self._early.pop(saga_id, []) if e.message_id not in done_ids]
            if kept:
                self._early[saga_id] = kept
            for message_id in done_ids:
                self._early_seq.pop((saga_id, message_id), None)
        if write.set_aside_done:
            done = set(write.set_aside_done)
            self._set_aside = [i for i in self._set_aside if i.seq not in done]
        for entry in write.outbox:
            self._outbox.setdefault(entry.id, (entry, None))
        for timer_id in write.timers_to_cancel:
            self._timers.pop(timer_id, None)
        for t in write.timers_to_set:
            self._timers[t.id] = (DueTimer(t.id, t.saga_id, t.at), None)
        if write.request_done is not None:
            self._requests.pop(write.request_done, None)
        for opened in write.tasks_to_open:
            self._tasks.setdefault(opened.id, opened_task(opened))
        for m in write.tasks_to_mark:
            task = self._tasks.get(m.id)
            if task is not None and task.status in OPEN:
                self._tasks[m.id] = replace(task, status=m.status)
        return revision

    def _keep(self, row: _Row | None, write: KeepEarly) -> int:
        if row is not None:
            raise RevisionConflictError(f"saga {write.saga_id} exists: decide on it")
        kept = self._early.setdefault(write.saga_id, [])
        if all(e.message_id != write.input.message_id for e in kept):
            kept.append(write.input)
            self._early_seq[write.saga_id, write.input.message_id] = next(self._early_count)
        return 0

    async def _loaded(self, saga_id: str) -> Loaded:
        """:meth:`read`, or the inputs kept for a saga not there (what a Change gets)."""
        stored = await self.read(saga_id)
        early = self._early.get(saga_id)
        if stored is None and early:
            return Unstarted(saga_id, tuple(early))
        return stored

    async def early_inputs(
        self, saga_id: str | None = None, *, limit: int = 100
    ) -> list[EarlyInput]:
        if saga_id is not None:
            return list(self._early.get(saga_id, []))[:limit]
        every = sorted((e for kept in self._early.values() for e in kept),
                       key=lambda e: self._early_seq[e.saga_id, e.message_id])  # fmt: skip
        return every[:limit]

    async def purge_early(self, older_than: datetime) -> int:
        gone = 0
        for saga_id, kept in list(self._early.items()):
            fresh = [e for e in kept if e.received_at >= older_than]
            gone += len(kept) - len(fresh)
            for e in kept:
                if e.received_at < older_than:
                    self._early_seq.pop((saga_id, e.message_id), None)
            if fresh:
                self._early[saga_id] = fresh
            else:
                del self._early[saga_id]
        return gone

    def _quarantine(self, row: _Row, write: SetAside) -> None:
        row.revision += 1
        row.status = SagaStatus.NEEDS_ATTENTION.value
        row.quarantine = row.quarantine or write.reason
        for i in write.inputs:
            self._seq += 1
            self._set_aside.append(replace(i, seq=self._seq))
        for timer_id in write.timers_to_cancel:
            self._timers.pop(timer_id, None)
        if write.request_done is not None:
            self._requests.pop(write.request_done, None)

    async def update(
        self, saga_id: str, change: Change, *, on_conflict: Callable[[str], None] | None = None
    ) -> Write | None:
        return await update_by_revision(
            saga_id, change, load=self._loaded, save=self.save, on_conflict=on_conflict
        )

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[Write | None]:
        return [await self.update(i, change, on_conflict=on_conflict) for i, change in items]

    async def claim_outbox(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxEntry]:
        out: list[OutboxEntry] = []
        for entry, held in list(self._outbox.values()):
            if len(out) >= limit:
                break
            if held is None or held <= now:
                self._outbox[entry.id] = (entry, now + lease)
                out.append(entry)
        return out

    async def mark_sent(self, ids: Sequence[str]) -> None:
        for i in ids:
            self._outbox.pop(i, None)

    async def claim_due_timers(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[DueTimer]:
        due = sorted(
            (
                t
                for t, held in self._timers.values()
                if t.at <= now and (held is None or held <= now)
            ),
            key=lambda t: (t.at, t.id),
        )[:limit]
        for t in due:
            self._timers[t.id] = (t, now + lease)
        return due

    async def cancel_timers(self, ids: Sequence[str]) -> None:
        for i in ids:
            self._timers.pop(i, None)

    async def request(self, request: ControlRequest) -> None:
        self._requests.setdefault(request.id, request)

    async def pending_requests(self, *, limit: int) -> list[ControlRequest]:
        return list(self._requests.values())[:limit]

    async def drop_request(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    async def list_sagas(self, query: SagaQuery) -> list[SagaState]:
        rows = sorted(self._sagas.items(), key=lambda r: r[1].started_at, reverse=True)
        out: list[SagaState] = []
        for saga_id, row in rows:
            if query.since is not None and row.started_at < query.since:
                continue
            state = listed_state(_decode(saga_id, row))
            if query.statuses and state.status not in query.statuses:
                continue
            if query.name is not None and state.name != query.name:
                continue
            out.append(state)
            if len(out) >= query.limit:
                break
        return out

    async def set_aside_inputs(
        self, *, limit: int, saga_id: str | None = None
    ) -> list[SetAsideInput]:
        def wanted(i: SetAsideInput) -> bool:
            if saga_id is not None:
                return i.saga_id == saga_id
            row = self._sagas.get(i.saga_id)
            return row is None or row.quarantine is None  # released (or gone)

        return [i for i in self._set_aside if wanted(i)][:limit]

    async def drop_set_aside(self, seqs: Sequence[int]) -> None:
        done = set(seqs)
        self._set_aside = [i for i in self._set_aside if i.seq not in done]

    async def purge_finished(self, older_than: datetime) -> int:
        finished = {s.value for s in TERMINAL}
        gone = [
            saga_id
            for saga_id, row in self._sagas.items()
            if row.status in finished and row.updated_at < older_than
        ]
        for saga_id in gone:
            del self._sagas[saga_id]
        self._tasks = {k: t for k, t in self._tasks.items() if t.saga_id in self._sagas}
        return len(gone)

    async def list_tasks(self, query: TaskQuery) -> list[TaskRow]:
        rows = sorted(self._tasks.values(), key=lambda t: (t.created_at, t.id))
        if query.after is not None:
            after = self._tasks.get(query.after)
            if after is None:
                return []
            rows = [t for t in rows if (t.created_at, t.id) > (after.created_at, after.id)]
        return [
            t
            for t in rows
            if (not query.statuses or t.status in query.statuses)
            and (query.assignee is None or t.assignee == query.assignee)
        ][: query.limit]

    async def get_task(self, task_id: str) -> TaskRow | None:
        return self._tasks.get(task_id)

    async def complete_task(
        self, task_id: str, *, data: dict[str, Any], actor: str, at: datetime,
        request: ControlRequest,
    ) -> bool:  # fmt: skip
        row = self._tasks.get(task_id)
        if row is None or row.status not in OPEN:
            return False
        data = orjson.loads(orjson.dumps(data))  # stored as JSON, as the SQL stores do
        self._tasks[task_id] = replace(
            row, status="completed", completed_at=at, completed_by=actor, data=data
        )
        self._requests.setdefault(request.id, request)
        return True

    async def counts(self) -> dict[str, int]:
        return {
            "sagas": len(self._sagas),
            "outbox": len(self._outbox),
            "timers": len(self._timers),
            "requests": len(self._requests),
        }

    async def gauges(self) -> StoreGauges:
        active: dict[str, dict[str, int]] = {}
        oldest: dict[str, datetime] = {}
        statuses = {s.value for s in ACTIVE}
        for row in self._sagas.values():
            if row.status in statuses:
                by_status = active.setdefault(row.name, {})
                by_status[row.status] = by_status.get(row.status, 0) + 1
                if row.name not in oldest or row.started_at < oldest[row.name]:
                    oldest[row.name] = row.started_at
        first = next(iter(self._outbox.values()), None)
        return StoreGauges(
            len(self._outbox), None if first is None else first[0].created_at, active, oldest
        )


def _decode(saga_id: str, row: _Row) -> StoredSaga | UnreadableSaga:
    try:
        state = SagaState.from_json(row.json)
    except ValueError as exc:  # pydantic's ValidationError: a row corrupted by hand
        return UnreadableSaga(saga_id, row.revision, row.name, row.status, row.started_at,
                              row.updated_at, row.json, parse_error(exc), row.quarantine)  # fmt: skip
    return StoredSaga(state, row.revision, row.quarantine)
