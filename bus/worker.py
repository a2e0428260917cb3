"""The consume loop: records in, handlers called, outputs sent, offsets committed.

One :class:`Worker` runs one :class:`~bus.app.App` as one member of its consumer group::

    fetch loop --records--> lane per partition (in order; up to max_concurrency at once)
      lane: decode -> route -> validate -> handler (retries) -> encode outputs -> send
            (a bad record or a handler out of tries -> dead-letter record -> send)
      OffsetTracker <- (offset, acks of what was sent)
    commit loop: settle acknowledged prefix -> consumer.commit (also on revoke and stop)

At-least-once: an offset is committed only once its handler finished and everything it
emitted (or its dead letter) was acknowledged. A failed send is sent again (same record,
same id: downstream deduplication recognises it) before its offset can be committed.

Shutdown (``stop`` set): stop fetching, finish the record each lane is on, drop records
buffered but not started (they are redelivered from the committed offset), wait for the
acks, commit, leave the group; everything within ``shutdown_deadline_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bus import tracing
from bus.app import App
from bus.codec import decode, plain_envelope, plain_headers
from bus.context import Context
from bus.dead_letters import dead_letter, dead_letter_topic, without_original
from bus.dedup.base import DedupEntry, DedupKey, DedupStore
from bus.envelope import Envelope
from bus.errors import (
    BusError,
    CommitFailedError,
    DuplicateMessageError,
    HandlerResultError,
    MessageTooLargeError,
    RecordError,
    UnknownTypeError,
)
from bus.ids import new_id
from bus.message import Message
from bus.metrics import NO_HANDLER, HandlerStats, Metrics, default_metrics
from bus.offsets import OffsetTracker
from bus.publisher import child_record, lineage
from bus.record import OutgoingRecord, Record, TopicPartition
from bus.retries import RetriesExhaustedError, call_with_retries
from bus.retry_topics import RetryState, origin_record, retry_record, retry_state, retry_topic
from bus.routing import Route
from bus.stamping import stamp, time_header, utc_now
from bus.transports.base import Consumer, Delivery, Transport
from bus.types import OffsetReset

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


@dataclass(slots=True)
class WorkerStats:
    """Counters since start: ``handled + dead_lettered + skipped + delayed`` = records finished."""

    handled: int = 0
    emitted: int = 0
    dead_lettered: int = 0
    #: Records sent to a retry topic (each comes back as a record of that topic).
    delayed: int = 0
    #: Records whose handler had completed them already (dedup): not run again.
    duplicates: int = 0
    skipped: int = 0
    retries: int = 0
    commits: int = 0
    resent: int = 0


class _Lane:
    __slots__ = ("buffer", "closing", "paused", "retry", "task", "tp", "wake")

    def __init__(self, tp: TopicPartition, *, retry: bool) -> None:
        self.tp = tp
        #: A retry-topic partition: records are taken one at a time, when due.
        self.retry = retry
        self.buffer: deque[Record] = deque()
        self.wake = asyncio.Event()
        self.closing = False
        self.paused = False
        self.task: asyncio.Task[None] | None = None


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
    ) -> None:
        self.app = app
        self.transport = transport
        self.settings = settings or WorkerSettings()
        self.stats = WorkerStats()
        self._clock = clock
        self._ids = ids
        #: The ce_id and ce_time headers of each emitted record: from one clock read when
        #: the clock and the ids are the defaults (``codec.stamp``), else from these two.
        self._stamp: Callable[[], tuple[tuple[str, bytes], tuple[str, bytes]]] = (
            stamp if clock is utc_now and ids is new_id else self._stamp_from_clock
        )
        self._tracker = OffsetTracker()
        # the routes mapping's own get (filled in place by App.handler): no Python frame
        self._route = app.routes.get
        #: Message classes handlers returned (a set lookup instead of an isinstance).
        self._output_types: set[type[Message]] = set()
        #: Whether debug lines are logged: asked once per lane batch, not per record.
        self._debug = log.isEnabledFor(logging.DEBUG)
        #: ``ce_type`` bytes -> route and its model's validator (``Message.json_validator``), for
        #: plain handlers (no ctx, no dedup) only, filled as their types arrive.
        self._plain_routes: dict[bytes, tuple[Route, Callable[[bytes], Message]]] = {}
        self._lanes: dict[TopicPartition, _Lane] = {}
        self._retry_topics = frozenset(app.retry_topics)
        #: Completions whose outputs are in flight: marked sent once all are acknowledged.
        self._unsent: deque[tuple[DedupStore[Any], DedupKey, list[Delivery]]] = deque()
        #: The keys in ``_unsent``: outputs this worker sent and tracks until acknowledged.
        self._unsent_keys: Counter[DedupKey] = Counter()
        self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        self._consumer: Consumer | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._last_fetch_empty = False
        #: Set once shutdown starts: partitions assigned from then on get no lane.
        self._leaving = False
        self.running = False
        #: Where this worker's metrics go (None: not recorded); default: the process's.
        self.metrics = (metrics or default_metrics()) if self.settings.metrics else None
        self._tracing = False  # decided in run(): the application may set a provider late
        #: Whether records are checked for the plain path (``codec.plain_headers``): decided
        #: in run() too, from the tracing switch and the app's handlers.
        self._check_plain = True
        #: Handler name -> its metric counters, bound on first use.
        self._route_stats: dict[str, HandlerStats] = {}

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully."""
        self.app.validate()
        self._tracing = self.settings.tracing and tracing.enabled()
        # a record of a ctx or dedup handler costs more checked and then decoded than
        # decoded at once: an app without plain handlers does not check
        self._check_plain = not self._tracing and any(
            r.dedup is None and not r.wants_context for r in self.app.routes.values()
        )
        consumer = self.transport.consumer(
            self.app.topics,
            group=self.app.group,
            offset_reset=self.settings.offset_reset,
            listener=self,
        )
        self._consumer = consumer
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
            self._tg = tg
            await consumer.start()
            self.running = True
            log.info(
                "app %s consuming %s as group %s",
                self.app.name,
                ", ".join(self.app.topics),
                self.app.group,
            )
            committer = tg.create_task(self._commit_loop(), name=f"{self.app.name}-commit")
            watcher = tg.create_task(self._stop_lanes_on(stop), name=f"{self.app.name}-stop")
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
        for lane in self._lanes.values():
            _close(lane)

    async def _shutdown(self, consumer: Consumer) -> None:
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        self._leaving = True
        lanes = list(self._lanes.values())
        await self._close_lanes(lanes, deadline)
        await self._await_acks(None, deadline)
        await self._final_commit(deadline)
        abandoned = self._tracker.in_flight()
        if abandoned:
            log.warning(
                "app %s: shutdown deadline passed with %d record(s) unacknowledged; "
                "they will be redelivered",
                self.app.name,
                abandoned,
            )
        self._lanes.clear()
        # Leaving the group waits for a rebalance under way to finish first (aiokafka lets
        # the join the broker holds complete, up to the request timeout), which would overrun
        # the deadline; everything is committed by now, so leaving may be cut short: the
        # group then notices after the session timeout. At least 1 s to leave cleanly.
        try:
            await asyncio.wait_for(consumer.stop(), max(1.0, deadline - time.monotonic()))
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

    async def _final_commit(self, deadline: float) -> None:
        """Commit what is settled, within the deadline (at least half a second).

        During a rebalance aiokafka's commit waits for the group (its commit lock is held
        while the broker holds the join; a kill-storm run saw 22 s), which overran the
        deadline and failed the shutdown. What is not committed is redelivered to the
        partition's next owner: at-least-once holds, and dedup drops the copies.
        """
        try:
            async with asyncio.timeout(max(0.5, deadline - time.monotonic())):
                await self._commit()
        except CommitFailedError:
            pass
        except TimeoutError:
            log.warning(
                "app %s: the last commit did not finish within the shutdown deadline (a "
                "rebalance under way?); records handled since the previous commit will be "
                "redelivered",
                self.app.name,
            )

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
            for tp, records in batches.items():
                lane = self._lanes.get(tp)
                if lane is None or lane.closing:
                    continue  # revoked meanwhile: the new owner reads them from the commit
                lane.buffer.extend(records)
                lane.wake.set()
                if len(lane.buffer) >= s.max_buffered_per_partition and not lane.paused:
                    lane.paused = True
                    consumer.pause([tp])
            if batches:
                # the lanes' turn before the next fetch: the consumer hands over what it has
                # prefetched without waiting, so this loop could fill every lane up to
                # max_buffered_per_partition before any ran (bench/pipeline.py: a median of
                # 1,000 records waiting, decoded long before their turn)
                await asyncio.sleep(0)

    def idle(self) -> bool:
        """Nothing buffered, nothing unacknowledged, and the last fetch found nothing."""
        return (
            self._last_fetch_empty
            and not any(lane.buffer for lane in self._lanes.values())
            and self._tracker.in_flight() == 0
        )

    # -- what bus.metrics reads at scrape time (WorkerView) -------------------------------
    @property
    def app_name(self) -> str:
        return self.app.name

    def in_flight(self) -> int:
        """Records fetched and not settled yet (buffered, being handled, or unacknowledged)."""
        return sum(len(lane.buffer) for lane in self._lanes.values()) + self._tracker.in_flight()

    def end_offsets(self) -> dict[TopicPartition, int | None]:
        """Owned partitions and their end offsets as last seen."""
        consumer = self._consumer
        if consumer is None:
            return {}
        return {tp: consumer.highwater(tp) for tp in self._lanes}

    def _stamp_from_clock(self) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        """``codec.stamp`` from the worker's own clock and ids (tests pass theirs)."""
        return ("ce_id", self._ids().encode()), time_header(self._clock())

    def _bind_stats(self, route: Route) -> HandlerStats:
        assert self.metrics is not None
        stats = self.metrics.handler_stats(self.app.name, route.topic, route.name)
        self._route_stats[route.name] = stats
        return stats

    # -- rebalance listener ---------------------------------------------------------------
    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        assert self._tg is not None
        if self._leaving:
            # A rebalance that completes while the consumer leaves (aiokafka finishes the
            # join under way first): a lane started now would wait for records forever and
            # keep the worker from returning. The partitions go to others once we left.
            log.debug("app %s leaving: ignoring assignment %s", self.app.name, sorted(assigned))
            return
        for tp in assigned:
            lane = _Lane(tp, retry=tp.topic in self._retry_topics)
            lane.task = self._tg.create_task(
                self._lane_loop(lane), name=f"{self.app.name}-{tp.topic}-{tp.partition}"
            )
            self._lanes[tp] = lane
        log.debug("app %s assigned %s", self.app.name, sorted(assigned))

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        lanes = [self._lanes.pop(tp) for tp in revoked if tp in self._lanes]
        await self._close_lanes(lanes, deadline)
        for tp in revoked:
            await self._await_acks(tp, deadline)
        try:
            await self._commit(only=revoked)
        except CommitFailedError as exc:
            log.warning("app %s: commit on revoke failed: %s", self.app.name, exc)
        for tp in revoked:
            self._tracker.forget(tp)
        log.debug("app %s revoked %s", self.app.name, sorted(revoked))

    async def _close_lanes(self, lanes: list[_Lane], deadline: float) -> None:
        tasks = []
        for lane in lanes:
            _close(lane)
            if lane.task is not None:
                tasks.append(lane.task)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in late:
            task.cancel()

    # -- per-partition lanes --------------------------------------------------------------
    async def _lane_loop(self, lane: _Lane) -> None:
        s = self.settings
        limit = 1 if lane.retry else s.fetch_max_records
        while True:
            while not lane.buffer:
                if lane.closing:
                    return
                lane.wake.clear()
                await lane.wake.wait()
            if lane.retry and not await self._wait_until_due(lane):
                continue
            async with self._slots:
                self._debug = log.isEnabledFor(logging.DEBUG)
                await self._process_run(lane.buffer, lane.tp, limit)
            self._tracker.settle(lane.tp)  # release what is acknowledged already
            if lane.paused and len(lane.buffer) < s.max_buffered_per_partition // 2:
                lane.paused = False
                if self._consumer is not None and not lane.closing:
                    self._consumer.resume([lane.tp])
            await asyncio.sleep(0)  # let other lanes and the fetch loop run

    async def _wait_until_due(self, lane: _Lane) -> bool:
        """Wait until the head record of a retry lane is due; False if the lane changed."""
        state = retry_state(lane.buffer[0])
        if state is None:
            return True  # not written by bus: handled as a first try
        wait_s = state.due_ms / 1000 - self._clock().timestamp()
        if wait_s <= 0:
            return True
        lane.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.wake.wait(), wait_s)  # woken early by closing
        return False

    async def _process_run(self, buffer: deque[Record], tp: TopicPartition, limit: int) -> None:
        """Handle up to ``limit`` records from the head of ``buffer`` (a lane's), in order,
        each to an explicit outcome: handled, skipped, delayed or dead-lettered.

        A handler without ctx and without dedup (the common case) runs in this loop: no
        Context (made only if a first try fails, for the retries and their logs), no
        transaction, one plain call. A record as bus producers write it
        (``codec.plain_headers``) is not decoded for it either: it is routed by its
        ``ce_type`` bytes, its outputs take its id and correlation id as bytes, and the
        envelope is built only if a first try fails. One loop over the run rather than a
        coroutine per record, with what it uses bound once per run: per record, the call
        and the attribute lookups cost about as much as the rest of the bus's own work.
        A stop may empty ``buffer`` meanwhile.
        """
        check_plain, plain_routes = self._check_plain, self._plain_routes
        output_types, is_new_output_type = self._output_types, self._is_new_output_type
        stamp, source = self._stamp, self.app.source
        send, track = self.transport.send, self._tracker.add
        stats, route_stats, debug = self.stats, self._route_stats, self._debug
        metrics_on = self.metrics is not None
        perf_counter = time.perf_counter
        done = 0
        while buffer and done < limit:
            record = buffer.popleft()
            done += 1
            env: Envelope | None = None
            try:
                named = plain_headers(record.headers) if check_plain else None
                plain = None if named is None else plain_routes.get(named["ce_type"])
                if plain is None:
                    env = (
                        decode(record.headers, record.value)
                        if named is None
                        else plain_envelope(named, record.value)
                    )
                    route = self._route(env.type)
                    if route is None:
                        self._skip_or_raise(record, tp, env)
                        continue
                    if named is not None and route.dedup is None and not route.wants_context:
                        plain = (route, route.message_type.json_validator())
                        plain_routes[named["ce_type"]] = plain
                    message = route.message_type.from_json(env.data)
                else:
                    route, validate = plain
                    message = validate(record.value or b"")
            except RecordError as exc:
                await self._dead_letter(record, exc.reason, exc, handler=None, attempts=0)
                continue
            except ValidationError as exc:  # a plain route's validator, called directly
                assert plain is not None  # the plain branch's validator, not from_json
                invalid = plain[0].message_type.invalid_payload(exc)
                invalid.__cause__ = exc
                await self._dead_letter(record, invalid.reason, invalid, handler=None, attempts=0)
                continue
            if env is not None:
                if self._tracing:
                    await self._handle_in_span(record, tp, env, route, message)
                    continue
                if route.dedup is not None or route.wants_context:
                    await self._handle(record, tp, env, route, message)
                    continue
            started = perf_counter()
            try:
                result = await route.handler(message)
                if named is None:
                    assert env is not None
                    correlation, causation, trace = lineage(env)
                else:
                    causation = named["ce_id"]
                    correlation = named.get("ce_correlationid") or causation
                    trace = named.get("ce_traceparent")
                # the usual single output: no list of messages (isinstance of a pydantic
                # model class goes through ABCMeta's __instancecheck__, ~800 instructions)
                if type(result) in output_types or is_new_output_type(result):
                    records = [child_record(result, source, stamp(), correlation, causation, trace)]
                else:
                    outputs = _as_messages(result, route.name)
                    records = self._records(outputs, (correlation, causation, trace))
            except Exception as first:
                if env is None:
                    assert named is not None
                    env = plain_envelope(named, record.value)
                ctx = Context(env, record, app=self.app.name, handler=route.name)
                failed = await self._after_first_try(record, tp, env, route, message, ctx, first)
                if failed is None:
                    continue
                records = failed
            # _send_outputs and _handled inline: a call per record cost more than these lines
            handled_at = perf_counter()
            acks: list[Delivery] = []
            try:
                for out in records:
                    acks.append(await send(out))
            except BusError as exc:
                if exc.retryable:
                    raise
                await self._dead_letter(
                    record, "output_rejected", exc, handler=route.name, attempts=1
                )
                continue
            stats.handled += 1
            stats.emitted += len(records)
            if metrics_on:
                (route_stats.get(route.name) or self._bind_stats(route)).handled(
                    handled_at - started, perf_counter() - handled_at, records
                )
            track(tp, record.offset, acks, records)
            if debug:
                self._log_handled(record, env, route, records)

    def _is_new_output_type(self, result: object) -> bool:
        """Whether ``result`` is a message; its class is remembered if so."""
        if not isinstance(result, Message):
            return False
        self._output_types.add(type(result))
        return True

    def _skip_or_raise(self, record: Record, tp: TopicPartition, env: Envelope) -> None:
        """A type without a handler: skipped if known or allowed, else UnknownTypeError."""
        if env.type in self.app.registry or self.app.on_unknown_type == "skip":
            self.stats.skipped += 1
            if self.metrics is not None:
                labels = (self.app.name, record.topic, NO_HANDLER)
                self.metrics.handler_stats(*labels).skipped += 1
            self._tracker.add(tp, record.offset)
            return
        raise UnknownTypeError(
            f"type {env.type!r} has no registered model and no handler in app "
            f"{self.app.name!r} (handled: {', '.join(sorted(self.app.routes))})"
        )

    async def _handle_in_span(
        self, record: Record, tp: TopicPartition, env: Envelope, route: Route, message: Message
    ) -> None:
        """:meth:`_handle` in an OpenTelemetry span; outputs carry the span's context."""
        with tracing.handler_span(
            env,
            app=self.app.name,
            handler=route.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        ) as traceparent:
            if traceparent != env.traceparent:
                env = env._replace(traceparent=traceparent)
            await self._handle(record, tp, env, route, message)

    async def _handle(
        self, record: Record, tp: TopicPartition, env: Envelope, route: Route, message: Message
    ) -> None:
        """A handler that takes a Context, or one with dedup."""
        if route.dedup is not None:
            done = await route.dedup.get(DedupKey(route.name, env.source, env.id))
            if done is not None:
                await self._already_done(record, route, done)
                return
        ctx = Context(env, record, app=self.app.name, handler=route.name)
        started = time.perf_counter()
        try:
            records = await self._try(route, message, ctx)  # the happy path: one plain call
        except Exception as first:
            failed = await self._after_first_try(record, tp, env, route, message, ctx, first)
            if failed is None:
                return
            records = failed
        await self._send_outputs(record, tp, env, route, records, started)

    async def _after_first_try(
        self,
        record: Record,
        tp: TopicPartition,
        env: Envelope,
        route: Route,
        message: Message,
        ctx: Context,
        first: Exception,
    ) -> list[OutgoingRecord] | None:
        """The outputs of a later try, or None: delayed, dead-lettered or a lost race."""
        if isinstance(first, DuplicateMessageError):
            await self._lost_race(record, route, env)
            return None
        tried = retry_state(record) if tp.topic in self._retry_topics else None
        if tried is not None:  # one try per tier
            await self._after_failure(record, route, first, tried.attempts + 1, tried)
            return None
        try:
            return await self._retry(route, message, ctx, first)
        except RetriesExhaustedError as failed:
            if isinstance(failed.error, DuplicateMessageError):
                await self._lost_race(record, route, env)
            else:
                await self._after_failure(record, route, failed.error, failed.attempts, None)
            return None

    async def _send_outputs(
        self,
        record: Record,
        tp: TopicPartition,
        env: Envelope,
        route: Route,
        records: list[OutgoingRecord],
        started: float,
    ) -> None:
        """Send a handled record's outputs and track its offset with their acks."""
        handled_at = time.perf_counter()
        acks: list[Delivery] = []
        send = self.transport.send
        try:
            for out in records:
                acks.append(await send(out))
        except BusError as exc:
            if exc.retryable:
                raise
            await self._dead_letter(record, "output_rejected", exc, handler=route.name, attempts=1)
            return
        self._handled(record, tp, env, route, records, acks, started, handled_at)

    def _handled(
        self,
        record: Record,
        tp: TopicPartition,
        env: Envelope,
        route: Route,
        records: list[OutgoingRecord],
        acks: list[Delivery],
        started: float,
        handled_at: float,
    ) -> None:
        """Count a handled record of a ctx or dedup handler and track its offset with the
        acks of its outputs (:meth:`_process_run` does the same inline for plain ones)."""
        stats = self.stats
        stats.handled += 1
        stats.emitted += len(records)
        if self.metrics is not None:
            route_stats = self._route_stats.get(route.name) or self._bind_stats(route)
            route_stats.handled(handled_at - started, time.perf_counter() - handled_at, records)
        self._tracker.add(tp, record.offset, acks, records)
        if route.dedup is not None:
            self._track_unsent(route.dedup, DedupKey(route.name, env.source, env.id), acks)
        if self._debug:
            self._log_handled(record, env, route, records)

    def _log_handled(
        self,
        record: Record,
        env: Envelope | None,
        route: Route,
        records: list[OutgoingRecord],
    ) -> None:
        """The debug line of a handled record (``env`` None: a plain record, not decoded)."""
        env = env or decode(record.headers, record.value)
        Context(env, record, app=self.app.name, handler=route.name).logger.debug(
            "handled by %s, emitted %d record(s)", route.name, len(records)
        )

    async def _try(self, route: Route, message: Message, ctx: Context) -> list[OutgoingRecord]:
        """One try: the handler's outputs as records; with dedup, inside its transaction."""
        env = ctx.envelope
        if route.dedup is None:
            return self._records(await self._attempt(route, message, ctx), lineage(env))
        async with route.dedup.transaction(DedupKey(route.name, env.source, env.id)) as tx:
            ctx.use_transaction(tx)
            try:
                outputs = await self._attempt(route, message, ctx)
            finally:
                ctx.use_transaction(None)
            records = self._records(outputs, lineage(env))
            tx.complete(records)  # committed with the handler's effect, or not at all
        return records

    def _records(
        self, outputs: list[Message], parent: tuple[bytes, bytes, bytes | None]
    ) -> list[OutgoingRecord]:
        """The records of ``outputs``; ``parent`` is ``publisher.lineage`` of the record."""
        source, stamp = self.app.source, self._stamp
        correlation, causation, trace = parent
        records = []
        for m in outputs:  # a loop, not a comprehension: no extra frame per record
            records.append(child_record(m, source, stamp(), correlation, causation, trace))
        return records

    async def _lost_race(self, record: Record, route: Route, env: Envelope) -> None:
        """Another consumer committed this message's completion first: take its result."""
        assert route.dedup is not None
        done = await route.dedup.get(DedupKey(route.name, env.source, env.id))
        if done is None:  # recorded, then purged meanwhile: nothing left to re-send
            done = DedupEntry(DedupKey(route.name, env.source, env.id), (), 0, sent=True)
        await self._already_done(record, route, done)

    async def _already_done(self, record: Record, route: Route, done: DedupEntry) -> None:
        """A message the handler completed before: acknowledged without running it again.

        Its recorded outputs are sent again (same records, same CloudEvents ids) unless
        they are known to be acknowledged, in case the earlier run died before that. Outputs
        this worker sent and still tracks are not sent again either: the earlier run did
        not die, and its outputs are re-sent if refused before its offset is committed (a
        copy arriving before the next commit would otherwise re-send every output).
        """
        in_flight = self._unsent_keys[done.key] > 0
        outputs = () if done.sent or in_flight else done.outputs
        acks = [await self.transport.send(r) for r in outputs]
        self.stats.duplicates += 1
        if self.metrics is not None:
            self.metrics.handler_stats(self.app.name, route.topic, route.name).duplicates += 1
        self._tracker.add(record.topic_partition, record.offset, acks, outputs)
        if acks and route.dedup is not None:
            self._track_unsent(route.dedup, done.key, acks)
        log.info(
            "app %s: %s already handled %s[%d]@%d (dedup); re-sent %d output(s)",
            self.app.name,
            route.name,
            record.topic,
            record.partition,
            record.offset,
            len(outputs),
            extra=self._log_fields(record, route.name),
        )

    def _track_unsent(self, store: DedupStore[Any], key: DedupKey, acks: list[Delivery]) -> None:
        self._unsent.append((store, key, acks))
        self._unsent_keys[key] += 1

    @staticmethod
    async def _attempt(route: Route, message: Message, ctx: Context) -> list[Message]:
        """One try of the handler: its outputs, published and returned."""
        ctx.take_outbox()  # a failed try's publishes are discarded
        if route.wants_context:
            result = await route.handler(message, ctx)
        else:
            result = await route.handler(message)
        published = ctx.take_outbox()
        returned = _as_messages(result, route.name)
        return [*published, *returned] if published else returned

    async def _retry(
        self, route: Route, message: Message, ctx: Context, first: Exception
    ) -> list[OutgoingRecord]:
        """The tries after a failed first one, under the route's policy."""

        def on_failure(attempt_no: int, error: BaseException) -> None:
            self.stats.retries += 1
            if self.metrics is not None:
                self.metrics.handler_error(self.app.name, route.name, error)
                self.metrics.handler_retry(self.app.name, route.name)
            ctx.logger.warning("try %d of %s failed: %r; retrying", attempt_no, route.name, error)

        outputs, _ = await call_with_retries(
            route.retry,
            lambda: self._try(route, message, ctx),
            on_failure=on_failure,
            first_error=first,
        )
        return outputs

    async def _after_failure(
        self,
        record: Record,
        route: Route,
        error: BaseException,
        attempts: int,
        tried: RetryState | None,
    ) -> None:
        """A record whose tries here failed goes to its next retry tier or is dead-lettered."""
        if self.metrics is not None:
            self.metrics.handler_error(self.app.name, route.name, error)
        policy = route.retry
        tier = policy.next_tier(error, None if tried is None else tried.tier)
        if tier is None:
            permanent = policy.is_permanent(error)
            log.error(
                "app %s: %s failed after %d attempt(s): %r",
                self.app.name,
                route.name,
                attempts,
                error,
                extra=self._log_fields(record, route.name),
            )
            original = record if tried is None else origin_record(record, tried)
            reason = "permanent_error" if permanent else "handler_failed"
            await self._dead_letter(
                original, reason, error, handler=route.name, attempts=attempts, consumed=record
            )
            return
        delay_s = policy.tiers_s[tier]
        due_ms = int((self._clock().timestamp() + delay_s) * 1000)
        topic = retry_topic(self.app.group, delay_s)
        out = retry_record(
            record, topic=topic, tier=tier, attempts=attempts, due_ms=due_ms, error=error
        )
        ack = await self.transport.send(out)
        self.stats.delayed += 1
        if self.metrics is not None:
            self.metrics.handler_stats(self.app.name, route.topic, route.name).delayed += 1
        self._tracker.add(record.topic_partition, record.offset, [ack], [out])
        log.warning(
            "app %s: %s failed %d time(s) (%r); retrying in %gs via %s",
            self.app.name,
            route.name,
            attempts,
            error,
            delay_s,
            topic,
            extra=self._log_fields(record, route.name),
        )

    async def _dead_letter(
        self,
        record: Record,
        reason: str,
        error: BaseException,
        *,
        handler: str | None,
        attempts: int,
        consumed: Record | None = None,
    ) -> None:
        """Dead-letter ``record``; ``consumed`` is where it was read, when that differs
        (a retry topic): its offset is the one tracked."""
        out = dead_letter(
            record,
            topic=dead_letter_topic(record.topic, self.app.dead_letter_topic),
            reason=reason,
            error=error,
            app=self.app.name,
            handler=handler,
            attempts=attempts,
            now=self._clock(),
        )
        try:
            ack = await self.transport.send(out)
        except MessageTooLargeError:
            out, ack = await self._send_smaller(out)
        self.stats.dead_lettered += 1
        if self.metrics is not None:
            labels = (self.app.name, record.topic, handler or NO_HANDLER)
            self.metrics.handler_stats(*labels).dead_lettered += 1
            self.metrics.dead_lettered(self.app.name, record.topic, reason)
        at = consumed or record
        self._tracker.add(at.topic_partition, at.offset, [ack], [out])
        log.warning(
            "app %s dead-lettered %s[%d]@%d to %s: %s: %s",
            self.app.name,
            record.topic,
            record.partition,
            record.offset,
            out.topic,
            reason,
            error,
            extra=self._log_fields(record, handler),
        )

    def _log_fields(self, record: Record, handler: str | None) -> dict[str, object]:
        """The message fields of a log line about ``record`` (failure paths only: read
        from the headers, so they are there even when the record does not decode)."""
        headers = dict(record.headers)

        def text(name: str) -> str:
            try:
                return headers.get(name, b"").decode()
            except UnicodeDecodeError:
                return ""

        message_id = text("ce_id")
        return {
            "app": self.app.name,
            "handler": handler or "",
            "message_id": message_id,
            "message_type": text("ce_type"),
            "correlation_id": text("ce_correlationid") or message_id,
        }

    async def _send_smaller(self, out: OutgoingRecord) -> tuple[OutgoingRecord, Delivery]:
        """A record near the size limit plus the reason headers is over it: dead-letter it
        without its value, then (huge headers) without key and headers, rather than let
        the lane fail on it again on every restart."""
        try:
            smaller = without_original(out)
            return smaller, await self.transport.send(smaller)
        except MessageTooLargeError:
            smaller = without_original(out, headers_too=True)
            return smaller, await self.transport.send(smaller)

    # -- committing -----------------------------------------------------------------------
    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval_s)
            try:
                await self._commit()
            except CommitFailedError as exc:
                log.warning("app %s: commit failed (rebalance): %s", self.app.name, exc)

    async def _commit(self, only: frozenset[TopicPartition] | None = None) -> None:
        await self._resend_failed()
        await self._mark_sent()
        offsets = self._tracker.settled()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if not offsets or self._consumer is None:
            return
        started = time.perf_counter()
        await self._consumer.commit(offsets)
        if self.metrics is not None:
            self.metrics.committed(self.app.name, offsets, time.perf_counter() - started)
        self._tracker.committed(offsets)
        self.stats.commits += 1

    async def _mark_sent(self) -> None:
        """Tell dedup stores which completions' outputs are all acknowledged (in order)."""
        ready: dict[int, tuple[DedupStore[Any], list[DedupKey]]] = {}
        unsent = self._unsent
        popped: list[DedupKey] = []
        while unsent and all(a.done() for a in unsent[0][2]):
            store, key, acks = unsent.popleft()
            popped.append(key)
            if all(a.exception() is None for a in acks):  # failed ones are re-sent: unknown
                ready.setdefault(id(store), (store, []))[1].append(key)
        try:
            for store, keys in ready.values():
                try:
                    await store.mark_sent(keys)
                except BusError as exc:  # only an optimisation: a redelivery re-sends
                    log.warning("app %s: could not mark outputs sent: %s", self.app.name, exc)
        finally:
            # only now: until the store says "sent", a copy must see them as in flight here
            for key in popped:
                self._unsent_keys[key] -= 1
                if not self._unsent_keys[key]:
                    del self._unsent_keys[key]

    async def _resend_failed(self) -> None:
        failed = self._tracker.settle()
        if failed:  # one line per round: an outage fails hundreds of sends at once
            log.warning(
                "app %s: %d send(s) failed (first: to %s, %r); sending them again",
                self.app.name,
                len(failed),
                failed[0].record.topic,
                failed[0].error,
            )
        for unacked in failed:
            ack = await self.transport.send(unacked.record)
            self._tracker.replace_ack(unacked.tp, unacked.offset, unacked.index, ack)
            self.stats.resent += 1

    async def _await_acks(self, tp: TopicPartition | None, deadline: float) -> None:
        while self._tracker.in_flight(tp) and time.monotonic() < deadline:
            await self._resend_failed()
            if self._tracker.in_flight(tp):
                await asyncio.sleep(0.005)


def _close(lane: _Lane) -> None:
    lane.closing = True
    lane.buffer.clear()
    lane.wake.set()


def _as_messages(result: object, handler: str) -> list[Message]:
    if isinstance(result, Message):
        return [result]
    if result is None:
        return []
    if isinstance(result, list | tuple):
        bad = [type(m).__name__ for m in result if not isinstance(m, Message)]
        if not bad:
            return list(result)
    raise HandlerResultError(
        f"handler {handler} returned {type(result).__name__}; return a Message, a list of "
        "them, or None"
    )
