"""What the core asks the shell to do: the output of :func:`sagas.core.decide`.

Ids are deterministic (uuid5 of saga id, step, kind and attempt): re-publishing a stored
outbox row reuses its id, so handlers' dedup drops the copy; a re-send is a new attempt
with a new id. A re-send after a reply *timeout* keeps the ``idempotency_key`` of the
attempt it repeats (the id of the first attempt of that chain), published as the
CloudEvents extension ``idempotencykey``: a handler's dedup matches it, so a re-send whose
first attempt did land is not applied twice, while one whose first attempt was
dead-lettered (no completion) runs. A re-send after a failure reply or an operator retry
starts a new chain (its own id as key): it asks for the work again on purpose.

Example::

    for cmd in transition.commands:
        outbox.add(cmd.id, cmd.message, correlation_id=transition.state.saga_id)
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bus import Command, Event
from sagas.state import SagaState

__all__ = [
    "CommandToSend",
    "TaskToMark",
    "TaskToOpen",
    "TimerToSet",
    "Transition",
    "command_id",
    "task_id",
    "timer_id",
]

#: ``escalation``: the command a saga's deadline sends (step ``_saga``, no reply awaited);
#: ``report``: a child saga's end, told to its parent (step ``_saga``).
CommandKind = Literal["action", "compensation", "escalation", "report"]

#: Namespace of saga command ids (uuid5): fixed forever, or ids would change on upgrade.
_NAMESPACE = uuid.UUID("6f1c2a52-8f1e-4c1e-9a43-2b0b7f3e5d10")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def command_id(saga_id: str, step: str, kind: CommandKind, attempt: int) -> str:
    """The CloudEvents id of attempt ``attempt`` of a step's action or compensation.

    >>> command_id("onboarding:e-1", "create_account", "action", 1) == command_id(
    ...     "onboarding:e-1", "create_account", "action", 1)
    True
    """
    return uuid5(f"{saga_id}\x1f{step}\x1f{kind}\x1f{attempt}")


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, computed in a third of its time (no UUID
    object: the coordinator makes one per command sent; equality is property-tested)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def timer_id(saga_id: str, step: str, kind: str, attempt: int) -> str:
    """The id of a step's timer: readable, unique per saga, step, kind and attempt."""
    return f"{saga_id}/{step}/{kind}/{attempt}"


@dataclass(frozen=True, slots=True)
class CommandToSend:
    """Publish ``message`` with CloudEvents ``id`` = ``id`` and ``correlationid`` = saga id."""

    id: str
    step: str
    #: A command; a child saga's end report (kind ``report``) is an event.
    message: Command | Event
    kind: CommandKind
    attempt: int
    #: The attempt-independent key a handler's dedup matches (``idempotencykey``); the
    #: same as ``id`` unless this is a re-send after a reply timeout.
    idempotency_key: str = ""

    @property
    def key(self) -> str:
        """The idempotency key: ``idempotency_key``, or the id itself."""
        return self.idempotency_key or self.id


@dataclass(frozen=True, slots=True)
class TimerToSet:
    """Fire :class:`~sagas.triggers.TimerFired` (``id``) for this saga at ``at`` (UTC)."""

    id: str
    saga_id: str
    at: datetime


def task_id(saga_id: str, step: str) -> str:
    """The id of the task row a :class:`~sagas.task_stage.Task` step opens (one per step)."""
    return uuid5(f"{saga_id}\x1f{step}\x1ftask")


@dataclass(frozen=True, slots=True)
class TaskToOpen:
    """Write a task row (status ``open``) with the new state: work for a person."""

    id: str
    saga_id: str
    step: str
    #: Who does it (an address, as the definition's ``assignee`` gave it).
    assignee: str
    #: The form's type name (its ``bus_type``, or its class name for a plain model).
    form: str
    #: ``module:qualname`` of the form class, to validate submitted data against.
    form_path: str
    created_at: datetime
    #: When it is due (UTC); past it, the task is overdue.
    due_at: datetime


@dataclass(frozen=True, slots=True)
class TaskToMark:
    """Change an open task row's status: ``overdue`` (its deadline passed) or
    ``cancelled`` (the saga stopped). A completed row is left as it is."""

    id: str
    status: Literal["overdue", "cancelled"]


@dataclass(frozen=True, slots=True)
class Transition:
    """The new state and the effects to persist with it, in one transaction."""

    state: SagaState
    commands: tuple[CommandToSend, ...] = ()
    timers_to_set: tuple[TimerToSet, ...] = ()
    #: Ids of timers no longer wanted (firing them anyway changes nothing).
    timers_to_cancel: tuple[str, ...] = ()
    #: Task rows to write, and open ones whose status changes.
    tasks_to_open: tuple[TaskToOpen, ...] = ()
    tasks_to_mark: tuple[TaskToMark, ...] = ()

    #: False when the input changed nothing (a duplicate, late or unknown message): the
    #: shell need not write anything.
    changed: bool = True
