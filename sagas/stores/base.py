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

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sagas.state import SagaState
from sagas.stores.rows import (
    ACTIVE,
    COMPONENT,
    UNREADABLE,
    ControlAction,
    ControlRequest,
    DueTimer,
    OutboxEntry,
    RevisionConflictError,
    SagaQuery,
    SetAsideInput,
    StoredSaga,
    StoreGauges,
    UnreadableSaga,
    UnreadableStateError,
    from_ms,
    listed_state,
    loaded,
    parse_error,
    to_ms,
)
from sagas.stores.writes import (
    Change,
    KeepEarly,
    Loaded,
    SagaWrite,
    SetAside,
    Unstarted,
    Write,
    update_by_revision,
)

if TYPE_CHECKING:
    from sagas.early import EarlyInput
    from sagas.stores.task_rows import TaskQuery, TaskRow

# The values are sagas.stores.rows's, the writes sagas.stores.writes's: imported from here
# as from one place.
__all__ = [
    "ACTIVE",
    "COMPONENT",
    "UNREADABLE",
    "Change",
    "ControlAction",
    "ControlRequest",
    "DueTimer",
    "KeepEarly",
    "Loaded",
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
    "Unstarted",
    "Write",
    "from_ms",
    "listed_state",
    "loaded",
    "parse_error",
    "to_ms",
    "update_by_revision",
]


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

    async def early_inputs(
        self, saga_id: str | None = None, *, limit: int = 100
    ) -> list[EarlyInput]:
        """Inputs kept for sagas not started yet (:mod:`sagas.early`), in arrival order:
        those of ``saga_id``, or (None) all."""
        ...

    async def purge_early(self, older_than: datetime) -> int:
        """Delete inputs kept since before ``older_than`` (their saga never started); how
        many."""
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
