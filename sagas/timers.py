"""Durable timers: reply timeouts and wait deadlines, stored with the saga, fired when due.

The core asks for timers (:class:`~sagas.effects.TimerToSet`); the coordinator stores them
in the same transaction as the state. :func:`fire_due_timers` claims the timers due at
``now`` (a lease, so coordinator replicas share the work without firing one timer twice at
once) and hands each to ``fire``, which decides :class:`~sagas.triggers.TimerFired` and
deletes the timer with the new state. A timer the core no longer arms changes nothing.

Before firing a claimed batch it awaits ``ready`` (the coordinator's
:class:`~sagas.fence.InputFence`): the inputs on the topics now are applied first, so a
reply that came before its timeout fired always wins. ``ready`` False (shutting down):
nothing fires, and the claimed timers are claimed again once their lease ends.

Time is an input: the coordinator passes its clock, the test kit a virtual clock that the
test advances, so a 3-day deadline passes in microseconds.

Example::

    fired = await fire_due_timers(store, now=clock(), fire=coordinator.fire_timer,
                                  ready=coordinator.fence.caught_up)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sagas.stores.base import DueTimer, SagaStore

__all__ = ["fire_due_timers"]


async def fire_due_timers(
    store: SagaStore,
    *,
    now: datetime,
    fire: Callable[[DueTimer], Awaitable[object]],
    ready: Callable[[], Awaitable[bool]] | None = None,
    batch_size: int = 200,
    lease: timedelta = timedelta(seconds=30),
) -> int:
    """Fire every timer due at ``now``, earliest first; how many fired."""
    fired = 0
    while True:
        due = await store.claim_due_timers(now=now, limit=batch_size, lease=lease)
        if due and ready is not None and not await ready():
            return fired
        for timer in due:
            await fire(timer)
        fired += len(due)
        if len(due) < batch_size:
            return fired
