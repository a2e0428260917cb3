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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from bus import OutgoingRecord, StoreError
from sagas.effects import TaskToMark, TaskToOpen, TimerToSet
from sagas.state import SagaState, SagaStatus

if TYPE_CHECKING:
    from sagas.stores.task_rows import TaskQuery, TaskRow

__all__ = [
    "ACTIVE",
    "COMPONENT",
    "UNREADABLE",
    "Change",
    "ControlAction",
    "ControlRequest",
    "DueTimer",
    "OutboxEntry",
    "RevisionConflictError",
    "SagaQuery",
    "SagaStore",
    "SagaWrite",
    "SetAside",
    "SetAsideInput",
    "StoreGauges",
    "StoredSaga",
    "UnreadableSaga",
    "UnreadableStateError",
    "Write",
    "from_ms",
    "listed_state",
    "loaded",
    "parse_error",
    "to_ms",
    "update_by_revision",
]

#: The component name of the saga schema in ``schema_version``.
COMPONENT = "sagas.store"

#: ``complete_task``: a person completed a task (``reason`` holds the task id; the data is
#: on the task row, written in the same transaction as the request).
ControlAction = Literal["cancel", "retry", "complete_task"]


class RevisionConflictError(StoreError):
    """Someone saved the saga since it was loaded: load it again and decide again."""

    retryable = True


class UnreadableStateError(StoreError):
    """:meth:`SagaStore.load` found a saga row whose state cannot be read (``saga``: the raw
    row). Not retryable: reading again gives the same; the coordinator quarantines it."""

    retryable = False

    def __init__(self, saga: UnreadableSaga) -> None:
        super().__init__(
            f"saga {saga.saga_id}: its stored state cannot be read ({saga.error}); it is "
            "quarantined: fix the row, then 'bus sagas retry'"
        )
        self.saga = saga


@dataclass(frozen=True, slots=True)
class StoredSaga:
    """A saga's state as stored, with the revision a write must name to replace it."""

    state: SagaState
    #: 1 for the first write, +1 per write.
    revision: int
    #: Why the saga is quarantined (its inputs are set aside until an operator's retry);
    #: None when it is not. A state fixed by hand is readable and still quarantined.
    quarantine: str | None = None


@dataclass(frozen=True, slots=True)
class UnreadableSaga:
    """A saga row whose state cannot be parsed: the row as stored, for the quarantine and
    for ``bus sagas show``. The store hands it to a :data:`Change` instead of raising, so
    one bad row holds back its own saga only."""

    saga_id: str
    revision: int
    #: The row's columns (the state's own copy of them cannot be read).
    name: str
    status: str
    started_at: datetime
    updated_at: datetime
    #: The state column, exactly as stored.
    raw: str
    #: Why it cannot be read (the parser's first error).
    error: str
    #: Why it is quarantined; None: not yet (the first input for it quarantines it).
    quarantine: str | None = None

    def stand_in(self) -> SagaState:
        """A state to list it by: needs_attention, with the quarantine as its reason."""
        why = self.quarantine or f"{UNREADABLE}: {self.error}"
        return SagaState(
            saga_id=self.saga_id, name=self.name, version=0,
            status=SagaStatus.NEEDS_ATTENTION, data={}, steps={}, attention=why,
            trigger_id="", started_at=self.started_at, updated_at=self.updated_at,
        )  # fmt: skip


#: The quarantine reason of a saga whose stored state cannot be read.
UNREADABLE = "unreadable state"


def listed_state(
    stored: StoredSaga | UnreadableSaga,
) -> SagaState:
    """How :meth:`SagaStore.list_sagas` shows a saga: a quarantined one as needs_attention,
    with the quarantine as its reason (an unreadable one by a stand-in state)."""
    if isinstance(stored, UnreadableSaga):
        return stored.stand_in()
    if stored.quarantine is None:
        return stored.state
    return replace(stored.state, status=SagaStatus.NEEDS_ATTENTION, attention=stored.quarantine)


@dataclass(frozen=True, slots=True)
class SetAsideInput:
    """An input for a quarantined saga, kept until an operator's retry applies it: the
    record consumed (a reply, an awaited or cancelling event) or the timer that fired."""

    saga_id: str
    #: When it was set aside.
    at: datetime
    #: The consumed record, as read (topic, key, value, headers); None for a timer.
    record: OutgoingRecord | None = None
    #: The timer that fired; None for a record.
    timer_id: str | None = None
    #: Its place in the store's order (0 until stored).
    seq: int = 0


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
    #: Lift the saga's quarantine (an operator's retry of a saga fixed by hand).
    release: bool = False
    #: Set-aside inputs this write applied (``SetAsideInput.seq``; deleted with it).
    set_aside_done: tuple[int, ...] = ()
    #: Task rows to write (status open), and open ones to mark overdue or cancelled.
    tasks_to_open: tuple[TaskToOpen, ...] = ()
    tasks_to_mark: tuple[TaskToMark, ...] = ()


