"""The worker's partitions: a lane each, its buffered records, and how it waits.

:class:`Lanes` keeps one :class:`Lane` per assigned partition (the rebalance listener's
side of the worker), feeds them from the fetch loop, and runs each lane's task: records
of a partition in order, at most ``max_concurrency`` lanes at a time. The fetch loop appends records
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
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from bus.app import App
from bus.clock import Sleep
from bus.commits import Committer
from bus.dedup.completions import StoreFaultError
from bus.errors import CommitFailedError
from bus.metrics import Metrics
from bus.offsets import OffsetTracker
from bus.pipeline import Pipeline
from bus.record import Record, TopicPartition
from bus.retry_topics import retry_state
from bus.transports.base import Consumer

__all__ = ["STORE_RETRY_FIRST_S", "STORE_RETRY_MAX_S", "Lane", "Lanes"]

log = logging.getLogger("bus.worker")

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


class Lanes:
    """The lanes of one worker (see the module docstring). ``pipeline``, ``consumer`` and
    ``tasks`` are set by the worker once it runs; ``leaving`` once it shuts down."""

    def __init__(
        self,
        app: App,
        tracker: OffsetTracker,
        committer: Committer,
        metrics: Metrics | None,
        *,
        clock: Callable[[], datetime],
        sleep: Sleep,
        max_concurrency: int,
        records_per_turn: int,
        max_buffered: int,
    ) -> None:
        self.app, self.tracker, self.committer, self.metrics = app, tracker, committer, metrics
        self.clock = clock
        self._sleep = sleep
        #: Waits in ``sleep`` under way: idle "until time moves" when they are all that is left.
        self.sleeping = 0
        self.records_per_turn = records_per_turn
        self.max_buffered = max_buffered
        self.pipeline: Pipeline | None = None
        self.consumer: Consumer | None = None
        self.tasks: asyncio.TaskGroup | None = None
        #: Set once shutdown starts: partitions assigned from then on get no lane.
        self.leaving = False
        self._by_tp: dict[TopicPartition, Lane] = {}
        self._retry_topics = frozenset(app.retry_topics)
        self._slots = asyncio.Semaphore(max_concurrency)

    # -- what the worker asks --------------------------------------------------------------
    def partitions(self) -> list[TopicPartition]:
        return list(self._by_tp)

    def pending(self) -> int:
        """Lanes with records buffered or in hand."""
        return sum(1 for lane in self._by_tp.values() if lane.buffer or lane.turn)

    def buffered(self) -> int:
        return sum(len(lane.buffer) for lane in self._by_tp.values())

    def handled_offsets(self) -> dict[TopicPartition, int | None]:
        """Owned partitions -> the offset before which every record has its outcome."""
        return {tp: lane.handled_to for tp, lane in self._by_tp.items()}

    @property
    def store_fault(self) -> str | None:
        """Why a lane is held (its dedup store fails), or None; ``/readyz`` reads it."""
        for lane in self._by_tp.values():
            if lane.held is not None:
                return lane.held[0]
        return None

    # -- fed by the fetch loop -------------------------------------------------------------
    def feed(self, batches: Mapping[TopicPartition, Sequence[Record]]) -> None:
        """Hand fetched records to their lanes; pause a partition whose lane is full."""
        for tp, records in batches.items():
            lane = self._by_tp.get(tp)
            if lane is None or lane.closing:
                continue  # revoked meanwhile: the new owner reads them from the commit
            lane.take(records)
            if len(lane.buffer) >= self.max_buffered and not lane.paused:
                lane.paused = True
                assert self.consumer is not None
                self.consumer.pause([tp])

    # -- rebalances and shutdown -----------------------------------------------------------
    def assign(self, assigned: frozenset[TopicPartition]) -> None:
        """A lane and its task per newly assigned partition."""
        assert self.tasks is not None
        if self.leaving:
            # A rebalance that completes while the consumer leaves (aiokafka finishes the
            # join under way first): a lane started now would wait for records forever and
            # keep the worker from returning. The partitions go to others once we left.
            log.debug("app %s leaving: ignoring assignment %s", self.app.name, sorted(assigned))
            return
        for tp in assigned:
            lane = Lane(tp, retry=tp.topic in self._retry_topics)
            lane.task = self.tasks.create_task(
                self._run(lane), name=f"{self.app.name}-{tp.topic}-{tp.partition}"
            )
            self._by_tp[tp] = lane
        log.debug("app %s assigned %s", self.app.name, sorted(assigned))

    async def revoke(self, revoked: frozenset[TopicPartition], deadline_s: float) -> None:
        """Finish the revoked lanes' records, await their acks, commit, forget them."""
        deadline = time.monotonic() + deadline_s
        await self.close([self._by_tp.pop(tp) for tp in revoked if tp in self._by_tp], deadline)
        for tp in revoked:
            await self.committer.await_acks(tp, deadline)
        try:
            await self.committer.commit(only=revoked)
        except CommitFailedError as exc:
            log.warning("app %s: commit on revoke failed: %s", self.app.name, exc)
        for tp in revoked:
            self.tracker.forget(tp)
        log.debug("app %s revoked %s", self.app.name, sorted(revoked))

    def drop_unstarted(self) -> None:
        """At stop: every lane drops what it has not started (no wait for the fetch)."""
        for lane in self._by_tp.values():
            lane.close()

    async def close_all(self, deadline: float) -> None:
        """At shutdown: no lane from now on; the current ones finish their record."""
        self.leaving = True
        await self.close(list(self._by_tp.values()), deadline)

    async def close(self, lanes: list[Lane], deadline: float) -> None:
        """Close ``lanes`` and wait for their tasks until ``deadline``, then cancel them."""
        tasks = []
        for lane in lanes:
            lane.close()
            if lane.task is not None:
                tasks.append(lane.task)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in late:
            task.cancel()

    def clear(self) -> None:
        self._by_tp.clear()

    # -- a lane's task ---------------------------------------------------------------------
    async def _run(self, lane: Lane) -> None:
        """Take the lane's records in turns (bounded by the slots) until it closes."""
        pipeline = self.pipeline
        assert pipeline is not None
        limit = 1 if lane.retry else self.records_per_turn
        while True:
            while not lane.buffer:
                if lane.closing:
                    return
                lane.wake.clear()
                await lane.wake.wait()
            if lane.retry and not await lane.due(self.clock, self.counted_sleep):
                continue
            fault: StoreFaultError | None = None
            async with self._slots:
                lane.turn = True
                try:
                    await pipeline.process(lane.buffer, lane.tp, limit)
                except StoreFaultError as exc:
                    fault = exc
                finally:
                    lane.turn = False
            if fault is not None:
                await self._hold(lane, fault)
                continue
            if lane.held is not None:
                lane.held = None
                log.info("app %s: dedup store answers again; %s[%d] goes on", self.app.name,
                         lane.tp.topic, lane.tp.partition)  # fmt: skip
            lane.note_handled()
            self.tracker.advance(lane.tp)  # release what is acknowledged already
            if lane.paused and len(lane.buffer) < self.max_buffered // 2:
                lane.paused = False
                if self.consumer is not None and not lane.closing:
                    self.consumer.resume([lane.tp])
            await asyncio.sleep(0)  # let other lanes and the fetch loop run

    async def _hold(self, lane: Lane, fault: StoreFaultError) -> None:
        """The dedup store failed on the lane's head record: keep it at the head and wait
        (exponential backoff, see :meth:`Lane.hold`) before trying it again. Nothing is
        dead-lettered for it; :attr:`store_fault` makes ``/readyz`` 503."""
        delay_s = lane.hold(fault.record, str(fault.error))
        if self.metrics is not None:
            self.metrics.store_fault(self.app.name, fault.handler)
        log.warning("app %s: %s; holding %s[%d], trying again in %.1fs", self.app.name, fault,
                    lane.tp.topic, lane.tp.partition, delay_s)  # fmt: skip
        deadline = time.monotonic() + delay_s
        while not lane.closing and (left_s := deadline - time.monotonic()) > 0:
            await lane.nap(self.counted_sleep, left_s)

    async def counted_sleep(self, seconds: float) -> None:
        """``sleep``, counted: the worker's ``idle`` tells waiting for time from working."""
        self.sleeping += 1
        try:
            await self._sleep(seconds)
        finally:
            self.sleeping -= 1
