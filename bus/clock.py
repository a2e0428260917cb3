"""Time as an input: the wall clock and its sleeps, or a virtual clock tests move by hand.

The runtime reads ``now`` from a clock (a callable returning an aware ``datetime``) and
waits with a ``sleep(seconds)`` coroutine; both are parameters of
:class:`~bus.worker.Worker`, :class:`~bus.runner.Runner` and the test kits. With a
:class:`VirtualClock` a retry tier of ten minutes or a backoff of thirty seconds passes
when the test says so, in microseconds, and every timestamp is exact.

Example::

    clock = VirtualClock()
    waiting = asyncio.create_task(clock.sleep(30))
    clock.advance(timedelta(seconds=30))   # the sleeper wakes
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

__all__ = ["DEFAULT_START", "Sleep", "VirtualClock"]

#: How the runtime waits: ``await sleep(seconds)`` (``asyncio.sleep`` by default).
Sleep = Callable[[float], Awaitable[None]]

#: Where a virtual clock starts unless told otherwise.
DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class VirtualClock:
    """A clock that moves only when advanced; call it for ``now``, await its ``sleep``.

    A sleeper wakes when :meth:`advance` passes its time (in the order the times fall);
    ``sleepers`` says how many wait, so a test kit can tell "idle until time moves" from
    "still working".

    >>> clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(days=3)); clock().day
    4
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("the virtual clock needs an aware datetime (tzinfo=UTC)")
        self.now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta`` and wake every sleeper whose time has come."""
        if delta < timedelta(0):
            raise ValueError("time does not go back: advance by a positive timedelta")
        self.now += delta
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock was advanced by ``seconds`` (at once when not positive)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        due = self.now + timedelta(seconds=seconds)
        heapq.heappush(self._sleepers, (due, next(self._order), waiter))
        await waiter

    @property
    def sleepers(self) -> int:
        """Sleeps waiting for the clock (cancelled ones no longer count)."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())
