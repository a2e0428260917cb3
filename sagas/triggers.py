"""What can happen to a saga instance: the inputs of :func:`sagas.core.decide`.

The coordinator turns records and due timers into these values; the core never sees an
envelope, a clock or a store.

Example::

    Incoming(type="licensing.licenses.granted.v1", message_id="0190...",
             correlation_id="onboarding:e-1", data=LicensesGranted(...))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus import Message

__all__ = ["Cancel", "Incoming", "Retry", "TaskDone", "TimerFired", "Trigger"]


@dataclass(frozen=True, slots=True)
class Incoming:
    """An event for the instance: a reply, an awaited external event, or a cancel event."""

    #: CloudEvents ``type`` of the message.
    type: str
    #: CloudEvents ``id``: a reply id seen before is a duplicate and changes nothing.
    message_id: str
    #: The saga id it is for (the envelope's ``correlationid``, or resolved by the
    #: coordinator from the correlation key for an external event). A mismatch is ignored.
    correlation_id: str
    #: The typed message.
    data: Message
    #: The envelope's ``causationid`` (the command that caused a reply), kept in history.
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer the core asked for is due. An unknown or superseded timer changes nothing."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the instance: in-flight steps settle, then what completed is compensated."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Retry:
    """Resume a ``needs_attention`` instance: re-send what it awaits with a fresh budget."""

    reason: str = "retried by operator"


@dataclass(frozen=True, slots=True)
class TaskDone:
    """A person completed a task (:func:`sagas.tasks.complete_task`): its form data, valid
    when submitted. A task not open in the saga (done already, cancelled) changes nothing."""

    task_id: str
    step: str
    #: The submitted form, as JSON values (validated against the form again when applied).
    data: dict[str, Any]
    #: Who completed it.
    actor: str


Trigger = Incoming | TimerFired | Cancel | Retry | TaskDone
