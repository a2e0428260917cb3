"""The coordinator app's lifespan tasks: outbox relay, timers and requests, gauges, purge.

Each runs as an :meth:`bus.App.background` task in the Worker's task group, beside the
consume loop, until the Worker sets ``stop`` (after its lanes closed, so the relay's last
round publishes what the last batches stored). A retryable bus error (the store or the
broker away) is logged and waited out; anything else ends the task, and with it the
worker, as a failing consume loop would.

Example::

    tasks = SagaTasks(store, relay, clock=utc_now, observer=metrics, sagas=["onboarding"],
                      due=coordinator.due_work)
    tasks.add_to(app)
    tasks.outbox_filled.set()   # after a write stored commands: the relay goes at once
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from bus import App, BusError, wait_for_event
from sagas.observer import SagaObserver
from sagas.outbox import OutboxRelay
from sagas.stores.base import SagaStore

__all__ = ["SagaTasks"]

log = logging.getLogger("sagas.lifespan")


class SagaTasks:
    """The lifespan tasks of one coordinator (intervals in seconds; ``retention_s`` 0:
    ended sagas are kept; ``early_retention_s`` 0: events kept for sagas never started are
    kept); ``due()`` carries out operator requests and due timers."""

    def __init__(
        self,
        store: SagaStore,
        relay: OutboxRelay,
        *,
        clock: Callable[[], datetime],
        observer: SagaObserver,
        sagas: Sequence[str],
        due: Callable[[], Awaitable[int]],
        poll_interval_s: float = 0.1,
        gauges_interval_s: float = 5.0,
        retention_s: float = 0.0,
        early_retention_s: float = 0.0,
        purge_interval_s: float = 3600.0,
    ) -> None:
        self.store, self.relay, self.clock, self.observer = store, relay, clock, observer
        self.sagas, self.due = list(sagas), due
        self.poll_interval_s = poll_interval_s
        self.gauges_interval_s = gauges_interval_s
        self.retention_s = retention_s
        self.early_retention_s = early_retention_s
        self.purge_interval_s = purge_interval_s
        #: Set when a write stored commands: the relay publishes them without waiting.
        self.outbox_filled = asyncio.Event()

    def add_to(self, app: App) -> None:
        app.background(self.relay_loop, name="outbox-relay")
        app.background(self.timers_loop, name="timers-and-requests")
        app.background(self.gauges_loop, name="saga-gauges")
        if self.retention_s > 0 or self.early_retention_s > 0:
            app.background(self.purge_loop, name="saga-purge")

    async def relay_loop(self, stop: asyncio.Event) -> None:
        """Publish the outbox whenever a write stored commands (so it goes out while the
        next batch is applied), or every poll interval (another replica's rows, expired
        leases), until ``stop``; then once more, for what the last batches stored."""
        while not stop.is_set():
            await wait_for_event(self.outbox_filled, self.poll_interval_s)
            self.outbox_filled.clear()
            await self._retrying("outbox relay", self.relay.relay_all, stop)
        await self._retrying("outbox relay", self.relay.relay_all, None)

    async def timers_loop(self, stop: asyncio.Event) -> None:
        """Operator requests and due timers, every poll interval."""
        while not stop.is_set():
            await self._retrying("operator requests and timers", self.due, stop)
            await _pause(stop, self.poll_interval_s)

    async def gauges_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._retrying("gauges", self.report_gauges, stop)
            await _pause(stop, self.gauges_interval_s)

    async def purge_loop(self, stop: asyncio.Event) -> None:
        """Purge ended sagas, and events kept for sagas that never started, older than
        their retention, now and every interval; a failed purge (the database away) is
        logged and tried again next time."""
        while not stop.is_set():
            try:
                await self.purge()
            except Exception as exc:
                log.warning("purge of ended sagas failed, next try in %gs: %r",
                            self.purge_interval_s, exc)  # fmt: skip
            await _pause(stop, self.purge_interval_s)

    async def purge(self) -> None:
        now = self.clock()
        if self.retention_s > 0:
            older_than = now - timedelta(seconds=self.retention_s)
            n = await self.store.purge_finished(older_than)
            if n:
                log.info("purged %d sagas that ended before %s", n, older_than.isoformat())
        if self.early_retention_s > 0:
            older_than = now - timedelta(seconds=self.early_retention_s)
            n = await self.store.purge_early(older_than)
            if n:
                log.info("purged %d events kept since before %s for sagas that never "
                         "started", n, older_than.isoformat())  # fmt: skip

    async def report_gauges(self) -> None:
        """Tell the observer the outbox backlog and the unfinished sagas (one query each)."""
        g = await self.store.gauges()
        now = self.clock()
        oldest = 0.0 if g.outbox_oldest is None else (now - g.outbox_oldest).total_seconds()
        self.observer.outbox_observed(
            self.store.kind, backlog=g.outbox_backlog, oldest_age_s=max(oldest, 0.0)
        )
        for name in self.sagas:
            started = g.oldest_active.get(name)
            age = 0.0 if started is None else max((now - started).total_seconds(), 0.0)
            self.observer.sagas_active(name, g.active.get(name, {}), oldest_age_s=age)

    async def _retrying(
        self, what: str, work: Callable[[], Awaitable[object]], stop: asyncio.Event | None
    ) -> None:
        """``work()``; a retryable bus error is logged and waited out for a second."""
        try:
            await work()
        except BusError as exc:
            if not exc.retryable:
                raise
            log.warning("%s failed, retrying in 1s: %s", what, exc)
            if stop is not None:
                await _pause(stop, 1.0)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    await wait_for_event(stop, seconds)
