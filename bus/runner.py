"""Run several apps in one process on one transport, and know when they are idle.

``bus run`` and the test kit both use :class:`Runner`. Every worker is a task of one
task group; ``stop`` ends them all, each shutting down gracefully. A watch task of the
same group probes the transport every ``probe_interval_s``, so ``ready`` follows a broker
that goes away and comes back (the transport logs each change once). With
``dedup_retention_s`` another purges the apps' dedup stores of older completions.

Example::

    runner = Runner([identity.app, licensing.app], transport)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await runner.run(stop)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bus.app import App
from bus.clock import Sleep
from bus.dedup.base import DedupStore
from bus.errors import DefinitionError
from bus.metrics import Metrics
from bus.stamping import utc_now
from bus.transports.base import TopicSpec, Transport
from bus.transports.memory import MemoryTransport
from bus.waits import wait_for_event
from bus.worker import Worker, WorkerSettings

__all__ = ["Runner", "install_signal_handlers"]

log = logging.getLogger("bus.runner")

#: Longest the runner waits for its stores and transport to close once the workers stopped.
CLOSE_BUDGET_S = 5.0


class Runner:
    """Workers for ``apps`` on ``transport`` (the transport is started and stopped here)."""

    def __init__(
        self,
        apps: Sequence[App],
        transport: Transport,
        settings: WorkerSettings | None = None,
        *,
        ensure_topics: Sequence[TopicSpec] | None = None,
        metrics: Metrics | None = None,
        probe_interval_s: float = 1.0,
        dedup_retention_s: float = 0.0,
        dedup_purge_interval_s: float | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        problems = [f"{app.name}: {p}" for app in apps for p in app.problems()]
        names = [app.name for app in apps]
        problems += [
            f"app name {n!r} is used twice" for n in sorted(set(names)) if names.count(n) > 1
        ]
        if not apps:
            problems.append("no apps to run")
        if problems:
            raise DefinitionError("the set of apps to run", problems)
        self.apps = list(apps)
        self.transport = transport
        self.workers = [
            Worker(app, transport, settings, metrics=metrics, clock=clock, sleep=sleep)
            for app in apps
        ]
        #: Topics created (when missing) before the workers start; None: create nothing.
        self.ensure_topics = ensure_topics
        #: Seconds between two readiness probes of the transport.
        self.probe_interval_s = probe_interval_s
        #: Completions older than this many seconds are purged from the apps' dedup stores
        #: (at start, then every ``dedup_purge_interval_s``); 0: never.
        self.dedup_retention_s = dedup_retention_s
        self.dedup_purge_interval_s = (
            dedup_purge_interval_s
            if dedup_purge_interval_s is not None
            else min(3600.0, max(1.0, dedup_retention_s / 4))
        )
        self.clock = clock
        self.started = asyncio.Event()
        #: App name -> the error its worker stopped with.
        self.failures: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run every worker until ``stop`` is set; the transport lives as long as this call."""
        stores = {id(s): s for app in self.apps for s in app.dedup_stores}.values()
        await self.transport.start()
        try:
            for store in stores:  # idempotent: a store shared with other code may be open
                await store.open()
            if self.ensure_topics:
                await self.transport.ensure_topics(self.ensure_topics)
            async with asyncio.TaskGroup() as tg:
                for worker in self.workers:
                    tg.create_task(self._run_worker(worker, stop), name=f"worker-{worker.app.name}")
                tg.create_task(self._watch_transport(stop), name="transport-watch")
                if self.dedup_retention_s > 0 and stores:
                    tg.create_task(self._purge_dedup(stores, stop), name="dedup-purge")
                self.started.set()
        finally:
            await self._close(stores)

    async def _run_worker(self, worker: Worker, stop: asyncio.Event) -> None:
        try:
            await worker.run(stop)
        except Exception as exc:
            # the task group then stops the other workers and run() raises; until the
            # process exits, /healthz reads this (a stopped worker must never look alive)
            self.failures[worker.app.name] = _describe(exc)
            if worker.metrics is not None:
                worker.metrics.worker_failed(worker.app.name)
            log.error("app %s stopped with an error: %s", worker.app.name, _describe(exc))
            raise

    def failure(self) -> str | None:
        """Why a worker stopped with an error (None: none did); ``/healthz`` reads it."""
        if not self.failures:
            return None
        return "; ".join(f"app {app}: {why}" for app, why in sorted(self.failures.items()))

    async def _close(self, stores: Iterable[DedupStore[Any]]) -> None:
        """Close the stores and stop the transport within :data:`CLOSE_BUDGET_S`.

        The workers have awaited their acknowledgements and committed already, so nothing
        is left to lose here; a close that hangs (seen once in a while in the kill-storm
        test: a process SIGTERMed right as it started, 20 s gone after its worker stopped)
        is abandoned with a warning rather than overrun the shutdown deadline.
        """
        started = time.monotonic()
        try:
            async with asyncio.timeout(CLOSE_BUDGET_S):
                for store in stores:
                    await store.close()
                await self.transport.stop()
        except TimeoutError:
            log.warning(
                "stores and transport %s not closed within %gs; exiting without them "
                "(everything was acknowledged and committed before)",
                self.transport.name,
                CLOSE_BUDGET_S,
            )
            return
        log.info(
            "stores and transport %s closed in %.2fs",
            self.transport.name,
            time.monotonic() - started,
        )

    async def _purge_dedup(self, stores: Iterable[DedupStore[Any]], stop: asyncio.Event) -> None:
        """Forget completions older than the retention, now and every interval until ``stop``.

        Without it a SQL dedup store grows by a row per handled message forever. A purge
        that fails (the database is away) is logged and tried again next interval: it must
        not stop the workers.
        """
        while not stop.is_set():
            older_than = self.clock() - timedelta(seconds=self.dedup_retention_s)
            for store in stores:
                try:
                    n = await store.purge(older_than)
                except Exception as exc:
                    log.warning("dedup purge of %s failed, next try in %gs: %r",
                                type(store).__name__, self.dedup_purge_interval_s, exc)  # fmt: skip
                    continue
                if n:
                    log.info("dedup purge: %d completions before %s forgotten by %s",
                             n, older_than.isoformat(), type(store).__name__)  # fmt: skip
            await wait_for_event(stop, self.dedup_purge_interval_s)

    async def _watch_transport(self, stop: asyncio.Event) -> None:
        """Probe the transport until ``stop``: fetches alone do not notice a broker gone."""
        while not stop.is_set():
            await self.transport.probe(timeout_s=min(2.0, self.probe_interval_s * 2))
            await wait_for_event(stop, self.probe_interval_s)

    def idle(self, *, sleeping_is_idle: bool = False) -> bool:
        """Every worker idle and, on the memory transport, every group caught up exactly.

        ``sleeping_is_idle`` (a virtual clock's test kit; see :meth:`Worker.idle`): a
        worker whose lanes wait for time may lag by the records they hold, no more.
        """
        if not all(w.running and w.idle(sleeping_is_idle=sleeping_is_idle) for w in self.workers):
            return False
        if not isinstance(self.transport, MemoryTransport):
            return True
        broker = self.transport.broker
        for w in self.workers:
            lag = broker.group_lag(w.app.group, w.app.topics)
            if lag and not (sleeping_is_idle and w.sleeping() and lag >= w.in_flight()):
                return False
        return True

    async def wait_idle(
        self, *, timeout_s: float = 30.0, poll_s: float = 0.01, sleeping_is_idle: bool = False
    ) -> None:
        """Return once :meth:`idle` holds twice in a row; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        streak = 0
        while streak < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"apps still busy after {timeout_s}s")
            await asyncio.sleep(poll_s)
            streak = streak + 1 if self.idle(sleeping_is_idle=sleeping_is_idle) else 0


def _describe(exc: BaseException) -> str:
    """The errors inside ``exc`` (task groups wrap them), as ``Type: message`` lines."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (graceful shutdown); a second SIGINT is not special."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, stop, sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("received %s: stopping (finishing in-flight records, committing)", sig.name)
    stop.set()
