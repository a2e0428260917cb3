"""The coordinator: the shell around the pure core.

For each consumed record (a trigger, a reply, an awaited or cancelling event), each due
timer and each operator request: load the saga, :func:`~sagas.versions.decide_versioned`
(or :func:`~sagas.core.start`), and save the new state, the outgoing commands (outbox) and
the timer changes in ONE transaction guarded by the state's revision. A conflict (another
replica saved the saga meanwhile) loads and decides again. After the batch, the
:class:`~sagas.outbox.OutboxRelay` publishes the commands, and only then are the consumed
offsets committed - so a crash anywhere replays from the last commit: a re-delivered reply
is a duplicate to the core (it changes nothing), a re-delivered trigger finds its saga.

Routing of a record of type T (the definitions' types, computed once):

- T starts a saga: ``saga_id_for(message)``; started unless it exists (re-delivery);
- T is a reply: the envelope's ``correlationid`` is the saga id (commands carry it);
- T is awaited from outside (a ``Wait`` event) or cancels (``cancel_on``): the saga id
  comes from the message's correlation key.

Operator actions (``bus sagas cancel/retry``) are rows in the store's request table:
the CLI needs only the store, works the same with one or many replicas, and the request
is deleted in the same transaction that carries it out.

Example::

    coordinator = Coordinator(Catalog([onboarding]), store, transport)
    await coordinator.run(stop)          # until stop is set
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol

from bus import (
    BusError,
    CommitFailedError,
    ConfigError,
    Consumer,
    Envelope,
    Event,
    Record,
    TopicPartition,
    Transport,
    decode,
    new_id,
    utc_now,
)
from sagas.core import start
from sagas.definition import SagaDefinition, Wait, awaited_by_step
from sagas.effects import Transition
from sagas.outbox import FaultInjector, OutboxRelay, outbox_entries
from sagas.state import SagaState, SagaStatus
from sagas.stores.base import (
    Change,
    ControlAction,
    ControlRequest,
    DueTimer,
    SagaStore,
    SagaWrite,
    StoredSaga,
)
from sagas.timers import fire_due_timers
from sagas.triggers import Cancel, Incoming, Retry, TimerFired, Trigger
from sagas.versions import Catalog, decide_versioned

__all__ = ["Coordinator", "CoordinatorStats", "SagaObserver", "request_action"]

log = logging.getLogger("sagas.coordinator")


class SagaObserver(Protocol):
    """Hooks for metrics; :class:`sagas.metrics.SagaMetrics` is one
    (``observer=default_saga_metrics()``).

    Called after the transaction that made the change committed; each must be cheap.
    """

    def saga_started(self, saga: str) -> None: ...

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None: ...

    def saga_needs_attention(self, saga: str) -> None: ...

    def saga_step_finished(self, saga: str, step: str, outcome: str, duration_s: float) -> None:
        """A step's reply (``succeeded``/``failed``), its undo's confirmation
        (``compensated``) or a timeout (``timed_out``) came ``duration_s`` after its command
        or compensation was sent (or its wait started)."""

    def saga_timeout_fired(self, saga: str, step: str) -> None: ...

    def sagas_active(
        self, saga: str, by_state: Mapping[str, int], *, oldest_age_s: float = 0.0
    ) -> None:
        """Unfinished instances of ``saga`` by status, as last counted."""

    def outbox_observed(self, store: str, *, backlog: int, oldest_age_s: float) -> None:
        """Unpublished outbox rows of the store, as last counted."""


class _NoObserver:
    def saga_started(self, saga: str) -> None:
        pass

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None:
        pass

    def saga_needs_attention(self, saga: str) -> None:
        pass

    def saga_step_finished(self, saga: str, step: str, outcome: str, duration_s: float) -> None:
        pass

    def saga_timeout_fired(self, saga: str, step: str) -> None:
        pass

    def sagas_active(
        self, saga: str, by_state: Mapping[str, int], *, oldest_age_s: float = 0.0
    ) -> None:
        pass

    def outbox_observed(self, store: str, *, backlog: int, oldest_age_s: float) -> None:
        pass


#: History events that settle a step, and the outcome label the metrics give them.
_OUTCOMES = {
    "completed": "succeeded",
    # an undo confirmed: its own outcome, or a compensated step would count as two successes
    "compensated": "compensated",
    "failed": "failed",
    "timed_out": "timed_out",
}
_STARTS = {"sent", "resent", "compensation_sent", "recompensation_sent", "waiting"}


@dataclass
class CoordinatorStats:
    """Counters since the coordinator was made (``statistics()``)."""

    records: int = 0
    started: int = 0
    transitions: int = 0
    unchanged: int = 0
    conflicts: int = 0
    timers_fired: int = 0
    requests: int = 0
    #: Records the coordinator could not read (not a CloudEvent, invalid payload): logged.
    unreadable: int = 0
    #: Records whose decision raised (a bug in a definition's function): logged, skipped.
    failed: int = 0
    #: Triggers (other messages than the one that started it) naming a saga id in use:
    #: logged and ignored, since a saga id starts one instance only.
    refused_starts: int = 0


@dataclass(frozen=True, slots=True)
class _Routes:
    triggers: dict[str, list[SagaDefinition]] = field(default_factory=dict)
    replies: set[str] = field(default_factory=set)
    external: dict[str, list[SagaDefinition]] = field(default_factory=dict)
    models: dict[str, type[Event]] = field(default_factory=dict)
    names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, catalog: Catalog) -> _Routes:
        r = cls(names=frozenset(catalog.names()))
        latest = {n: catalog.latest(n) for n in catalog.names()}
        for d in catalog:
            r.models[d.trigger.bus_type] = d.trigger
            if d is latest[d.name]:
                r.triggers.setdefault(d.trigger.bus_type, []).append(d)
            outside = list(d.cancel_on)
            for s in d.iter_steps():
                if isinstance(s, Wait):
                    outside += [*s.event, *s.rejected]
            for t in outside:
                r.models[t.bus_type] = t
                named = r.external.setdefault(t.bus_type, [])
                if all(x.name != d.name for x in named):
                    named.append(d)
            outside_types = {t.bus_type for t in outside}
            for _, types in awaited_by_step(d):
                for t in types:
                    r.models[t.bus_type] = t
                    if t.bus_type not in outside_types:
                        r.replies.add(t.bus_type)
        return r

    @property
    def topics(self) -> list[str]:
        return sorted({m.bus_topic for m in self.models.values()})


@dataclass(slots=True)
class _Op:
    """One saga to load, change and save, and what to note once it is stored."""

    saga_id: str
    change: Change
    after: Callable[[SagaWrite | None], None]
    transition: Transition | None = None


async def _commit(consumer: Consumer, offsets: dict[TopicPartition, int]) -> None:
    try:
        await consumer.commit(offsets)
    except CommitFailedError as exc:
        # Partitions moved to another replica: it re-reads them, and the core treats what
        # this one already stored as duplicates.
        log.info("offsets not committed (rebalance): %s", exc)


class Coordinator:
    """Runs the sagas of ``catalog``: consumes their events, stores, publishes, fires timers.

    ``clock`` is the source of ``now`` (the test kit passes a virtual clock); ``group`` is
    the consumer group (replicas share it and split the partitions).

    Example::

        async with Coordinator(Catalog([onboarding]), store, transport) as c:
            await c.step(timeout_s=0.1)   # one round; or: await c.run(stop)
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
        purge_interval_s: float = 3600.0,
    ) -> None:
        if not catalog.names():
            raise ConfigError("the coordinator needs at least one saga definition")
        self.catalog = catalog
        self.store = store
        self.transport = transport
        self.group = group
        self.clock = clock
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.gauges_interval_s = gauges_interval_s
        #: run() purges sagas that ended more than this many seconds ago, at start and
        #: every ``purge_interval_s`` (0: never; see SagaStore.purge_finished).
        self.retention_s = retention_s
        self.purge_interval_s = purge_interval_s
        self.fault = FaultInjector(fault_point)
        self.observer: SagaObserver = observer or _NoObserver()
        self.routes = _Routes.of(catalog)
        self.relay = OutboxRelay(store, transport, clock=clock, fault=self.fault)
        self.stats = CoordinatorStats()
        self._consumer: Consumer | None = None
        #: run()'s relay, publishing while the next batch is fetched and applied.
        self._relay_task: asyncio.Task[None] | None = None
        self._relay_again = False
        #: run()'s last offset commit, answered while the next batch is applied.
        self._commit_task: asyncio.Task[None] | None = None

    @property
    def topics(self) -> list[str]:
        """The topics the coordinator consumes: its sagas' triggers, replies and events."""
        return self.routes.topics

    def statistics(self) -> CoordinatorStats:
        return self.stats

    # -- lifecycle ------------------------------------------------------------------------

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
        """Join the consumer group (the transport and the store must be started/open)."""
        if self._consumer is None:
            self._consumer = self.transport.consumer(self.topics, group=self.group)
            await self._consumer.start()

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop`` is set (store faults are logged and retried after a pause);
        report the gauges every ``gauges_interval_s``."""
        loop = asyncio.get_running_loop()
        next_report = loop.time()
        async with self:
            purging = (
                asyncio.create_task(self._purge_until(stop), name="saga-purge")
                if self.retention_s > 0
                else None
            )
            try:
                await self._run_until(stop, loop, next_report)
            finally:
                if purging is not None:
                    purging.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await purging
                await self._finish_background()

    async def _purge_until(self, stop: asyncio.Event) -> None:
        """Purge ended sagas older than the retention, now and every interval; a failed
        purge (the database away) is logged and tried again next time."""
        while not stop.is_set():
            older_than = self.clock() - timedelta(seconds=self.retention_s)
            try:
                n = await self.store.purge_finished(older_than)
            except Exception as exc:
                log.warning("purge of ended sagas failed, next try in %gs: %r",
                            self.purge_interval_s, exc)  # fmt: skip
            else:
                if n:
                    log.info("purged %d sagas that ended before %s", n, older_than.isoformat())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.purge_interval_s)

    async def _run_until(
        self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop, next_report: float
    ) -> None:
        while not stop.is_set():
            try:
                await self.step(timeout_s=self.poll_interval_s, relay_in_background=True)
                if loop.time() >= next_report:
                    next_report = loop.time() + self.gauges_interval_s
                    await self.report_gauges()
            except BusError as exc:
                if not exc.retryable:
                    raise
                # The store or the transport failed (a restart, a network blip): what
                # was not committed is read, decided or published again.
                log.warning("retrying in 1s: %s", exc)
                await asyncio.sleep(1.0)

    def _relay_behind(self) -> None:
        """Publish the outbox in a task of its own, so that the next batch is fetched and
        applied meanwhile (the relay waits on the broker's acks and two store round trips:
        in line, every step waited for them). One relay at a time; a request while it runs
        makes it go round once more. Its failure surfaces in the next step."""
        task = self._relay_task
        if task is not None and not task.done():
            self._relay_again = True
            return
        self._relay_task = None
        if task is not None:
            task.result()  # a relay that failed: raise its error here, in run()'s loop
        self._relay_again = False
        self._relay_task = asyncio.create_task(self._relay_rounds(), name="saga-outbox-relay")

    async def _commit_behind(self, consumer: Consumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` in a task, after the previous step's commit (offsets go in
        order, and a failed commit is raised here): the next batch need not wait for the
        broker's answer. Those inputs are stored already; a crash before the commit only
        reads them again, and the core ignores what it has seen."""
        previous, self._commit_task = self._commit_task, None
        if previous is not None:
            await previous
        self._commit_task = asyncio.create_task(_commit(consumer, offsets))

    async def _relay_rounds(self) -> None:
        while True:
            await self.relay.relay_all()
            if not self._relay_again:
                return
            self._relay_again = False

    async def _finish_background(self) -> None:
        """Let a running relay publish what it claimed (rows claimed and not published
        would wait for their lease to end) and the last commit end, before the consumer
        and the transport stop."""
        for name in ("_relay_task", "_commit_task"):
            task = getattr(self, name)
            setattr(self, name, None)
            if task is None:
                continue
            with contextlib.suppress(Exception):  # logged below; stopping anyway
                await task
            if not task.cancelled() and task.exception() is not None:
                log.warning("%s failed while stopping: %r", name, task.exception())

    async def report_gauges(self) -> None:
        """Tell the observer the outbox backlog and the unfinished sagas (one query each)."""
        g = await self.store.gauges()
        now = self.clock()
        oldest = 0.0 if g.outbox_oldest is None else (now - g.outbox_oldest).total_seconds()
        self.observer.outbox_observed(
            self.store.kind, backlog=g.outbox_backlog, oldest_age_s=max(oldest, 0.0)
        )
        for name in self.catalog.names():
            started = g.oldest_active.get(name)
            age = 0.0 if started is None else max((now - started).total_seconds(), 0.0)
            self.observer.sagas_active(name, g.active.get(name, {}), oldest_age_s=age)

    # -- one round --------------------------------------------------------------------------

    async def step(self, *, timeout_s: float, relay_in_background: bool = False) -> int:
        """Consume what is there (waiting up to ``timeout_s``), carry out operator requests,
        fire due timers, publish the outbox, commit offsets. How much work it did (0: idle;
        a record to read again after a store fault counts as work left).

        ``relay_in_background`` (what :meth:`run` does): the outbox is published, and the
        offsets committed, by tasks that go on while the next step runs; the rows published
        are not counted here.
        """
        if self._consumer is None:
            raise ConfigError("the coordinator is not started: use 'async with' or start()")
        consumer = self._consumer
        batch = await consumer.fetch(max_records=self.batch_size, timeout_s=timeout_s)
        inputs = [(tp, r, self._ops_for(r)) for tp, records in batch.items() for r in records]
        offsets: dict[TopicPartition, int] = {}
        retry_later = False
        if inputs and await self._run_batch([op for _, _, ops in inputs for op in ops]):
            for tp, record, _ in inputs:
                offsets[tp] = record.offset + 1
        else:
            retry_later = await self._run_one_by_one(consumer, inputs, offsets)
        work = sum(1 for tp, record, _ in inputs if offsets.get(tp, -1) > record.offset)
        if work:
            self.fault("after_commit_before_publish")
        work += await self.process_requests()
        work += await self.fire_due_timers()
        if relay_in_background:
            self._relay_behind()
        else:
            work += await self.relay.relay_all()
        if offsets:
            self.fault("after_mark_before_offset_commit")
            if relay_in_background:
                await self._commit_behind(consumer, offsets)
            else:
                await _commit(consumer, offsets)
        if retry_later:
            await asyncio.sleep(1.0)  # the store is failing: do not spin on the same record
            work += 1  # not idle: the record is still to do
        return work

    async def _run_batch(self, ops: list[_Op]) -> bool:
        """Every input of a fetched batch in one :meth:`SagaStore.update_many` (on SQLite one
        transaction: group commit); False if it failed and nothing should be assumed."""
        try:
            writes = await self.store.update_many(self._changes(ops), on_conflict=self._conflict)
        except Exception as exc:  # retried one input at a time, to isolate the culprit
            log.info("batch of %d saga updates failed, going one by one: %r", len(ops), exc)
            return False
        for op, write in zip(ops, writes, strict=True):
            op.after(write)
        return True

    async def _run_one_by_one(
        self,
        consumer: Consumer,
        inputs: list[tuple[TopicPartition, Record, list[_Op]]],
        offsets: dict[TopicPartition, int],
    ) -> bool:
        """Each record's updates on their own; True if a store fault left records to redo.

        After a failed batch: on SQLite it wrote nothing; on the other stores its first
        updates were stored, and doing them again changes nothing (the core sees the same
        message twice), only their metrics are not reported.
        """
        stalled: set[TopicPartition] = set()
        for tp, record, ops in inputs:
            if tp in stalled:
                continue
            try:
                for op in ops:
                    await self._run(op)
            except BusError as exc:
                if exc.retryable:
                    # A store fault: read this record again later, after what succeeded.
                    consumer.seek(tp, record.offset)
                    stalled.add(tp)
                    log.warning("record %s:%d will be retried: %s", tp, record.offset, exc)
                    continue
                self._failed(record, exc)
            except Exception as exc:  # a bug in a definition's function or the core
                self._failed(record, exc)
            offsets[tp] = record.offset + 1
        return bool(stalled)

    def _failed(self, record: Record, exc: BaseException) -> None:
        # Skipped, loudly: retrying a deterministic failure would stop every saga behind it
        # on the partition. The saga concerned stays where it was, visible in `bus sagas
        # list` and in the oldest-active-saga gauge.
        self.stats.failed += 1
        log.error(
            "record %s:%d could not be applied to its saga and is skipped: %r",
            record.topic,
            record.offset,
            exc,
            exc_info=exc,
        )

    # -- inputs -----------------------------------------------------------------------------

    async def handle_record(self, record: Record) -> None:
        """Route one consumed record to the sagas it concerns (one transaction each)."""
        for op in self._ops_for(record):
            await self._run(op)

    async def handle_event(self, env: Envelope, message: Event) -> None:
        """Apply one decoded event: start sagas, feed a reply, deliver an external event."""
        for op in self._event_ops(env, message):
            await self._run(op)

    def _ops_for(self, record: Record) -> list[_Op]:
        self.stats.records += 1
        try:
            env = decode(record.headers, record.value)
        except BusError as exc:
            self.stats.unreadable += 1
            log.error("unreadable record %s:%d skipped: %s", record.topic, record.offset, exc)
            return []
        model = self.routes.models.get(env.type)
        if model is None:
            return []  # another process's event on a shared topic
        try:
            message = model.model_validate_json(env.data)
        except ValueError as exc:
            self.stats.unreadable += 1
            log.error("invalid %s %s skipped: %s", env.type, env.id, exc)
            return []
        return self._event_ops(env, message)

    def _event_ops(self, env: Envelope, message: Event) -> list[_Op]:
        now = self.clock()
        ops = [
            self._start_op(d, message, env.id, now) for d in self.routes.triggers.get(env.type, ())
        ]
        corr = env.correlationid
        done: set[str] = set()
        if env.type in self.routes.replies and corr and corr.split(":", 1)[0] in self.routes.names:
            incoming = Incoming(env.type, env.id, corr, message, env.causationid)
            ops.append(self._decide_op(corr, incoming, now, causation_id=env.id))
            done.add(corr)
        for d in self.routes.external.get(env.type, ()):
            saga_id = d.saga_id_for(message)
            if saga_id not in done:
                incoming = Incoming(env.type, env.id, saga_id, message, env.causationid)
                ops.append(self._decide_op(saga_id, incoming, now, causation_id=env.id))
                done.add(saga_id)
        return ops

    async def fire_due_timers(self) -> int:
        n = await fire_due_timers(self.store, now=self.clock(), fire=self.fire_timer)
        self.stats.timers_fired += n
        return n

    async def fire_timer(self, timer: DueTimer) -> Transition | None:
        return await self.apply(timer.saga_id, TimerFired(timer.id), fired_timer=timer.id)

    async def process_requests(self) -> int:
        requests = await self.store.pending_requests(limit=100)
        for r in requests:
            trigger: Trigger = Cancel(r.reason) if r.action == "cancel" else Retry(r.reason)
            await self.apply(r.saga_id, trigger, request=r.id)
        self.stats.requests += len(requests)
        return len(requests)

    # -- the transaction --------------------------------------------------------------------

    def _start_op(self, d: SagaDefinition, message: Event, message_id: str, now: datetime) -> _Op:
        refused: list[StoredSaga] = []

        def change(stored: StoredSaga | None) -> SagaWrite | None:
            if stored is not None:
                # The trigger came again (or another replica started it); or another
                # trigger with the same correlation key (a re-hire): refused, loudly.
                if stored.state.trigger_id != message_id:
                    refused[:] = [stored]
                return None
            refused.clear()
            t = start(d, message, message_id=message_id, now=now)
            outbox = outbox_entries(t, now=now, causation_id=message_id)
            return SagaWrite(t.state, 0, outbox, t.timers_to_set, t.timers_to_cancel)

        def after(write: SagaWrite | None) -> None:
            if refused:
                self.stats.refused_starts += 1
                old = refused[0].state
                log.warning(
                    "%s %s not started: saga %s exists (%s, started by %s at %s); a saga id "
                    "starts one instance only, so this trigger is ignored",
                    d.trigger.bus_type, message_id, old.saga_id, old.status.value,
                    old.trigger_id, old.started_at.isoformat(),
                )  # fmt: skip
            if write is not None:
                self.stats.started += 1
                self.observer.saga_started(d.name)
                self._observe(None, write.state)

        return _Op(d.saga_id_for(message), change, after)

    def _decide_op(
        self,
        saga_id: str,
        trigger: Trigger,
        now: datetime,
        *,
        causation_id: str | None = None,
        fired_timer: str | None = None,
        request: str | None = None,
    ) -> _Op:
        op = _Op(saga_id, lambda stored: None, lambda write: None)
        decided: list[tuple[SagaState, Transition]] = []

        def change(stored: StoredSaga | None) -> SagaWrite | None:
            if stored is None:
                return None
            t = decide_versioned(self.catalog, stored.state, trigger, now)
            decided.append((stored.state, t))
            if not t.changed:
                return None
            return SagaWrite(
                t.state,
                stored.revision,
                outbox_entries(t, now=now, causation_id=causation_id),
                t.timers_to_set,
                t.timers_to_cancel + ((fired_timer,) if fired_timer else ()),
                request,
            )

        def after(write: SagaWrite | None) -> None:
            if write is None:
                self.stats.unchanged += 1
                return
            before, t = decided[-1]  # the change that was stored is the last one made
            op.transition = t
            self.stats.transitions += 1
            self._observe(before, t.state, timer=fired_timer is not None)

        op.change, op.after = change, after
        return op

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
        op = self._decide_op(
            saga_id,
            trigger,
            self.clock(),
            causation_id=causation_id,
            fired_timer=fired_timer,
            request=request,
        )
        await self._run(op)
        if op.transition is None:
            await self._discard(fired_timer, request)
        return op.transition

    async def _run(self, op: _Op) -> None:
        ((saga_id, change),) = self._changes([op])
        op.after(await self.store.update(saga_id, change, on_conflict=self._conflict))

    def _changes(self, ops: list[_Op]) -> list[tuple[str, Change]]:
        """The ops' (saga id, change) pairs; with the ``before_commit`` fault point the last
        change ends the process if any of them wrote: inside the store's transaction (on
        SQLite the others' rows are written, uncommitted), so nothing of it commits."""
        items = [(op.saga_id, op.change) for op in ops]
        if self.fault.point != "before_commit" or not items:
            return items
        wrote: list[bool] = []

        def guarded(change: Change, last: bool) -> Change:
            def run(stored: StoredSaga | None) -> SagaWrite | None:
                write = change(stored)
                wrote.append(write is not None)
                if last and any(wrote):
                    self.fault("before_commit")
                return write

            return run

        return [(i, guarded(c, n == len(items) - 1)) for n, (i, c) in enumerate(items)]

    def _conflict(self, saga_id: str) -> None:
        self.stats.conflicts += 1

    async def _discard(self, fired_timer: str | None, request: str | None) -> None:
        if fired_timer is not None:
            await self.store.cancel_timers([fired_timer])
        if request is not None:
            await self.store.drop_request(request)

    def _observe(self, before: SagaState | None, after: SagaState, *, timer: bool = False) -> None:
        """Tell the observer what the stored transition did (from the new history lines).

        ``timer``: a due timer caused it, so a step that failed in it (a wait's deadline)
        timed out.
        """
        name = after.name
        seen = 0 if before is None else len(before.history)
        timed_out: set[str] = set()
        for h in after.history[seen:]:
            outcome = _OUTCOMES.get(h.event)
            if h.step is None or outcome is None:
                continue
            if h.event == "timed_out" or (timer and h.event == "failed"):
                if h.step in timed_out:
                    continue  # re-sent or failed after the timeout just counted
                timed_out.add(h.step)
                outcome = "timed_out"
                self.observer.saga_timeout_fired(name, h.step)
            began = _last_start(after, h.step, seen)
            if began is not None:
                duration = (h.at - began).total_seconds()
                self.observer.saga_step_finished(name, h.step, outcome, duration)
        if before is not None and before.status == after.status:
            return
        if after.terminal:
            duration = (after.updated_at - after.started_at).total_seconds()
            self.observer.saga_finished(name, after.status.value, duration)
        elif after.status == SagaStatus.NEEDS_ATTENTION:
            self.observer.saga_needs_attention(name)


