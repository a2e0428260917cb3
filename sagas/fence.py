"""The timers' fence: a reply timeout fires only after the replies that beat it are applied.

A coordinator that was down, stalled or behind finds due timers *and* replies waiting on
its input topics. Fired first, a timeout re-sends the step's command although its reply
is there: the step runs twice. So before firing claimed timers the coordinator takes a
:class:`bus.Fence` (every partition of its input topics, where it ends now, asked of the
broker) and waits until the group has handled every input up to it
(:meth:`bus.Worker.behind`): a reply on the topics when the timer fired has been applied,
and the step it completed makes the timer a no-op in the core.

Several replicas: a saga's replies are keyed by their own key (an employee id, say), not
by the saga id, so they may sit on any input partition, owned by any replica. The fence
therefore covers every partition of the input topics: this replica's own by its worker's
progress, the others by the group's committed offsets (a partition another replica owns
counts once that replica committed past the fence, i.e. applied and committed its
inputs). A replica down or stalled holds back every replica's timers until the group has
rebalanced its partitions and their new owner caught up: timers wait, they never beat a
reply.

Example::

    fence = InputFence(interval_s=0.1)
    app.on_start(fence.watch)
    if await fence.caught_up():   # False: the worker is stopping, fire nothing now
        ...fire the claimed timers...
"""

from __future__ import annotations

import asyncio
import logging
import time

from bus import TopicPartition, Worker

__all__ = ["InputFence"]

log = logging.getLogger("sagas.fence")

#: Waits longer than this are logged (once per wait), in seconds.
_LOG_AFTER_S = 5.0


class InputFence:
    """Waits until the watched workers handled their app's input up to a fresh fence."""

    def __init__(self, *, interval_s: float = 0.1) -> None:
        #: How often progress is looked at while waiting, in seconds.
        self.interval_s = interval_s
        self._workers: list[Worker] = []
        #: Fences waited for (some partition was behind), since the fence was made.
        self.waits = 0

    def watch(self, worker: Worker) -> None:
        """Fence on ``worker`` too (an :meth:`bus.App.on_start` callback)."""
        self._workers = [w for w in self._workers if not w.stopping] + [worker]

    async def caught_up(self) -> bool:
        """Take a fence now and wait until it is reached: True. False if a watched worker
        stops meanwhile (the timers then wait for the next round). No worker watched (a
        coordinator driven without one): True, there is no input to wait for."""
        workers = list(self._workers)
        if not workers:
            return True
        if any(w.stopping for w in workers):
            return False
        fence = await workers[0].fence()
        started, waited, warned = time.monotonic(), False, False
        while True:
            late: dict[TopicPartition, tuple[int, int]] = {}
            for w in workers:
                if w.stopping:
                    return False
                late |= await w.behind(fence)
            if not late:
                return True
            if not waited:
                waited = True
                self.waits += 1
            if not warned and time.monotonic() - started > _LOG_AFTER_S:
                warned = True
                _log_wait(late, time.monotonic() - started)
            await asyncio.sleep(self.interval_s)


def _log_wait(late: dict[TopicPartition, tuple[int, int]], waited_s: float) -> None:
    tp, (done, end) = min(late.items())
    log.warning(
        "due saga timers have waited %.0fs for %d input partition(s) to be applied up to "
        "where they ended when the timers fired (first: %s[%d] at %d of %d); a reply "
        "there must win over its timeout",
        waited_s, len(late), tp.topic, tp.partition, done, end,
    )  # fmt: skip
