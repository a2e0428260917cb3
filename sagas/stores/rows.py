"""What the saga stores keep, as values: a saga as stored (or unreadable), its outbox rows,
timers, operator requests and set-aside inputs, the queries and gauges, and the errors.

Shared by every backend (:mod:`sagas.stores.base` re-exports it all with the protocol).

Example::

    stored = await store.load("onboarding:e-1")     # a StoredSaga: state and revision
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from bus import OutgoingRecord, StoreError
from sagas.state import SagaState, SagaStatus

__all__ = [
    "ACTIVE",
    "COMPONENT",
    "UNREADABLE",
    "ControlAction",
    "ControlRequest",
    "DueTimer",
    "OutboxEntry",
    "RevisionConflictError",
    "SagaQuery",
    "SetAsideInput",
    "StoreGauges",
    "StoredSaga",
    "UnreadableSaga",
    "UnreadableStateError",
    "from_ms",
    "listed_state",
    "loaded",
    "parse_error",
    "to_ms",
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
