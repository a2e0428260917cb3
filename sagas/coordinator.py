"""The coordinator: the shell that runs sagas as an :class:`~bus.App` on the bus's Worker.

The app has ONE batch handler over every type the sagas consume (triggers, replies,
awaited and cancelling events): the Worker hands it a partition's run of consecutive
records, already decoded and validated, and it applies the run to the store in ONE
:meth:`~sagas.stores.base.SagaStore.update_many` (on SQLite one transaction: group
commit, with the runs of the lanes handled meanwhile: :mod:`sagas.group_commit`). Each
input is :func:`~sagas.operations.apply_input` (pure) inside the store's transaction.
What the Worker gives every handler holds here too: an undecodable, invalid or unknown
input is dead-lettered with its reason; a definition function that raises is retried,
then the batch bisected and only that input dead-lettered; offsets are committed once
the handler returned; lag metrics and graceful shutdown come with it. A store fault is
retried with backoff: the partition waits, nothing is dead-lettered for it.

The app's lifespan tasks (:mod:`sagas.lifespan`): the outbox relay, operator requests
(:mod:`sagas.requests`) and due timers (both carried out by :mod:`sagas.due_work`), the
gauges, the purge of ended sagas. Each stored input is counted, reported to the observer
and logged by :mod:`sagas.stored_inputs`; :meth:`Coordinator.step` drives the batch
handler in line for the test kit (:mod:`sagas.inline_worker`).

Example::

    coordinator = Coordinator(Catalog([onboarding]), store, transport)
    await coordinator.run(stop)          # a Worker of coordinator.app, until stop is set
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType

from bus import (
    App,
    BatchContext,
    ConfigError,
    Envelope,
    Event,
    Record,
    Transport,
    Worker,
    WorkerSettings,
    decode,
    utc_now,
)
from sagas.coordinator_stats import CoordinatorStats
from sagas.due_work import DueWork
from sagas.early import DEFAULT_EARLY_RETENTION
from sagas.effects import Transition
from sagas.fence import InputFence
from sagas.group_commit import GroupCommit
from sagas.inline_worker import InlineWorker
from sagas.lifespan import SagaTasks
from sagas.observer import NoObserver, SagaObserver
from sagas.operations import DecideSaga, Routes, inputs_for
from sagas.outbox import FaultInjector, OutboxRelay
from sagas.requests import request_action
from sagas.stored_inputs import InputReport, PendingInput
from sagas.stores.base import DueTimer, SagaStore
from sagas.triggers import Trigger
from sagas.versions import Catalog

__all__ = ["Coordinator", "CoordinatorStats", "SagaObserver", "request_action"]


class Coordinator:
    """Runs the sagas of ``catalog``: consumes their events, stores, publishes, fires timers.

    ``clock`` is the source of ``now`` (the test kit passes a virtual clock); ``group`` is
    the consumer group and the app's name (replicas share it and split the partitions);
    ``settings`` the Worker's (default: ``batch_size`` records per batch, a fetch waiting
    ``poll_interval_s``).

    Example::

        async with Coordinator(Catalog([onboarding]), store, transport) as c:
            await c.step()      # its worker consumes what is there; timers, relay in line
    """

    def __init__(
        self,
        catalog: Catalog,
        store: SagaStore,
        transport: Transport,
        *,
        group: str = "sagas",
        clock: Callable[[], datetime] = utc_now,
        batch_size: int = 200,
        poll_interval_s: float = 0.1,
        gauges_interval_s: float = 5.0,
        fault_point: str | None = None,
        observer: SagaObserver | None = None,
        retention_s: float = 0.0,
        early_retention_s: float = DEFAULT_EARLY_RETENTION.total_seconds(),
        purge_interval_s: float = 3600.0,
        settings: WorkerSettings | None = None,
    ) -> None:
        if not catalog.names():
            raise ConfigError("the coordinator needs at least one saga definition")
        self.catalog, self.store, self.transport = catalog, store, transport
        self.group, self.clock = group, clock
        self.settings = settings or WorkerSettings(
            fetch_max_records=batch_size, fetch_timeout_s=poll_interval_s
        )
        self.fault = FaultInjector(fault_point)
        observer = observer or NoObserver()
        self.routes = Routes.of(catalog)
        self.relay = OutboxRelay(store, transport, clock=clock, fault=self.fault)
        self.stats = CoordinatorStats()
        #: Counts and reports each stored input (stats, observer, log).
        self.report = InputReport(self.stats, observer)
        #: The batches of concurrent lanes, stored in one transaction.
        self._group_commit = GroupCommit(
            store,
            on_conflict=self.report.conflict,
            fault=self.fault,
            on_wait=observer.saga_store_waited,
        )
        #: Due timers fire once the inputs on the topics then are applied (sagas/fence.py).
        self.fence = InputFence(interval_s=min(poll_interval_s, 0.05))
        #: The app's lifespan tasks: relay, timers and requests, gauges, purge.
        self.tasks = SagaTasks(
            store,
            self.relay,
            clock=clock,
            observer=observer,
            sagas=catalog.names(),
            due=self.due_work,
            poll_interval_s=poll_interval_s,
            gauges_interval_s=gauges_interval_s,
            retention_s=retention_s,
            early_retention_s=early_retention_s,
            purge_interval_s=purge_interval_s,
        )
        #: Operator requests, set-aside inputs and due timers (the timers task's work).
        self.due = DueWork(
            catalog,
            store,
            self.routes,
            clock=clock,
            group_commit=self._group_commit,
            fence=self.fence,
            report=self.report,
            outbox_filled=self.tasks.outbox_filled,
        )
        #: step()'s worker (started by start()); the records it had finished at the last step.
        self._inline: InlineWorker | None = None
        self._finished = 0
        #: The app ``run()`` and ``bus sagas run`` run: batch handler and lifespan tasks.
        self.app = self.build_app()

    @property
    def observer(self) -> SagaObserver:
        """Told of each stored input (metric hooks); one set later is told from then on
        (the lifespan tasks and the store waits keep the one the coordinator was made with)."""
        return self.report.observer

    @observer.setter
    def observer(self, observer: SagaObserver) -> None:
        self.report.observer = observer

    @property
    def topics(self) -> list[str]:
        """The topics the coordinator consumes: its sagas' triggers, replies and events."""
        return self.routes.topics

    def statistics(self) -> CoordinatorStats:
        self.stats.store_retries = self._group_commit.retries
        self.stats.fence_waits = self.fence.waits
        return self.stats

    def build_app(self, *, background: bool = True) -> App:
        """The coordinator as an App; ``background=False``: the batch handler only (the
        test kit runs the lifespan tasks' work in line, see :meth:`tick`)."""
        app = App(self.group, source="bus://sagas")
        models = [self.routes.models[t] for t in sorted(self.routes.models)]

        @app.batch_handler(name="apply_saga_inputs", types=models)
        async def apply_saga_inputs(batch: list[Event], ctx: BatchContext) -> None:
            await self.apply_events(ctx.envelopes, batch, ctx.records)

        app.on_start(self.fence.watch)
        if background:
            self.tasks.add_to(app)
        return app

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run :attr:`app` on a Worker until ``stop`` is set (transport started, store open).

        ``bus sagas run`` runs the app through :class:`bus.Runner` instead (signals,
        ``/metrics``, ``/readyz``).
        """
        await Worker(self.app, self.transport, self.settings, clock=self.clock).run(stop)

    async def __aenter__(self) -> Coordinator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the worker :meth:`step` drives (a Worker of the batch handler alone)."""
        if self._inline is not None:
            return
        settings = replace(self.settings, commit_interval_s=0.01, fetch_timeout_s=0.01)
        worker = Worker(self.build_app(background=False), self.transport, settings)
        self._inline = InlineWorker(worker, self.transport, group=self.group)

    async def stop(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            await inline.stop()

    async def step(self, *, timeout_s: float = 30.0) -> int:
        """Let the worker consume what the transport holds (waiting up to ``timeout_s`` for
        it to be idle), then :meth:`tick`. How much work it did (0: idle)."""
        if self._inline is None:
            raise ConfigError("the coordinator is not started: use 'async with' or start()")
        await self._inline.until_idle(timeout_s)
        finished = self._inline.finished()
        work, self._finished = finished - self._finished, finished
        return work + await self.tick()

    async def tick(self) -> int:
        """The lifespan tasks' work once, in line: operator requests, due timers, the whole
        outbox. How much there was (the test kit calls it until it is 0)."""
        work = await self.process_requests() + await self.apply_set_aside()
        work += await self.fire_due_timers()
        return work + await self.relay.relay_all()

    # -- inputs: the batch handler ---------------------------------------------------------

    async def apply_events(
        self,
        envelopes: Sequence[Envelope],
        messages: Sequence[Event],
        records: Sequence[Record] | None = None,
    ) -> None:
        """Apply consumed events (a batch, in partition order) in one store transaction;
        ``records``: the records they came in, kept aside for a quarantined saga.

        A store fault is retried here until the store works (the partition waits); any
        other error propagates: the Worker retries the batch, then isolates the culprit.
        """
        now = self.clock()
        kept: Sequence[Record | None] = records or [None] * len(messages)
        pending = [
            PendingInput(self.catalog, saga_id, given, now, record)
            for env, message, record in zip(envelopes, messages, kept, strict=True)
            for saga_id, given in inputs_for(self.routes, env, message)
        ]
        self.stats.records += len(messages)
        if not pending:
            return
        writes = await self._group_commit.write([(p.saga_id, p.change) for p in pending])
        for p, write in zip(pending, writes, strict=True):
            self.report.stored(p, write)
        if not any(w is not None for w in writes):
            return
        self.fault("after_commit_before_publish")
        self.tasks.outbox_filled.set()
        if self.fault.point == "after_mark_before_offset_commit":
            # Only for that crash test: published and marked while this batch's offsets
            # are certainly not committed (the handler has not returned).
            await self.relay.relay_all()
            self.fault("after_mark_before_offset_commit")

    async def handle_record(self, record: Record) -> None:
        """Decode and apply one record (a ``RecordError`` if it cannot be read)."""
        env = decode(record.headers, record.value)
        model = self.routes.models.get(env.type)
        if model is not None:
            message = model.from_json(env.data)
            assert isinstance(message, Event)
            await self.apply_events([env], [message], [record])

    # -- due work: operator requests, set-aside inputs, timers (sagas/due_work.py) ---------

    async def fire_due_timers(self) -> int:
        return await self.due.fire_due_timers()

    async def fire_timer(self, timer: DueTimer) -> Transition | None:
        return await self.due.fire_timer(timer)

    async def process_requests(self) -> int:
        """Carry out pending operator requests and task completions (one group commit)."""
        return await self.due.process_requests()

    async def apply(
        self,
        saga_id: str,
        trigger: Trigger,
        *,
        causation_id: str | None = None,
        fired_timer: str | None = None,
        request: str | None = None,
    ) -> Transition | None:
        """Load, decide, save - one :meth:`SagaStore.update`; the stored transition, or None
        when nothing changed or the saga does not exist."""
        given = DecideSaga(trigger, causation_id, None, fired_timer, request)
        return await self.due.apply(PendingInput(self.catalog, saga_id, given, self.clock()))

    async def apply_set_aside(self) -> int:
        """Apply the inputs set aside for sagas an operator's retry released; how many."""
        return await self.due.apply_set_aside()

    async def due_work(self) -> int:
        """Operator requests, inputs set aside for released sagas, then due timers; how
        many were carried out."""
        work = await self.process_requests() + await self.apply_set_aside()
        return work + await self.fire_due_timers()

    async def report_gauges(self) -> None:
        """Tell the observer the outbox backlog and the unfinished sagas (one query each)."""
        await self.tasks.report_gauges()
