"""The consume loop: records in, handlers called, outputs sent, offsets committed.

One :class:`Worker` runs one :class:`~bus.app.App` as one member of its consumer group::

    fetch loop --records--> lane per partition (in order; up to max_concurrency at once)
      lane: Pipeline.process: decode -> route -> validate -> handler -> outputs  (pipeline.py;
            batch handlers: batches.py; dedup: dedup/completions.py)
            -> Outcomes: handled / skipped / delayed / dead-lettered            (outcomes.py)
      OffsetTracker <- (offset, acks of what was sent)                          (offsets.py)
    commit loop: Committer: re-send failures, settle, consumer.commit           (commits.py)
    the app's lifespan tasks (App.background), in the same task group

The worker owns the lifecycle: the task group, lanes per assigned partition, rebalances
and the shutdown; the record path and the outcomes live in the modules named above.

At-least-once: an offset is committed only once its handler finished and everything it
emitted (or its dead letter) was acknowledged. A failed send is sent again (same record,
same id: downstream deduplication recognises it) before its offset can be committed.

A dedup store that fails (bus's own infrastructure, not the handler) holds the lane: the
record stays at its head and is tried again with backoff; nothing is dead-lettered for it.

Shutdown (``stop`` set): stop fetching, finish the record each lane is on, drop records
buffered but not started (they are redelivered from the committed offset), wait for the
acks, commit, leave the group; everything within ``shutdown_deadline_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bus import tracing
from bus.app import App
from bus.clock import Sleep
from bus.commits import Committer
from bus.dedup.completions import Completions
from bus.errors import ConfigError
from bus.ids import new_id
from bus.lanes import Lanes
from bus.metrics import Metrics, default_metrics
from bus.offsets import OffsetTracker
from bus.outcomes import Outcomes, WorkerStats
from bus.pipeline import Pipeline
from bus.progress import Fence, behind, take_fence
from bus.record import TopicPartition
from bus.stamping import stamp, time_header, utc_now
from bus.transports.base import Consumer, Transport
from bus.types import OffsetReset, Stamp

__all__ = ["Worker", "WorkerSettings", "WorkerStats"]

log = logging.getLogger("bus.worker")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker consumes. Every field has a production-sane default."""

    #: Partitions handled at the same time (records within a partition stay in order).
    max_concurrency: int = 16
    #: Records asked for per fetch.
    fetch_max_records: int = 500
    #: Longest wait of one fetch for new records, in seconds (also how often stop is seen).
    fetch_timeout_s: float = 0.1
    #: A partition is paused when this many records wait in its lane (bounded memory).
    max_buffered_per_partition: int = 1000
    #: How often settled offsets are committed, in seconds.
    commit_interval_s: float = 0.5
    #: Longest graceful shutdown, in seconds; then in-flight work is abandoned (redelivered).
    shutdown_deadline_s: float = 10.0
    #: Where a group with no committed offset starts.
    offset_reset: OffsetReset = "earliest"
    #: Record Prometheus metrics (bus.metrics); off only to measure what they cost.
    metrics: bool = True
    #: An OpenTelemetry span per handled message, when the ``otel`` extra is installed.
    tracing: bool = True


