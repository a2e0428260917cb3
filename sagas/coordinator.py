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
(:mod:`sagas.requests`) and due timers, the gauges, the purge of ended sagas.

Example::

    coordinator = Coordinator(Catalog([onboarding]), store, transport)
    await coordinator.run(stop)          # a Worker of coordinator.app, until stop is set
"""

from __future__ import annotations

import asyncio
import logging
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
    MemoryTransport,
    Record,
    Transport,
    Worker,
    WorkerSettings,
    decode,
    utc_now,
)
from sagas.coordinator_stats import CoordinatorStats
from sagas.early import DEFAULT_EARLY_RETENTION
from sagas.effects import Transition
from sagas.fence import InputFence
from sagas.group_commit import GroupCommit
from sagas.lifespan import SagaTasks
from sagas.observer import NoObserver, SagaObserver, end_line, report_change, start_line
from sagas.operations import (
    Applied,
    DecideSaga,
    Routes,
    SagaInput,
    StartSaga,
    apply_input,
    inputs_for,
)
from sagas.outbox import FaultInjector, OutboxRelay
from sagas.quarantine import TASK_PREFIX, kept_input
from sagas.requests import request_action
from sagas.state import SagaState
from sagas.stores.base import (
    ControlRequest,
    DueTimer,
    KeepEarly,
    Loaded,
    SagaStore,
    SagaWrite,
    SetAside,
    SetAsideInput,
    Write,
)
from sagas.timers import fire_due_timers
from sagas.triggers import Cancel, Retry, TaskDone, TimerFired, Trigger
from sagas.versions import Catalog

__all__ = ["Coordinator", "CoordinatorStats", "SagaObserver", "request_action"]

log = logging.getLogger("sagas.coordinator")

#: Longest pause between two tries of a failing store, in seconds.
_MAX_STORE_BACKOFF_S = 5.0
#: Operator requests and task completions carried out per round (one transaction).
_REQUEST_BATCH = 500


class _Pending:
    """One input for one saga, and what applying it found (the last try's, after a
    revision conflict)."""

    __slots__ = ("applied", "catalog", "given", "kept", "now", "record", "saga_id")

    def __init__(
        self,
        catalog: Catalog,
        saga_id: str,
        given: SagaInput,
        now: datetime,
        record: Record | None = None,
        kept: int = 0,
    ) -> None:
        self.catalog, self.saga_id, self.given, self.now = catalog, saga_id, given, now
        #: The record the input came in (kept aside if the saga is quarantined); the
        #: set-aside input this is (its seq; 0: a live input).
        self.record, self.kept = record, kept
        self.applied = Applied()

    def change(self, stored: Loaded) -> Write | None:
        self.applied = apply_input(self.catalog, stored, self.given, self.now, record=self.record)
        write = self.applied.write
        if self.kept and isinstance(write, SagaWrite):  # applied: delete it with the write
            write = replace(write, set_aside_done=(self.kept,))
        return write


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
        self.observer: SagaObserver = observer or NoObserver()
        self.routes = Routes.of(catalog)
        self.relay = OutboxRelay(store, transport, clock=clock, fault=self.fault)
        self.stats = CoordinatorStats()
        #: The batches of concurrent lanes, stored in one transaction.
        self._group_commit = GroupCommit(
            store,
            on_conflict=self._conflict,
            fault=self.fault,
            on_wait=self.observer.saga_store_waited,
        )
        #: Due timers fire once the inputs on the topics then are applied (sagas/fence.py).
        self.fence = InputFence(interval_s=min(poll_interval_s, 0.05))
        #: The app's lifespan tasks: relay, timers and requests, gauges, purge.
        self.tasks = SagaTasks(
            store,
            self.relay,
            clock=clock,
            observer=self.observer,
            sagas=catalog.names(),
            due=self.due_work,
            poll_interval_s=poll_interval_s,
            gauges_interval_s=gauges_interval_s,
            retention_s=retention_s,
            early_retention_s=early_retention_s,
            purge_interval_s=purge_interval_s,
        )
        #: step()'s worker (started by start()), its stop, its task; finished records seen.
        self._inline: tuple[Worker, asyncio.Event, asyncio.Task[None]] | None = None
        self._finished = 0
        #: The app ``run()`` and ``bus sagas run`` run: batch handler and lifespan tasks.
        self.app = self.build_app()

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
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name=f"{self.group}-worker")
        self._inline = (worker, stop, task)

    async def stop(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            _, stop, task = inline
            stop.set()
            await task

    async def step(self, *, timeout_s: float = 30.0) -> int:
        """Let the worker consume what the transport holds (waiting up to ``timeout_s`` for
        it to be idle), then :meth:`tick`. How much work it did (0: idle)."""
        if self._inline is None:
            raise ConfigError("the coordinator is not started: use 'async with' or start()")
        worker, _, task = self._inline
        await self._until_idle(worker, task, timeout_s)
        s = worker.stats
        finished = s.handled + s.dead_lettered + s.skipped + s.delayed
        work, self._finished = finished - self._finished, finished
        return work + await self.tick()

    async def _until_idle(self, worker: Worker, task: asyncio.Task[None], timeout_s: float) -> None:
        """Until the worker is idle twice in a row (on the memory transport: with every
        record committed), or raise TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline, streak = loop.time() + timeout_s, 0
        while streak < 2:
            if task.done():
                await task
                raise ConfigError("the coordinator's worker stopped")
            if loop.time() > deadline:
                raise TimeoutError(f"the coordinator was still busy after {timeout_s}s")
            await asyncio.sleep(0.002)
            idle = worker.running and worker.idle()
            if idle and isinstance(self.transport, MemoryTransport):
                idle = self.transport.broker.group_lag(self.group, worker.app.topics) == 0
            streak = streak + 1 if idle else 0

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
            _Pending(self.catalog, saga_id, given, now, record)
            for env, message, record in zip(envelopes, messages, kept, strict=True)
            for saga_id, given in inputs_for(self.routes, env, message)
        ]
        self.stats.records += len(messages)
        if not pending:
            return
        writes = await self._group_commit.write([(p.saga_id, p.change) for p in pending])
        for p, write in zip(pending, writes, strict=True):
            self._note(p, write)
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

    def _conflict(self, saga_id: str) -> None:
        self.stats.conflicts += 1

    def _note(self, p: _Pending, write: Write | None) -> None:
        """Count and report a stored input (after the commit)."""
        applied = p.applied
        if isinstance(write, KeepEarly):
            self.stats.kept_early += 1
            self.observer.saga_early_input(write.saga_id.partition(":")[0], "kept")
            return
        if isinstance(write, SetAside):
            self.stats.set_aside += 1
            log.warning(
                "saga %s is quarantined (%s): %s set aside; fix its row, then 'bus sagas "
                "retry %s' applies it", write.saga_id, write.reason,
                "a timer" if write.timers_to_cancel else "an input", write.saga_id,
            )  # fmt: skip
            return
        if p.kept and write is not None:
            self.stats.set_aside_applied += 1
        if isinstance(p.given, StartSaga):
            if applied.refused_by is not None:
                self._refused(p.given, applied.refused_by)
            if write is not None:
                self.stats.started += 1
                self.observer.saga_started(write.state.name)
                report_change(self.observer, None, write.state)
                self._log_lifecycle(None, write.state)
            return
        if write is None:
            self.stats.unchanged += 1
            return
        self.stats.transitions += 1
        timer = p.given.fired_timer is not None
        assert isinstance(write, SagaWrite)
        report_change(self.observer, applied.before, write.state, timer=timer)
        self._log_lifecycle(applied.before, write.state)

    @staticmethod
    def _log_lifecycle(before: SagaState | None, after: SagaState) -> None:
        """One INFO line when a saga starts and one when it ends (operators follow sagas
        in the logs without a query); nothing is formatted when INFO is off."""
        if not log.isEnabledFor(logging.INFO):
            return
        if before is None:
            log.info(start_line(after))
        line = end_line(before, after)
        if line is not None:
            log.info(line)

    def _refused(self, given: StartSaga, old: SagaState) -> None:
        self.stats.refused_starts += 1
        log.warning(
            "%s %s not started: saga %s exists (%s, started by %s at %s); a saga id "
            "starts one instance only, so this trigger is ignored",
            given.definition.trigger.bus_type, given.message_id, old.saga_id,
            old.status.value, old.trigger_id, old.started_at.isoformat(),
        )  # fmt: skip

    # -- timers and operator requests -------------------------------------------------------

    async def fire_due_timers(self) -> int:
        n = await fire_due_timers(
            self.store, now=self.clock(), fire=self.fire_timer, ready=self.fence.caught_up
        )
        self.stats.timers_fired += n
        return n

    async def fire_timer(self, timer: DueTimer) -> Transition | None:
        return await self.apply(timer.saga_id, TimerFired(timer.id), fired_timer=timer.id)

    async def process_requests(self) -> int:
        """Carry out pending operator requests and task completions, in one group commit
        (people complete tasks in bursts: one transaction each made them a bottleneck)."""
        requests = await self.store.pending_requests(limit=_REQUEST_BATCH)
        now, pending, ids = self.clock(), [], []
        for r in requests:
            trigger = await self._request_trigger(r)
            if trigger is None:
                await self.store.drop_request(r.id)
                continue
            given = DecideSaga(trigger, request=r.id)
            pending.append(_Pending(self.catalog, r.saga_id, given, now))
            ids.append(r.id)
        items = [(p.saga_id, p.change) for p in pending]
        writes = await self._group_commit.write(items) if items else []
        for p, request_id, write in zip(pending, ids, writes, strict=True):
            self._note(p, write)
            if write is None:  # nothing to carry it out with: dropped alone
                await self.store.drop_request(request_id)
        if any(w is not None for w in writes):
            self.tasks.outbox_filled.set()
        self.stats.requests += len(requests)
        return len(requests)

    async def _request_trigger(self, r: ControlRequest) -> Trigger | None:
        """The input an operator request gives: a cancel, a retry, or a task's completion
        (its data read from the task row; None if the row is gone, e.g. purged)."""
        if r.action == "cancel":
            return Cancel(r.reason)
        if r.action == "retry":
            return Retry(r.reason)
        return await self._task_done(r.reason)

    async def _task_done(self, task_id: str) -> TaskDone | None:
        task = await self.store.get_task(task_id)
        if task is None or task.data is None or task.completed_by is None:
            return None
        return TaskDone(task.id, task.step, task.data, task.completed_by)

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
        return await self._apply(_Pending(self.catalog, saga_id, given, self.clock()))

    async def _apply(self, p: _Pending) -> Transition | None:
        assert isinstance(p.given, DecideSaga)
        [(_, change)] = self._group_commit.fault_guarded([(p.saga_id, p.change)])
        write = await self.store.update(p.saga_id, change, on_conflict=self._conflict)
        self._note(p, write)
        if write is None:
            if p.given.fired_timer is not None:
                await self.store.cancel_timers([p.given.fired_timer])
            if p.given.request is not None:
                await self.store.drop_request(p.given.request)
            if p.kept:
                await self.store.drop_set_aside([p.kept])
            return None
        self.tasks.outbox_filled.set()
        return p.applied.transition

    async def apply_set_aside(self) -> int:
        """Apply the inputs set aside for sagas an operator's retry released, in the order
        they came, each deleted with its write; how many."""
        items = await self.store.set_aside_inputs(limit=100)
        for item in items:
            await self._apply_kept(item)
        return len(items)

    async def _apply_kept(self, item: SetAsideInput) -> None:
        now, record = self.clock(), kept_input(item)
        if record is None and (item.timer_id or "").startswith(TASK_PREFIX):
            done = await self._task_done((item.timer_id or "").removeprefix(TASK_PREFIX))
            if done is None:
                await self.store.drop_set_aside([item.seq])
                return
            given = DecideSaga(done)
            await self._apply(_Pending(self.catalog, item.saga_id, given, now, kept=item.seq))
            return
        if record is None:
            timer = item.timer_id or ""
            given = DecideSaga(TimerFired(timer), fired_timer=timer)
            await self._apply(_Pending(self.catalog, item.saga_id, given, now, kept=item.seq))
            return
        env = decode(record.headers, record.value)  # it was read once: it reads again
        model = self.routes.models.get(env.type)
        message = None if model is None else model.from_json(env.data)
        inputs = [] if message is None else inputs_for(self.routes, env, message)
        mine = [g for saga_id, g in inputs if saga_id == item.saga_id]
        if not mine or not isinstance(mine[0], DecideSaga):
            await self.store.drop_set_aside([item.seq])
            return
        await self._apply(_Pending(self.catalog, item.saga_id, mine[0], now, record, item.seq))

    async def due_work(self) -> int:
        """Operator requests, inputs set aside for released sagas, then due timers; how
        many were carried out."""
        work = await self.process_requests() + await self.apply_set_aside()
        return work + await self.fire_due_timers()

    async def report_gauges(self) -> None:
        """Tell the observer the outbox backlog and the unfinished sagas (one query each)."""
        await self.tasks.report_gauges()
