"""The SagaStore protocol: saga state, outbox, timers and operator requests in one database.

One write - :meth:`SagaStore.save` - stores a saga's new state, the commands to publish
(outbox rows) and the timers to set or cancel in ONE transaction, guarded by the state's
``revision`` (optimistic concurrency): the write succeeds only if nobody saved the saga
since it was loaded, otherwise :class:`RevisionConflictError` and the coordinator loads and
decides again. The outbox relay claims rows, publishes them and deletes them; the timer
loop claims due timers. Claims are leases (``claimed_until``): a replica that crashed
mid-way leaves rows that another claims again once the lease ran out.

Three backends keep the same semantics, proven by one contract suite
(``tests/contract/test_saga_store.py``): :class:`~sagas.stores.memory.MemorySagaStore`
(tests, one process), :class:`~sagas.stores.sqlite.SqliteSagaStore` (the embedded default,
one file) and :class:`~sagas.stores.postgres.PostgresSagaStore` (production, several
coordinator replicas; ``FOR UPDATE SKIP LOCKED`` claims).

Example::

    async with SqliteSagaStore("sagas.db") as store:
        stored = await store.load("onboarding:e-1")
        await store.save(SagaWrite(new_state, expected_revision=stored.revision, outbox=rows))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from bus import OutgoingRecord, StoreError
from sagas.effects import TimerToSet
from sagas.state import SagaState, SagaStatus

__all__ = [
    "ACTIVE",
    "COMPONENT",
    "Change",
    "ControlAction",
    "ControlRequest",
    "DueTimer",
    "OutboxEntry",
    "RevisionConflictError",
    "SagaQuery",
    "SagaStore",
    "SagaWrite",
    "StoreGauges",
    "StoredSaga",
    "from_ms",
    "to_ms",
    "update_by_revision",
]

#: The component name of the saga schema in ``schema_version``.
COMPONENT = "sagas.store"

ControlAction = Literal["cancel", "retry"]


class RevisionConflictError(StoreError):
    """Someone saved the saga since it was loaded: load it again and decide again."""

    retryable = True


@dataclass(frozen=True, slots=True)
class StoredSaga:
    """A saga's state as stored, with the revision a write must name to replace it."""

    state: SagaState
    #: 1 for the first write, +1 per write.
    revision: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One command record waiting to be published (CloudEvents id = ``id``)."""

    #: The command's CloudEvents id (:func:`sagas.effects.command_id`): stable across
    #: re-publishing, so handlers' dedup drops a copy.
    id: str
    saga_id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    created_at: datetime

    @property
    def record(self) -> OutgoingRecord:
        """The record to send, exactly as stored."""
        return OutgoingRecord(self.topic, self.key, self.value, self.headers)


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer whose time came: fire ``TimerFired(id)`` for ``saga_id``."""

    id: str
    saga_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """An operator's request (``bus sagas cancel/retry``) the coordinator carries out."""

    id: str
    saga_id: str
    action: ControlAction
    reason: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class SagaWrite:
    """Everything one transition stores, atomically."""

    state: SagaState
    #: The revision loaded (0: the saga is new and must not exist yet).
    expected_revision: int
    outbox: tuple[OutboxEntry, ...] = ()
    timers_to_set: tuple[TimerToSet, ...] = ()
    #: Timer ids to delete (no longer armed, or just fired).
    timers_to_cancel: tuple[str, ...] = ()
    #: The control request this write carries out (deleted with it).
    request_done: str | None = None


@dataclass(frozen=True, slots=True)
class SagaQuery:
    """Which sagas :meth:`SagaStore.list_sagas` returns (newest first)."""

    #: Only these statuses (empty: all).
    statuses: tuple[SagaStatus, ...] = ()
    #: Only sagas of this definition name.
    name: str | None = None
    #: Only sagas started at or after this time.
    since: datetime | None = None
    limit: int = 100


#: Statuses of sagas that are not finished (the ``bus_sagas_active`` gauge counts them).
ACTIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.NEEDS_ATTENTION)


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """What the store holds now, for the coordinator's gauges (one cheap query each)."""

    #: Outbox rows not yet published.
    outbox_backlog: int
    #: When the oldest of them was stored (None: the outbox is empty).
    outbox_oldest: datetime | None
    #: Saga name -> status -> unfinished instances (running, compensating, needs_attention).
    active: dict[str, dict[str, int]]
    #: Saga name -> start of its oldest unfinished instance.
    oldest_active: dict[str, datetime]


#: What :meth:`SagaStore.update` does with a saga: its stored form (None: never saved) in,
#: the write to store out (None: nothing to write). Pure: it may run more than once (after
#: a conflict) and on the store's own thread (SQLite).
Change = Callable[[StoredSaga | None], SagaWrite | None]


