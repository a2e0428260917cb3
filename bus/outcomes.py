"""Every consumed record's end: handled, skipped, delayed to a retry tier, or dead-lettered.

Each outcome sends what it must (the handler's outputs, the retry record, the dead
letter), counts it (``WorkerStats`` and the metrics) and hands the record's offset with
the acks of what was sent to the :class:`~bus.offsets.OffsetTracker`, so "handled +
skipped + delayed + dead-lettered = consumed" holds by construction. A handled record's
outputs are sent in the one tail of :meth:`bus.pipeline.Pipeline.process` (inline: a
call per record there cost more than the rest of the tail), which counts it here.

Example (a record the handler failed on)::

    await outcomes.failed(record, route, error, attempts=3, tried=None)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bus.app import App
from bus.dead_letters import dead_letter, dead_letter_topic, without_original
from bus.errors import MessageTooLargeError
from bus.metrics import NO_HANDLER, HandlerStats, Metrics
from bus.offsets import OffsetTracker
from bus.record import OutgoingRecord, Record, TopicPartition
from bus.retry_topics import RetryState, origin_record, retry_record, retry_topic
from bus.routing import Route
from bus.transports.base import Delivery, Transport

__all__ = ["Outcomes", "WorkerStats"]

log = logging.getLogger("bus.worker")


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
    #: Offset commits made (a round with nothing new to commit makes none).
    commits: int = 0
    #: Rounds of the commit loop (and commits on revoke and at stop), made or not.
    commit_rounds: int = 0
    resent: int = 0


class Outcomes:
    """The outcomes of one worker's records (see the module docstring)."""

    def __init__(
        self,
        app: App,
        transport: Transport,
        tracker: OffsetTracker,
        stats: WorkerStats,
        metrics: Metrics | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.app = app
        self.transport = transport
        self.tracker = tracker
        self.stats = stats
        self.metrics = metrics
        self.clock = clock
        #: Handler name -> its metric counters, bound on first use.
        self.route_stats: dict[str, HandlerStats] = {}

    def stats_of(self, route: Route) -> HandlerStats:
        """The metric counters of ``route`` (metrics on only)."""
        stats = self.route_stats.get(route.name)
        if stats is None:
            assert self.metrics is not None
            stats = self.metrics.handler_stats(self.app.name, route.topic, route.name)
            self.route_stats[route.name] = stats
        return stats

    def followed(self, tp: TopicPartition, route: Route, run: Sequence[Record]) -> None:
        """The records a batch handler took after the first of a run, handled with it:
        counted, and tracked behind it (its entry holds the run's acks)."""
        self.stats.handled += len(run)
        stats = self.stats_of(route) if self.metrics is not None else None
        for record in run:
            if stats is not None:
                stats.handled(0.0, 0.0)
            self.tracker.add(tp, record.offset)

    def skipped(self, record: Record, tp: TopicPartition) -> None:
        """A record of a registered type no handler of this app takes (another app's)."""
        self.stats.skipped += 1
        if self.metrics is not None:
            labels = (self.app.name, record.topic, NO_HANDLER)
            self.metrics.handler_stats(*labels).skipped += 1
        self.tracker.add(tp, record.offset)

    async def failed(
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
            log.error(
                "app %s: %s failed after %d attempt(s): %r",
                self.app.name, route.name, attempts, error,
                extra=self.log_fields(record, route.name),
            )  # fmt: skip
            original = record if tried is None else origin_record(record, tried)
            reason = "permanent_error" if policy.is_permanent(error) else "handler_failed"
            await self.dead_letter(
                original, reason, error, handler=route.name, attempts=attempts, consumed=record
            )
            return
        await self._delay(record, route, error, attempts, tier)

    async def _delay(
        self, record: Record, route: Route, error: BaseException, attempts: int, tier: int
    ) -> None:
        """Send ``record`` to the retry topic of ``tier`` (one per delay and group)."""
        delay_s = route.retry.tiers_s[tier]
        due_ms = int((self.clock().timestamp() + delay_s) * 1000)
        topic = retry_topic(self.app.group, delay_s)
        out = retry_record(
            record, topic=topic, tier=tier, attempts=attempts, due_ms=due_ms, error=error
        )
        ack = await self.transport.send(out)
        self.stats.delayed += 1
        if self.metrics is not None:
            self.metrics.handler_stats(self.app.name, route.topic, route.name).delayed += 1
        self.tracker.add(record.topic_partition, record.offset, [ack], [out])
        log.warning(
            "app %s: %s failed %d time(s) (%r); retrying in %gs via %s",
            self.app.name, route.name, attempts, error, delay_s, topic,
            extra=self.log_fields(record, route.name),
        )  # fmt: skip

    async def dead_letter(
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
            now=self.clock(),
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
        self.tracker.add(at.topic_partition, at.offset, [ack], [out])
        log.warning(
            "app %s dead-lettered %s[%d]@%d to %s: %s: %s",
            self.app.name, record.topic, record.partition, record.offset, out.topic, reason,
            error, extra=self.log_fields(record, handler),
        )  # fmt: skip

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

    def on_retry(self, route: Route, logger: logging.LoggerAdapter[logging.Logger] | None = None
                 ) -> Callable[[int, BaseException], None]:  # fmt: skip
        """The ``on_failure`` hook of a handler's in-process retries: counted and logged."""
        out = logger or log

        def retrying(attempt_no: int, error: BaseException) -> None:
            self.stats.retries += 1
            if self.metrics is not None:
                self.metrics.handler_error(self.app.name, route.name, error)
                self.metrics.handler_retry(self.app.name, route.name)
            out.warning("try %d of %s failed: %r; retrying", attempt_no, route.name, error)

        return retrying

    def log_fields(self, record: Record, handler: str | None) -> dict[str, object]:
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