@dataclass(frozen=True, slots=True)
class SetAside:
    """The write of an input for a quarantined (or unreadable) saga: quarantine it if it
    is not yet (status needs_attention, ``reason``), keep the input aside, and leave the
    state column as it is - the raw row stays for the operator."""

    saga_id: str
    #: The revision loaded (the quarantine increments it, so concurrent writers conflict).
    expected_revision: int
    reason: str
    inputs: tuple[SetAsideInput, ...] = ()
    #: The fired timer moved aside (deleted from the timers).
    timers_to_cancel: tuple[str, ...] = ()
    #: An operator request answered by setting the saga aside (deleted with it).
    request_done: str | None = None


#: What a :data:`Change` stores.
Write = SagaWrite | SetAside


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


#: What :meth:`SagaStore.update` does with a saga: its stored form (None: never saved; an
#: :class:`UnreadableSaga`: its state cannot be read) in, the write to store out (None:
#: nothing to write). Pure: it may run more than once (after a conflict) and on the
#: store's own thread (SQLite).
Change = Callable[[StoredSaga | UnreadableSaga | None], Write | None]


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
        """The saga's state and revision, or None if it was never saved; raises
        :class:`UnreadableStateError` if its state cannot be read."""
        ...

    async def read(self, saga_id: str) -> StoredSaga | UnreadableSaga | None:
        """:meth:`load`, with an unreadable row as :class:`UnreadableSaga` (the raw row)."""
        ...

    async def save(self, write: Write) -> int:
        """Store state, outbox rows and timer changes in one transaction; the new revision.

        Raises :class:`RevisionConflictError` (nothing written) when the stored revision is
        not ``write.expected_revision`` (0: when the saga already exists).
        """
        ...

    async def update(
        self, saga_id: str, change: Change, *, on_conflict: Callable[[str], None] | None = None
    ) -> Write | None:
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
    ) -> list[Write | None]:
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
        """Sagas matching ``query``, most recently started first (a quarantined one as
        :func:`listed_state` shows it)."""
        ...

    async def set_aside_inputs(
        self, *, limit: int, saga_id: str | None = None
    ) -> list[SetAsideInput]:
        """Inputs set aside, in the order they came: those of ``saga_id``, or (None) those
        of every saga whose quarantine was lifted, for the coordinator to apply."""
        ...

    async def drop_set_aside(self, seqs: Sequence[int]) -> None:
        """Delete set-aside inputs that needed no write (unknown seqs are ignored)."""
        ...

    async def purge_finished(self, older_than: datetime) -> int:
        """Delete the sagas that ended (completed, compensated, failed, cancelled) and were
        last updated before ``older_than``; how many. Running, compensating and
        needs_attention sagas stay, whatever their age, and so do outbox rows not yet
        published. A trigger delivered again after its saga was purged starts it anew:
        keep sagas longer than the trigger topics keep records."""
        ...

    async def list_tasks(self, query: TaskQuery) -> list[TaskRow]:
        """Tasks matching ``query``, oldest first (see :mod:`sagas.stores.task_rows`)."""
        ...

    async def get_task(self, task_id: str) -> TaskRow | None:
        """One task, or None if there is no such row."""
        ...

    async def complete_task(
        self, task_id: str, *, data: dict[str, Any], actor: str, at: datetime,
        request: ControlRequest,
    ) -> bool:  # fmt: skip
        """Mark an open (or overdue) task completed by ``actor`` with ``data`` and queue
        ``request`` (its ``complete_task``) in one transaction; False, nothing written, when
        the task is not open (unknown, completed already, cancelled)."""
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
    load: Callable[[str], Awaitable[StoredSaga | UnreadableSaga | None]],
    save: Callable[[Write], Awaitable[int]],
    max_conflicts: int = 20,
    on_conflict: Callable[[str], None] | None = None,
) -> Write | None:
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


def parse_error(exc: BaseException) -> str:
    """A state parser's error in one line: pydantic's count and first error, no link."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("For further information")]
    return " ".join(kept[:3])[:300] or type(exc).__name__


def loaded(stored: StoredSaga | UnreadableSaga | None) -> StoredSaga | None:
    """What :meth:`SagaStore.load` returns for what :meth:`SagaStore.read` found."""
    if isinstance(stored, UnreadableSaga):
        raise UnreadableStateError(stored)
    return stored