@runtime_checkable
class SagaStore(Protocol):
    """Saga instances with their outbox, timers and operator requests.

    Opened once (applying its schema migrations) and closed at shutdown, or used as
    ``async with store:``. Safe from many tasks at once.
    """

    #: "memory", "sqlite" or "postgres" (the ``store`` label of the outbox metrics).
    kind: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self, saga_id: str) -> StoredSaga | None:
        """The saga's state and revision, or None if it was never saved."""
        ...

    async def save(self, write: SagaWrite) -> int:
        """Store state, outbox rows and timer changes in one transaction; the new revision.

        Raises :class:`RevisionConflictError` (nothing written) when the stored revision is
        not ``write.expected_revision`` (0: when the saga already exists).
        """
        ...

    async def update(
        self, saga_id: str, change: Change, *, on_conflict: Callable[[str], None] | None = None
    ) -> SagaWrite | None:
        """Load the saga, apply ``change``, save its write: the write stored, or None.

        The coordinator's hot path. A store may do it in one transaction (SQLite: one call
        on its thread, the write lock held, so no conflict is possible) or by revision
        (:func:`update_by_revision`: a conflict loads and changes again, after telling
        ``on_conflict`` the saga id).
        """
        ...

    async def update_many(
        self,
        items: Sequence[tuple[str, Change]],
        *,
        on_conflict: Callable[[str], None] | None = None,
    ) -> list[SagaWrite | None]:
        """:meth:`update` each item in order (the coordinator's fetched batch); the writes.

        SQLite does them all in one transaction and one call (group commit: all or none);
        the others one transaction each. PostgreSQL runs different sagas' updates at the
        same time (each saga's in order) and raises the first error after all ended; memory
        stops at the first that raises. Either way what was stored stays stored.
        """
        ...

    async def claim_outbox(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[OutboxEntry]:
        """Up to ``limit`` unsent rows nobody holds, oldest first, held until ``now + lease``."""
        ...

    async def mark_sent(self, ids: Sequence[str]) -> None:
        """Delete published outbox rows (unknown ids are ignored)."""
        ...

    async def claim_due_timers(
        self, *, now: datetime, limit: int, lease: timedelta
    ) -> list[DueTimer]:
        """Up to ``limit`` timers due at ``now`` nobody holds, earliest first, held for ``lease``."""
        ...

    async def cancel_timers(self, ids: Sequence[str]) -> None:
        """Delete timers (fired ones the core ignored; unknown ids are ignored)."""
        ...

    async def request(self, request: ControlRequest) -> None:
        """Queue an operator request for the coordinator."""
        ...

    async def pending_requests(self, *, limit: int) -> list[ControlRequest]:
        """Queued operator requests, oldest first."""
        ...

    async def drop_request(self, request_id: str) -> None:
        """Delete a request that needs no write (its saga is unknown or unchanged)."""
        ...

    async def list_sagas(self, query: SagaQuery) -> list[SagaState]:
        """Sagas matching ``query``, most recently started first."""
        ...

    async def purge_finished(self, older_than: datetime) -> int:
        """Delete the sagas that ended (completed, compensated, failed, cancelled) and were
        last updated before ``older_than``; how many. Running, compensating and
        needs_attention sagas stay, whatever their age, and so do outbox rows not yet
        published. A trigger delivered again after its saga was purged starts it anew:
        keep sagas longer than the trigger topics keep records."""
        ...

    async def counts(self) -> dict[str, int]:
        """Rows per table: ``sagas``, ``outbox``, ``timers``, ``requests`` (for idleness)."""
        ...

    async def gauges(self) -> StoreGauges:
        """Outbox backlog and unfinished sagas, for metrics."""
        ...


async def update_by_revision(
    saga_id: str,
    change: Change,
    *,
    load: Callable[[str], Awaitable[StoredSaga | None]],
    save: Callable[[SagaWrite], Awaitable[int]],
    max_conflicts: int = 20,
    on_conflict: Callable[[str], None] | None = None,
) -> SagaWrite | None:
    """:meth:`SagaStore.update` by optimistic concurrency: load, change, save; on a
    :class:`RevisionConflictError` load the fresh state and change again."""
    for _ in range(max_conflicts):
        write = change(await load(saga_id))
        if write is None:
            return None
        try:
            await save(write)
        except RevisionConflictError:
            if on_conflict is not None:
                on_conflict(saga_id)
            continue
        return write
    raise StoreError(
        f"saga {saga_id}: gave up after {max_conflicts} revision conflicts in a row; another "
        "coordinator keeps saving it (the input will be retried)"
    )


# -- times as the stores keep them (and the outbox relay stamps records) -----------------


def to_ms(t: datetime) -> int:
    """Milliseconds since the epoch (the stores keep times as integers)."""
    return int(t.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