def _last_start(state: SagaState, step: str, before: int) -> datetime | None:
    """When the step's latest command (or wait) began, looking back from the old history."""
    for h in reversed(state.history[:before] if before else state.history):
        if h.step == step and h.event in _STARTS:
            return h.at
    return None


async def request_action(
    store: SagaStore,
    saga_id: str,
    action: ControlAction,
    *,
    reason: str,
    now: datetime | None = None,
) -> ControlRequest:
    """Queue ``cancel`` or ``retry`` of ``saga_id`` for the coordinator (``bus sagas ...``).

    Refuses what the coordinator could not do: an unknown saga, cancelling a saga that is
    not running, retrying one that does not need attention.
    """
    stored = await store.load(saga_id)
    if stored is None:
        raise ConfigError(f"no saga {saga_id!r} in the store; 'bus sagas list' shows the ids")
    status = stored.state.status
    if action == "cancel" and status != SagaStatus.RUNNING:
        raise ConfigError(f"saga {saga_id} is {status.value}: only a running saga can be cancelled")
    if action == "retry" and status != SagaStatus.NEEDS_ATTENTION:
        raise ConfigError(
            f"saga {saga_id} is {status.value}: only a saga in needs_attention can be retried"
        )
    request = ControlRequest(new_id(), saga_id, action, reason, now or utc_now())
    await store.request(request)
    return request