class Worker:
    """Runs ``app`` on ``transport`` until ``stop`` is set (see the module docstring).

    Example::

        stop = asyncio.Event()
        await Worker(app, transport).run(stop)   # returns after stop.set()
    """

    def __init__(
        self,
        app: App,
        transport: Transport,
        settings: WorkerSettings | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        ids: Callable[[], str] = new_id,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.app = app
        self.transport = transport
        self.settings = settings or WorkerSettings()
        self.stats = WorkerStats()
        self._clock = clock
        self._ids = ids
        #: The ce_id and ce_time headers of each emitted record: from one clock read when
        #: the clock and the ids are the defaults (``codec.stamp``), else from these two.
        self._stamp: Stamp = stamp if clock is utc_now and ids is new_id else self._stamp_from_clock
        #: Where this worker's metrics go (None: not recorded); default: the process's.
        self.metrics = (metrics or default_metrics()) if self.settings.metrics else None
        self._tracker = OffsetTracker()
        self.outcomes = Outcomes(
            app, transport, self._tracker, self.stats, self.metrics, self._clock
        )
        self._completions = Completions(self.outcomes)
        self._committer = Committer(
            self.outcomes, self._completions, interval_s=self.settings.commit_interval_s
        )
        s = self.settings
        #: The partitions, a lane each; ``sleep``: how backoffs and retry tiers wait (a
        #: VirtualClock's in the test kit).
        self.lanes = Lanes(
            app, self._tracker, self._committer, self.metrics, clock=clock, sleep=sleep,
            max_concurrency=s.max_concurrency, records_per_turn=s.fetch_max_records,
            max_buffered=s.max_buffered_per_partition,
        )  # fmt: skip
        #: Built in run(): tracing is decided then (the application may set a provider late).
        self.pipeline: Pipeline | None = None
        self._consumer: Consumer | None = None
        #: The app's lifespan tasks (App.background) and the event that stops them.
        self._background: list[asyncio.Task[None]] = []
        self._tasks_stop = asyncio.Event()
        self._last_fetch_empty = False
        self.running = False

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully."""
        self.app.validate()
        self.pipeline = Pipeline(
            self.app,
            self.outcomes,
            self._completions,
            self._stamp,
            tracing_on=self.settings.tracing and tracing.enabled(),
            sleep=self.lanes.counted_sleep,
        )
        self.lanes.pipeline = self.pipeline
        consumer = self.transport.consumer(
            self.app.topics,
            group=self.app.group,
            offset_reset=self.settings.offset_reset,
            listener=self,
        )
        self._consumer = self.lanes.consumer = self._committer.consumer = consumer
        if self.metrics is not None:
            self.metrics.expect(
                self.app.name, ((r.topic, r.name) for r in self.app.routes.values())
            )
            self.metrics.watch(self)
        try:
            await self._run(consumer, stop)
        finally:
            if self.metrics is not None:
                self.metrics.unwatch(self)

    async def _run(self, consumer: Consumer, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            self.lanes.tasks = tg
            await consumer.start()
            self.running = True
            log.info(
                "app %s consuming %s as group %s",
                self.app.name,
                ", ".join(self.app.topics),
                self.app.group,
            )
            for callback in self.app.start_callbacks:
                callback(self)
            committer = tg.create_task(self._committer.loop(), name=f"{self.app.name}-commit")
            watcher = tg.create_task(self._stop_lanes_on(stop), name=f"{self.app.name}-stop")
            self._background = [
                tg.create_task(func(self._tasks_stop), name=f"{self.app.name}-{name}")
                for name, func in self.app.background_tasks
            ]
            try:
                await self._fetch_loop(stop)
            finally:
                committer.cancel()
                watcher.cancel()
                await self._shutdown(consumer)
        self.running = False

    async def _stop_lanes_on(self, stop: asyncio.Event) -> None:
        """At stop, lanes drop what they have not started at once (no wait for the fetch)."""
        await stop.wait()
        self.lanes.drop_unstarted()

    async def _shutdown(self, consumer: Consumer) -> None:
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        await self.lanes.close_all(deadline)
        await self._stop_background(deadline)
        await self._committer.await_acks(None, deadline)
        await self._committer.final_commit(deadline)
        abandoned = self._tracker.in_flight()
        if abandoned:
            log.warning(
                "app %s: shutdown deadline passed with %d record(s) unacknowledged; "
                "they will be redelivered",
                self.app.name,
                abandoned,
            )
        self.lanes.clear()
        # Leaving the group waits for a rebalance under way to finish first (aiokafka lets
        # the join the broker holds complete, up to the request timeout), which would overrun
        # the deadline; everything is committed by now, so leaving may be cut short: the
        # group then notices after the session timeout. At least 1 s to leave cleanly.
        try:
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                await consumer.stop()
        except TimeoutError:
            log.warning(
                "app %s: leaving the group did not finish within the shutdown deadline "
                "(a rebalance under way?); stopping without it, the group will notice after "
                "its session timeout",
                self.app.name,
            )
        log.info(
            "app %s stopped in %.2fs (handled=%d dead_lettered=%d)",
            self.app.name,
            time.monotonic() - (deadline - self.settings.shutdown_deadline_s),
            self.stats.handled,
            self.stats.dead_lettered,
        )

    async def _stop_background(self, deadline: float) -> None:
        """Ask the app's lifespan tasks to return (after the lanes: what they handled is
        the tasks' input, an outbox for example), then cancel what outlives the deadline."""
        self._tasks_stop.set()
        if not self._background:
            return
        _, late = await asyncio.wait(
            self._background, timeout=max(0.0, deadline - time.monotonic())
        )
        for task in late:
            log.warning("app %s: task %s outlived the shutdown deadline", self.app.name,
                        task.get_name())  # fmt: skip
            task.cancel()

    # -- fetching -------------------------------------------------------------------------
    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        s = self.settings
        while not stop.is_set():
            batches = await consumer.fetch(
                max_records=s.fetch_max_records, timeout_s=s.fetch_timeout_s
            )
            self._last_fetch_empty = not batches
            self.lanes.feed(batches)
            if batches:
                # the lanes' turn before the next fetch: the consumer hands over what it has
                # prefetched without waiting, so this loop could fill every lane up to
                # max_buffered_per_partition before any ran (bench/pipeline.py: a median of
                # 1,000 records waiting, decoded long before their turn)
                await asyncio.sleep(0)

    def idle(self, *, sleeping_is_idle: bool = False) -> bool:
        """Nothing buffered or being handled, nothing unacknowledged, and the last fetch
        found nothing. ``sleeping_is_idle``: records that wait for time (a backoff, a
        retry tier) do not count, when nothing else is left (a virtual clock's test kit:
        only the test moves time on)."""
        if not self._last_fetch_empty or self._tracker.in_flight():
            return False
        pending = self.lanes.pending()
        return pending == 0 or (sleeping_is_idle and pending <= self.lanes.sleeping)

    def sleeping(self) -> int:
        """Waits for time (backoffs, retry tiers) under way."""
        return self.lanes.sleeping

    # -- what bus.metrics reads at scrape time (WorkerView) -------------------------------
    @property
    def app_name(self) -> str:
        return self.app.name

    def in_flight(self) -> int:
        """Records fetched and not settled yet (buffered, being handled, or unacknowledged)."""
        return self.lanes.buffered() + self._tracker.in_flight()

    def end_offsets(self) -> dict[TopicPartition, int | None]:
        """Owned partitions and their end offsets as last seen."""
        consumer = self._consumer
        if consumer is None:
            return {}
        return {tp: consumer.highwater(tp) for tp in self.lanes.partitions()}

    # -- how far the input is handled (bus.progress) ---------------------------------------
    def handled_offsets(self) -> dict[TopicPartition, int | None]:
        """Owned partitions -> the offset before which every record has its outcome
        (handled, skipped, delayed or dead-lettered); None: none since it was assigned."""
        return self.lanes.handled_offsets()

    async def fence(self) -> Fence:
        """Where every partition of the app's topics ends now, asked of the broker."""
        return await take_fence(self.transport, self._running_consumer(), self.app.topics)

    async def behind(self, fence: Fence) -> dict[TopicPartition, tuple[int, int]]:
        """The partitions the group has not handled up to ``fence`` yet, each with (handled
        to, fence end): owned ones by this worker's progress, others by the group's
        committed offsets. Empty: everything on the topics at the fence has its outcome.

        Example::

            fence = await worker.fence()
            await wait_until(lambda: worker.behind(fence), until=lambda b: not b)
        """
        return await behind(fence, self._running_consumer(), self.handled_offsets())

    @property
    def stopping(self) -> bool:
        """Shutdown has begun (or the worker never ran): its progress will not move on."""
        return self.lanes.leaving or not self.running

    def _running_consumer(self) -> Consumer:
        if self._consumer is None:
            raise ConfigError(f"app {self.app.name}: the worker is not running")
        return self._consumer

    def _stamp_from_clock(self) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        """``codec.stamp`` from the worker's own clock and ids (tests pass theirs)."""
        return ("ce_id", self._ids().encode()), time_header(self._clock())

    # -- rebalance listener (the lanes follow the assignment) --------------------------
    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.lanes.assign(assigned)

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        await self.lanes.revoke(revoked, self.settings.shutdown_deadline_s)

    @property
    def store_fault(self) -> str | None:
        """Why a lane is held (its dedup store fails), or None; ``/readyz`` reads it."""
        return self.lanes.store_fault
