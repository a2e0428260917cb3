"""The outbox: commands stored with the saga's state, then published by the relay.

:func:`~sagas.operations.outbox_entries` turns a transition's commands into records (pure:
the CloudEvents ``id`` is the command id, ``correlationid`` the saga id, ``causationid`` the
message that caused them, ``traceparent`` its trace); the coordinator stores them in the
same transaction as the state.
:class:`OutboxRelay` claims stored rows, publishes them in one batch (every send queued,
then every acknowledgement awaited) and deletes them: at-least-once, and a re-published
row carries the same id, so handlers' dedup drops the copy.

Fault injection for crash tests: ``fault_point=`` (or ``BUS_FAULT_POINT`` through
:class:`sagas.config.SagaConfig`) names one of :data:`FAULT_POINTS`; reaching it ends the process
at once with ``os._exit(FAULT_EXIT_CODE)`` - no cleanup, no flush, as a SIGKILL would.

Example::

    relay = OutboxRelay(store, transport, clock=utc_now)
    published = await relay.relay_all()
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bus import (
    BusError,
    ConfigError,
    Delivery,
    MessageTooLargeError,
    OutgoingRecord,
    Record,
    Transport,
    dead_letter,
    dead_letter_topic,
    without_original,
)
from sagas.operations import outbox_entries
from sagas.stores.base import OutboxEntry, SagaStore, to_ms

__all__ = ["FAULT_EXIT_CODE", "FAULT_POINTS", "FaultInjector", "OutboxRelay", "outbox_entries"]

log = logging.getLogger("sagas.outbox")

#: Where a crash can be injected, in the order a message goes through them.
FAULT_POINTS = (
    # the coordinator's transaction holds the new state and commands; it never commits
    "before_commit",
    # the state transaction committed; nothing published yet
    "after_commit_before_publish",
    # outbox rows claimed (leased); nothing published
    "after_claim_before_publish",
    # the first record of the batch acknowledged, the rest not sent
    "mid_publish",
    # every record acknowledged; rows not yet deleted (they will be published again)
    "after_publish_before_mark",
    # rows deleted; the consumed message's offset not yet committed (it comes again)
    "after_mark_before_offset_commit",
)
#: The exit status of an injected crash (distinct from signals' 128+n and Python's 1).
FAULT_EXIT_CODE = 86


class FaultInjector:
    """Ends the process at one named point (crash tests); does nothing when unset."""

    __slots__ = ("point",)

    def __init__(self, point: str | None = None) -> None:
        if point is not None and point not in FAULT_POINTS:
            raise ConfigError(
                f"fault point {point!r} is unknown (BUS_FAULT_POINT); use one of "
                f"{', '.join(FAULT_POINTS)}"
            )
        self.point = point

    def __call__(self, point: str) -> None:
        if point == self.point:
            print(f"sagas: injected crash at {point}", file=sys.stderr, flush=True)
            os._exit(FAULT_EXIT_CODE)


def undeliverable_letter(
    entry: OutboxEntry, error: BaseException, *, now: datetime
) -> OutgoingRecord:
    """The dead letter of an outbox row the transport refused: the command as it would
    have been published, plus ``bus_dlq_*`` headers (reason ``undeliverable``; it was never
    in a topic, so partition and offset are -1)."""
    original = Record(entry.topic, -1, -1, entry.key, entry.value, entry.headers, to_ms(now))
    return dead_letter(
        original,
        topic=dead_letter_topic(entry.topic),
        reason="undeliverable",
        error=error,
        app="sagas",
        handler=None,
        attempts=1,
        now=now,
    )


async def _acknowledged(
    sent: Sequence[tuple[OutboxEntry, Delivery]], refused: list[tuple[OutboxEntry, BusError]]
) -> None:
    """Wait for every delivery; one the broker refused for good joins ``refused``.

    A retryable failure (the broker went away after the records were queued) is raised
    once every delivery is done, so none is left with an unread error: the rows stay
    claimed and are published again when their lease ends.
    """
    retry: BusError | None = None
    for entry, delivery in sent:
        try:
            await delivery
        except BusError as exc:  # the transport's delivery fails with bus errors only
            if not exc.retryable:
                refused.append((entry, exc))
            elif retry is None:
                retry = exc
    if retry is not None:
        raise retry


class OutboxRelay:
    """Publishes stored outbox rows: claim a batch, send all, await all, delete them.

    Several relays (coordinator replicas) may share a store: claims are leases, so they
    take disjoint batches, and a crashed relay's rows are claimed again after ``lease``.
    """

    def __init__(
        self,
        store: SagaStore,
        transport: Transport,
        *,
        clock: Callable[[], datetime],
        batch_size: int = 500,
        lease: timedelta = timedelta(seconds=10),
        fault: FaultInjector | None = None,
        on_published: Callable[[Sequence[OutboxEntry]], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.store = store
        self.transport = transport
        self.clock = clock
        self.batch_size = batch_size
        self.lease = lease
        self.fault = fault or FaultInjector()
        self.on_published = on_published
        #: Records published since the relay was made.
        self.published = 0
        #: Commands the transport refused for good, sent to a dead-letter topic instead.
        self.dead_lettered = 0

    async def relay_once(self) -> int:
        """Publish one batch; how many rows it held (0: the outbox was empty)."""
        entries = await self.store.claim_outbox(
            now=self.clock(), limit=self.batch_size, lease=self.lease
        )
        if not entries:
            return 0
        self.fault("after_claim_before_publish")
        sent: list[tuple[OutboxEntry, Delivery]] = []
        refused: list[tuple[OutboxEntry, BusError]] = []
        for entry in entries:
            try:
                sent.append((entry, await self.transport.send(entry.record)))
            except BusError as exc:
                if exc.retryable:
                    raise  # the broker is away: the rows stay claimed and go out later
                refused.append((entry, exc))
                continue
            if len(sent) == 1 and self.fault.point == "mid_publish":
                # Only for that crash test: the first record acknowledged, the rest not
                # sent. Otherwise waiting here would cost every batch a broker round trip.
                await sent[0][1]
                self.fault("mid_publish")
        await _acknowledged(sent, refused)
        if refused:
            await self._dead_letter(refused)
        self.fault("after_publish_before_mark")
        await self.store.mark_sent([e.id for e in entries])
        self.published += len(entries)
        if self.on_published is not None:
            self.on_published(entries)
        log.debug("published %d saga command(s)", len(entries))
        return len(entries)

    async def _dead_letter(self, refused: Sequence[tuple[OutboxEntry, BusError]]) -> None:
        """Commands the transport will never take (too large, no such topic) go to their
        topic's dead-letter topic as ``undeliverable``, and their rows leave the outbox:
        left there, one would be claimed again forever and hold up every command behind
        it. The saga sees no reply: the step times out, is sent again, and fails."""
        now = self.clock()
        for entry, exc in refused:
            letter = undeliverable_letter(entry, exc, now=now)
            try:
                await self.transport.publish(letter)
            except MessageTooLargeError:
                await self.transport.publish(without_original(letter, headers_too=True))
            self.dead_lettered += 1
            log.error(
                "saga command %s (%s, saga %s) dead-lettered to %s: %s",
                entry.id, entry.topic, entry.saga_id, letter.topic, exc,
            )  # fmt: skip

    async def relay_all(self) -> int:
        """Publish batches until the outbox has no unclaimed row; how many were published."""
        total = 0
        while True:
            n = await self.relay_once()
            total += n
            if n < self.batch_size:
                return total
