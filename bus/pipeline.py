"""One record's path through a handler: decode -> route -> validate -> call -> outcome.

There is one path. What differs between handlers is a property of their route
(:class:`~bus.routing.Route`), read per record, never a copy of the path:

- ``route.plain`` (no ctx, no dedup, not a batch; the common case): called with the
  message alone, with no Context (made only if a first try fails, for the retries and
  their logs). A record as bus producers write it (``codec.plain_headers``) is not even
  decoded: it is routed by its ``ce_type`` bytes, validated from its value by the model's
  own validator, and its outputs take its id and correlation id as bytes.
- a ctx or dedup route: the Envelope and a Context; with dedup, each try runs in the
  store's transaction (:mod:`bus.dedup.completions`);
- a batch route: the run of consecutive records routed to it goes to
  :mod:`bus.batches`.

Every record then ends in one of :class:`~bus.outcomes.Outcomes`: handled (outputs sent
and tracked), skipped, delayed or dead-lettered.

Example::

    await pipeline.process(lane.buffer, tp, limit=500)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from pydantic import ValidationError

from bus import tracing
from bus.app import App
from bus.batches import Batches, Settlement
from bus.clock import Sleep
from bus.codec import decode, plain_envelope, plain_headers
from bus.context import Context
from bus.dedup.completions import Completions, StoreFaultError
from bus.envelope import Envelope
from bus.errors import BusError, DuplicateMessageError, RecordError, UnknownTypeError
from bus.message import Message
from bus.outcomes import Outcomes
from bus.publisher import child_record, lineage
from bus.record import OutgoingRecord, Record, TopicPartition
from bus.retries import RetriesExhaustedError, call_with_retries
from bus.retry_topics import retry_state
from bus.routing import Route, as_messages
from bus.transports.base import Delivery
from bus.types import Stamp

__all__ = ["Pipeline"]

log = logging.getLogger("bus.worker")

#: Longest a lane keeps the event loop in one turn before it lets others run (seconds).
TURN_BUDGET_S = 0.05


class Pipeline:
    """The record path of one worker's app (see the module docstring)."""

    def __init__(
        self,
        app: App,
        outcomes: Outcomes,
        completions: Completions,
        stamp: Stamp,
        *,
        tracing_on: bool,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.app = app
        self.outcomes = outcomes
        self.completions = completions
        self.stamp = stamp
        self.tracing = tracing_on
        #: How in-process retries wait between tries.
        self.sleep = sleep
        self.batches = Batches(app, outcomes, stamp, sleep)
        # the routes mapping's own get (filled in place by App.handler): no Python frame
        self._route = app.routes.get
        self._retry_topics = frozenset(app.retry_topics)
        #: Whether records are checked for the plain path (``codec.plain_headers``): a
        #: record of a ctx or dedup handler costs more checked and then decoded than
        #: decoded at once, so an app without plain handlers (or with tracing) does not.
        self.check_plain = not tracing_on and any(r.plain for r in app.routes.values())
        #: ``ce_type`` bytes -> plain route and its model's validator (``known`` in process()),
        #: filled as types arrive.
        self._plain_routes: dict[bytes, tuple[Route, Callable[[bytes], Message]]] = {}
        #: Message classes handlers returned (a set lookup instead of an isinstance).
        self._output_types: set[type[Message]] = set()
        #: Whether debug lines are logged: asked once per run, not per record.
        self._debug = False

    async def process(self, buffer: deque[Record], tp: TopicPartition, limit: int) -> None:
        """Take up to ``limit`` records from the head of ``buffer`` (a lane's), in order,
        each to its outcome, for at most :data:`TURN_BUDGET_S` (a record started is
        finished). A stop may empty ``buffer`` meanwhile.

        One loop over the run, with what it uses bound once: per record, a call and the
        attribute lookups cost about as much as the rest of the bus's own work (a
        coroutine call for the tail alone measured +5.5k instructions per record). Every
        route kind ends in the same tail (send, count, track): a plain route's result
        goes there directly, the others' as :data:`Settlement` tuples in offset order.
        """
        self._debug = debug = log.isEnabledFor(logging.DEBUG)
        check_plain, plain_routes = self.check_plain, self._plain_routes
        output_types, is_new_output_type = self._output_types, self._is_new_output_type
        stamp, source = self.stamp, self.app.source
        outcomes = self.outcomes
        send, track, stats = outcomes.transport.send, outcomes.tracker.add, outcomes.stats
        route_stats, metrics_on = outcomes.route_stats, outcomes.metrics is not None
        perf_counter = time.perf_counter
        settlements: tuple[Settlement, ...] | list[Settlement]
        done = 0
        # A turn also ends after TURN_BUDGET_S: handlers that never await (slow synchronous
        # work) would otherwise hold the event loop for a whole run, and with it SIGTERM,
        # /healthz and the other lanes.
        turn_ends = perf_counter() + TURN_BUDGET_S
        while buffer and done < limit:
            if done and perf_counter() > turn_ends:
                break
            record = buffer.popleft()
            done += 1
            env: Envelope | None = None
            try:
                headers = plain_headers(record.headers) if check_plain else None
                known = None if headers is None else plain_routes.get(headers["ce_type"])
                if known is None:
                    env = (
                        decode(record.headers, record.value)
                        if headers is None
                        else plain_envelope(headers, record.value)
                    )
                    route = self._route(env.type)
                    if route is None:
                        self._skip_or_raise(record, tp, env)
                        continue
                    if headers is not None and route.plain:
                        known = (route, route.message_type.json_validator())
                        plain_routes[headers["ce_type"]] = known
                    message = route.message_type.from_json(env.data)
                else:
                    route, validate = known
                    message = validate(record.value or b"")
            except RecordError as exc:
                await outcomes.dead_letter(record, exc.reason, exc, handler=None, attempts=0)
                continue
            except ValidationError as exc:  # a plain route's validator, called directly
                assert known is not None
                invalid = known[0].message_type.invalid_payload(exc)
                invalid.__cause__ = exc
                await outcomes.dead_letter(
                    record, invalid.reason, invalid, handler=None, attempts=0
                )
                continue
            if env is not None and not (route.plain and not self.tracing):
                if route.batch:
                    items = self.batches.take(buffer, (record, env, message), route, limit - done)
                    done += len(items) - 1
                    settlements = await self.batches.settle(tp, route, items)
                elif self.tracing:
                    settlements = await self._settle_in_span(record, tp, env, route, message)
                else:
                    settlements = await self._settle(record, tp, env, route, message)
            else:
                started = perf_counter()
                try:
                    result = await route.handler(message)
                    if headers is None:
                        assert env is not None
                        correlation, causation, trace = lineage(env)
                    else:
                        causation = headers["ce_id"]
                        correlation = headers.get("ce_correlationid") or causation
                        trace = headers.get("ce_traceparent")
                    # the usual single output: no list of messages (isinstance of a pydantic
                    # model class goes through ABCMeta's __instancecheck__, ~800 instructions)
                    if type(result) in output_types or is_new_output_type(result):
                        records = [
                            child_record(result, source, stamp(), correlation, causation, trace)
                        ]
                    else:
                        outputs = as_messages(result, route.name)
                        records = self._records(outputs, (correlation, causation, trace))
                except Exception as first:
                    if env is None:
                        assert headers is not None
                        env = plain_envelope(headers, record.value)
                    ctx = Context(env, record, app=self.app.name, handler=route.name)
                    failed = await self._after_first_try(
                        record, tp, env, route, message, ctx, first
                    )
                    if failed is None:
                        continue
                    records = failed
                settlements = ((record, (), records, started),)
            # the one tail: every handled record's outputs are sent, counted and tracked here
            for handled, run, outcome, started in settlements:
                if type(outcome) is not list:  # a batch's message that failed alone
                    await outcomes.failed(handled, route, *outcome)
                    continue
                handled_at = perf_counter()
                acks: list[Delivery] = []
                try:
                    for out in outcome:
                        acks.append(await send(out))
                except BusError as exc:
                    if exc.retryable:
                        raise
                    for rejected in (handled, *run):
                        await outcomes.dead_letter(
                            rejected, "output_rejected", exc, handler=route.name, attempts=1
                        )
                    continue
                stats.handled += 1
                stats.emitted += len(outcome)
                if metrics_on:
                    (route_stats.get(route.name) or outcomes.stats_of(route)).handled(
                        handled_at - started, perf_counter() - handled_at, outcome
                    )
                track(tp, handled.offset, acks, outcome)
                if run:  # a batch's other records: committed with its first, after its acks
                    outcomes.followed(tp, route, run)
                if route.dedup is not None:
                    assert env is not None
                    self.completions.track(route, env, acks)
                if debug:
                    self._log_handled(handled, env, route, outcome)

    def _is_new_output_type(self, result: object) -> bool:
        """Whether ``result`` is a message; its class is remembered if so."""
        if not isinstance(result, Message):
            return False
        self._output_types.add(type(result))
        return True

    def _skip_or_raise(self, record: Record, tp: TopicPartition, env: Envelope) -> None:
        """A type without a handler: skipped if known or allowed, else UnknownTypeError."""
        if env.type in self.app.registry or self.app.on_unknown_type == "skip":
            self.outcomes.skipped(record, tp)
            return
        raise UnknownTypeError(
            f"type {env.type!r} has no registered model and no handler in app "
            f"{self.app.name!r} (handled: {', '.join(sorted(self.app.routes))})"
        )

    async def _settle_in_span(
        self, record: Record, tp: TopicPartition, env: Envelope, route: Route, message: Message
    ) -> tuple[Settlement, ...]:
        """:meth:`_settle` in an OpenTelemetry span; outputs carry the span's context."""
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
            return await self._settle(record, tp, env, route, message)

    async def _settle(
        self, record: Record, tp: TopicPartition, env: Envelope, route: Route, message: Message
    ) -> tuple[Settlement, ...]:
        """A record with its Envelope (a handler that takes a Context, has dedup, or runs
        in a span): its outputs for the tail, or nothing when it ended otherwise.

        A :class:`StoreFaultError` (the dedup store failed, not the handler) leaves with
        ``record`` on it: the worker puts it back and holds the lane."""
        try:
            if route.dedup is not None:
                done = await self.completions.done_before(route, env)
                if done is not None:
                    await self.completions.already_done(record, route, done)
                    return ()
            ctx = Context(env, record, app=self.app.name, handler=route.name)
            started = time.perf_counter()
            try:
                records = await self._try(route, message, ctx)  # the happy path: one plain call
            except Exception as first:
                failed = await self._after_first_try(record, tp, env, route, message, ctx, first)
                if failed is None:
                    return ()
                records = failed
        except StoreFaultError as fault:
            fault.record = record
            raise
        return ((record, (), records, started),)

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
        if isinstance(first, StoreFaultError):
            raise first  # not the handler's failure: no retries, no dead letter
        if isinstance(first, DuplicateMessageError):
            await self.completions.lost_race(record, route, env)
            return None
        tried = retry_state(record) if tp.topic in self._retry_topics else None
        if tried is not None:  # one try per tier
            await self.outcomes.failed(record, route, first, tried.attempts + 1, tried)
            return None
        try:
            outputs, _ = await call_with_retries(
                route.retry,
                lambda: self._try(route, message, ctx),
                on_failure=self.outcomes.on_retry(route, ctx.logger),
                sleep=self.sleep,
                first_error=first,
            )
            return outputs
        except RetriesExhaustedError as failed:
            if isinstance(failed.error, StoreFaultError):
                raise failed.error from None
            if isinstance(failed.error, DuplicateMessageError):
                await self.completions.lost_race(record, route, env)
            else:
                await self.outcomes.failed(record, route, failed.error, failed.attempts, None)
            return None

    async def _try(self, route: Route, message: Message, ctx: Context) -> list[OutgoingRecord]:
        """One try: the handler's outputs as records; with dedup, inside its transaction."""
        env = ctx.envelope
        if route.dedup is None:
            return self._records(await _call(route, message, ctx), lineage(env))

        async def attempt() -> list[OutgoingRecord]:
            return self._records(await _call(route, message, ctx), lineage(env))

        return await self.completions.run_in_transaction(route, env, ctx, attempt)

    def _records(
        self, outputs: list[Message], parent: tuple[bytes, bytes, bytes | None]
    ) -> list[OutgoingRecord]:
        """The records of ``outputs``; ``parent`` is ``publisher.lineage`` of the record."""
        source, stamp = self.app.source, self.stamp
        correlation, causation, trace = parent
        records = []
        for m in outputs:  # a loop, not a comprehension: no extra frame per record
            records.append(child_record(m, source, stamp(), correlation, causation, trace))
        return records

    def _log_handled(
        self, record: Record, env: Envelope | None, route: Route, records: list[OutgoingRecord]
    ) -> None:
        """The debug line of a handled record (``env`` None: a plain record, not decoded)."""
        env = env or decode(record.headers, record.value)
        Context(env, record, app=self.app.name, handler=route.name).logger.debug(
            "handled by %s, emitted %d record(s)", route.name, len(records)
        )


async def _call(route: Route, message: Message, ctx: Context) -> list[Message]:
    """One call of the handler: what it published and returned, in that order."""
    ctx.take_outbox()  # a failed try's publishes are discarded
    if route.wants_context:
        result = await route.handler(message, ctx)
    else:
        result = await route.handler(message)
    published = ctx.take_outbox()
    returned = as_messages(result, route.name)
    return [*published, *returned] if published else returned
