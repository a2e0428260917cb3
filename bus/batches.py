"""Batch handlers' part of the record path: a run of records in, one call, outcomes out.

A lane's consecutive records routed to one batch handler (``App.batch_handler``) are
taken together, in partition order. The call's outputs are sent like a single handler's;
the run's first offset holds every ack, so no offset of the run is committed before all
of them are acknowledged. A failing run is retried under the route's policy, then halved,
each half tried once and halved again while it fails, until the messages that fail alone
go to their retry tier or the dead-letter topic (``Outcomes.failed``).

Example::

    items = batches.take(buffer, first, route, room=500)
    settlements = await batches.settle(tp, route, items)   # for the pipeline's tail
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence

from bus.app import App
from bus.clock import Sleep
from bus.codec import decode
from bus.context import BatchContext
from bus.envelope import Envelope
from bus.errors import RecordError
from bus.message import Message
from bus.outcomes import Outcomes
from bus.publisher import child_record, lineage
from bus.record import OutgoingRecord, Record, TopicPartition
from bus.retries import RetriesExhaustedError, call_with_retries
from bus.retry_topics import RetryState, retry_state
from bus.routing import Route, as_messages
from bus.types import Stamp

__all__ = ["Batches", "Item", "Settlement"]

log = logging.getLogger("bus.worker")

#: A decoded record: the record, its envelope and its validated message.
Item = tuple[Record, Envelope, Message]

#: How a record (with the run a batch handler took after it) ends, for the pipeline's
#: tail: ``(record, run, outputs, started)`` when handled; ``(record, (), (error,
#: attempts, retry state), started)`` when it failed alone, out of tries.
Settlement = tuple[
    Record,
    Sequence[Record],
    "list[OutgoingRecord] | tuple[BaseException, int, RetryState | None]",
    float,
]


class Batches:
    """The batch handlers of one worker's app (see the module docstring)."""

    def __init__(self, app: App, outcomes: Outcomes, stamp: Stamp, sleep: Sleep) -> None:
        self.app = app
        self.outcomes = outcomes
        self._stamp = stamp
        self._sleep = sleep
        self._retry_topics = frozenset(app.retry_topics)

    def take(self, buffer: deque[Record], first: Item, route: Route, room: int) -> list[Item]:
        """``first`` and the records after it in ``buffer`` routed to the same batch
        handler, up to ``room`` in all. A record that does not decode, or belongs
        elsewhere, ends the run: offsets are tracked in order, so it must wait its turn."""
        items = [first]
        while buffer and len(items) < room:
            record = buffer[0]
            try:
                env = decode(record.headers, record.value)
                nxt = self.app.routes.get(env.type)
                if nxt is None or nxt.handler is not route.handler:
                    break
                message = nxt.message_type.from_json(env.data)
            except RecordError:
                break
            buffer.popleft()
            items.append((record, env, message))
        return items

    async def settle(self, tp: TopicPartition, route: Route, items: list[Item]) -> list[Settlement]:
        """One call of a batch handler over ``items``; on failure its retries, then
        halves. The outcomes in offset order, for the pipeline's tail."""
        started = time.perf_counter()
        try:
            records = await self._try(route, items)
        except Exception as first:
            if len(items) == 1 and tp.topic in self._retry_topics:  # one try per tier
                record = items[0][0]
                tried = retry_state(record)
                attempts = 1 if tried is None else tried.attempts + 1
                return [(record, (), (first, attempts, tried), started)]
            try:
                records, _ = await call_with_retries(
                    route.retry,
                    lambda: self._try(route, items),
                    on_failure=self.outcomes.on_retry(route),
                    sleep=self._sleep,
                    first_error=first,
                )
            except RetriesExhaustedError as failed:
                return await self._bisect(route, items, failed.error, failed.attempts)
        return [_handled(items, records, started)]

    async def _try(self, route: Route, items: list[Item]) -> list[OutgoingRecord]:
        """One try: the outputs as records, each with its cause's lineage (returned
        messages: the last message's)."""
        envelopes = [env for _, env, _ in items]
        messages = [message for _, _, message in items]
        published: list[tuple[int, Message]] = []
        if route.wants_context:
            records = [record for record, _, _ in items]
            ctx = BatchContext(envelopes, records, app=self.app.name, handler=route.name)
            result = await route.handler(messages, ctx)
            published = ctx.take_outbox()
        else:
            result = await route.handler(messages)
        returned = [(-1, m) for m in as_messages(result, route.name)]
        source, stamp = self.app.source, self._stamp
        return [
            child_record(m, source, stamp(), *lineage(envelopes[cause]))
            for cause, m in [*published, *returned]
        ]

    async def _bisect(
        self, route: Route, items: list[Item], error: BaseException, attempts: int
    ) -> list[Settlement]:
        """A run out of tries: each half is tried once, and halved again if it fails,
        until the messages that fail alone go to their retry tier or dead letter."""
        if len(items) == 1:
            return [(items[0][0], (), (error, attempts, None), 0.0)]
        middle = len(items) // 2
        settled: list[Settlement] = []
        for half in (items[:middle], items[middle:]):  # in order: offsets are tracked so
            started = time.perf_counter()
            try:
                records = await self._try(route, half)
            except Exception as exc:
                settled += await self._bisect(route, half, exc, 1)
                continue
            settled.append(_handled(half, records, started))
        return settled


def _handled(items: list[Item], records: list[OutgoingRecord], started: float) -> Settlement:
    """A run's settlement: its first record carries the outputs, the others follow it."""
    return (items[0][0], [record for record, _, _ in items[1:]], records, started)
