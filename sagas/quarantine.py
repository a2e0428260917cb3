"""The quarantine: a saga whose stored state cannot be read holds back itself only.

A row corrupted by hand, by a bad migration or by a bug cannot be decided on. Before, it
raised on every input and every timer for it: the coordinator crashed on every start
(timers are claimed in due order, so no timer behind it fired, for any saga) and a reply
for it was lost. Now the store hands such a row to the change as an
:class:`~sagas.stores.base.UnreadableSaga`, and the first input for it quarantines it
(:class:`~sagas.stores.base.SetAside`): status ``needs_attention``, reason ``unreadable
state: ...``, the state column untouched, the input (the consumed record, or the timer
that fired) kept aside in the store. Everything else goes on.

An operator fixes the row and asks ``bus sagas retry``: the retry re-reads it, lifts the
quarantine (and retries the saga if its state needs attention), and the coordinator then
applies the set-aside inputs in the order they came (:func:`kept_input`). Until then
every input for it is set aside too, even once the row reads again.

Pure: the coordinator calls :func:`set_aside` inside the store's transaction.

Example::

    if quarantined(stored):
        applied_write = set_aside(stored, given, now, record)
"""

from __future__ import annotations

from datetime import datetime

from bus import OutgoingRecord, Record
from sagas.stores.base import UNREADABLE, SetAside, SetAsideInput, StoredSaga, UnreadableSaga
from sagas.triggers import Incoming, TaskDone, TimerFired, Trigger

__all__ = ["TASK_PREFIX", "UNREADABLE", "kept_input", "quarantined", "set_aside"]

#: How a task's completion set aside is kept: ``task:<task id>`` in the timer column.
TASK_PREFIX = "task:"


def quarantined(stored: StoredSaga | UnreadableSaga | None) -> bool:
    """True when inputs for ``stored`` go aside: its state cannot be read, or it was
    quarantined and no retry lifted that yet."""
    if stored is None:
        return False
    return isinstance(stored, UnreadableSaga) or stored.quarantine is not None


def set_aside(
    stored: StoredSaga | UnreadableSaga,
    trigger: Trigger,
    now: datetime,
    *,
    record: Record | None = None,
    request: str | None = None,
) -> SetAside | None:
    """The write that keeps ``trigger`` aside for a quarantined saga (quarantining it, if
    it is not yet); None: nothing to keep and it is quarantined already.

    A reply or event is kept as the ``record`` it came in; a fired timer by its id (and
    taken off the timers, so the timers behind it fire); a task's completion by its task id
    (``task:<id>`` in the timer column: the data is on the task row); an operator's cancel
    or retry is answered by the quarantine itself (not carried out on an unreadable state).
    """
    saga_id = stored.saga_id if isinstance(stored, UnreadableSaga) else stored.state.saga_id
    reason = stored.quarantine
    if reason is None:
        error = stored.error if isinstance(stored, UnreadableSaga) else "quarantined"
        reason = f"{UNREADABLE}: {error}"
    inputs: tuple[SetAsideInput, ...] = ()
    cancel: tuple[str, ...] = ()
    if isinstance(trigger, TimerFired):
        inputs = (SetAsideInput(saga_id, now, timer_id=trigger.timer_id),)
        cancel = (trigger.timer_id,)
    elif isinstance(trigger, TaskDone):  # a person's work: kept, by its task id
        inputs = (SetAsideInput(saga_id, now, timer_id=TASK_PREFIX + trigger.task_id),)
    elif isinstance(trigger, Incoming) and record is not None:
        kept = OutgoingRecord(record.topic, record.key, record.value, record.headers)
        inputs = (SetAsideInput(saga_id, now, record=kept),)
    if not inputs and stored.quarantine is not None:
        return None
    return SetAside(saga_id, stored.revision, reason, inputs, cancel, request)


def kept_input(item: SetAsideInput) -> Record | None:
    """The set-aside record as the coordinator consumes it again (None: a timer)."""
    r = item.record
    if r is None:
        return None
    return Record(r.topic, -1, -1, r.key, r.value, r.headers)
