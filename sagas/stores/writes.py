"""What one input writes to a saga store: the write types and the change that makes them.

A :data:`Change` turns the saga as stored into the :data:`Write` to store, inside the
store's transaction (:meth:`~sagas.stores.base.SagaStore.update`); :func:`update_by_revision`
is that update by optimistic concurrency, for the stores without one transaction per call.

Example::

    write = SagaWrite(new_state, expected_revision=stored.revision, outbox=rows)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bus import StoreError
from sagas.early import EarlyInput
from sagas.effects import TaskToMark, TaskToOpen, TimerToSet
from sagas.state import SagaState
from sagas.stores.rows import (
    OutboxEntry,
    RevisionConflictError,
    SetAsideInput,
    StoredSaga,
    UnreadableSaga,
)

__all__ = [
    "Change",
    "KeepEarly",
    "Loaded",
    "SagaWrite",
    "SetAside",
    "Unstarted",
    "Write",
    "update_by_revision",
]


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
    #: Message ids of the early inputs the start applied (deleted with it).
    early_done: tuple[str, ...] = ()


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
@dataclass(frozen=True, slots=True)
class KeepEarly:
    """Keep an input for a saga that does not exist (:mod:`sagas.early`): stored unless the
    saga exists by then (a revision conflict: decided again on it) or the same message id
    is kept already (kept once)."""

    input: EarlyInput
    #: Always 0: the saga must not exist.
    expected_revision: int = 0

    @property
    def saga_id(self) -> str:
        return self.input.saga_id


@dataclass(frozen=True, slots=True)
class Unstarted:
    """A saga not stored, with the inputs kept for it (oldest first): what a :data:`Change`
    gets instead of None when there are some (a start applies them)."""

    saga_id: str
    early: tuple[EarlyInput, ...]


Write = SagaWrite | SetAside | KeepEarly

#: A saga as a :data:`Change` gets it.
Loaded = StoredSaga | UnreadableSaga | Unstarted | None


#: What :meth:`SagaStore.update` does with a saga: its stored form (None: never saved; an
#: :class:`UnreadableSaga`: its state cannot be read) in, the write to store out (None:
#: nothing to write). Pure: it may run more than once (after a conflict) and on the
#: store's own thread (SQLite).
Change = Callable[[Loaded], Write | None]


async def update_by_revision(
    saga_id: str,
    change: Change,
    *,
    load: Callable[[str], Awaitable[Loaded]],
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
