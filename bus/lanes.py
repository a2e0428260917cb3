"""A partition's lane: its buffered records, and how it waits (for time, or a store).

The worker keeps one :class:`Lane` per assigned partition. The fetch loop appends records
and sets ``wake``; the lane's task takes them in order. A lane waits in three ways, all
woken early by new records or by closing: for records; for the head record of a retry
topic to be due; and, when a store of bus's own fails (a dedup store), holding its head
record with exponential backoff instead of dead-lettering it.

Example::

    lane = Lane(TopicPartition("orders", 0), retry=False)
    lane.buffer.extend(records); lane.wake.set()
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from bus.clock import Sleep
from bus.record import Record, TopicPartition
from bus.retry_topics import retry_state

__all__ = ["STORE_RETRY_FIRST_S", "STORE_RETRY_MAX_S", "Lane"]

#: The first pause of a lane held by a failing store, in seconds; it doubles up to the max.
STORE_RETRY_FIRST_S = 0.1
STORE_RETRY_MAX_S = 5.0


class Lane:
    """One partition's records and waits (see the module docstring)."""

    __slots__ = (
        "buffer", "closing", "fetched_to", "handled_to", "held", "paused", "retry", "task",
        "tp", "turn", "wake",
    )  # fmt: skip

    def __init__(self, tp: TopicPartition, *, retry: bool) -> None:
        self.tp = tp
        #: A retry-topic partition: records are taken one at a time, when due.
        self.retry = retry
        self.buffer: deque[Record] = deque()
        self.wake = asyncio.Event()
        self.closing = False
        self.paused = False
        self.task: asyncio.Task[None] | None = None
        #: Records of this lane are being handled (taken from the buffer, not yet tracked).
        self.turn = False
        #: Why and for how long (seconds) the lane is held by a failing store, or None.
        self.held: tuple[str, float] | None = None
        #: The offset after the last record fetched into the buffer (None: none yet).
        self.fetched_to: int | None = None
        #: Every record before this offset has its outcome (None: none handled since the
        #: partition was assigned); see :meth:`note_handled`.
        self.handled_to: int | None = None

    def take(self, records: Sequence[Record]) -> None:
        """Buffer fetched ``records`` (in offset order) and wake the lane."""
        self.buffer.extend(records)
        if records:
            self.fetched_to = records[-1].offset + 1
        self.wake.set()

    def note_handled(self) -> None:
        """After a run of the buffer's head was handled: everything before the buffer's new
        head (or, with the buffer empty, everything fetched) has its outcome."""
        if not self.closing:  # a closed lane's buffer was dropped, not handled
            self.handled_to = self.buffer[0].offset if self.buffer else self.fetched_to

    def close(self) -> None:
        """Stop taking records: what is buffered is dropped (redelivered from the commit)."""
        self.closing = True
        self.buffer.clear()
        self.wake.set()

    async def nap(self, sleep: Sleep, seconds: float) -> None:
        """``sleep(seconds)``, or less if woken (new records, closing)."""
        self.wake.clear()
        due = asyncio.ensure_future(sleep(seconds))
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait((due, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            due.cancel()
            woken.cancel()

    async def due(self, clock: Callable[[], datetime], sleep: Sleep) -> bool:
        """Whether the head record of a retry lane is due; else wait (False: look again)."""
        state = retry_state(self.buffer[0])
        if state is None:
            return True  # not written by bus: handled as a first try
        wait_s = state.due_ms / 1000 - clock().timestamp()
        if wait_s <= 0:
            return True
        await self.nap(sleep, wait_s)
        return False

    def hold(self, record: Record | None, why: str) -> float:
        """A store failed on ``record`` (the head): put it back; the pause before the next
        try, doubled from the last hold's, in seconds."""
        if record is not None and not self.closing:
            self.buffer.appendleft(record)
        last = self.held
        delay_s = STORE_RETRY_FIRST_S if last is None else min(last[1] * 2, STORE_RETRY_MAX_S)
        self.held = (why, delay_s)
        return delay_s
