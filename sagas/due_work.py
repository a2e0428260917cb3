"""The coordinator's work that comes due rather than in on a topic: operator requests and
task completions, inputs set aside for sagas an operator released, and due timers.

Each is an input for one saga (:class:`~sagas.stored_inputs.PendingInput`), applied in the
store's transaction as a consumed event is: operator requests and task completions in one
group commit (people complete tasks in bursts), the others one
:meth:`~sagas.stores.base.SagaStore.update` each. A timer fires only once the inputs on the
topics then are applied (:class:`~sagas.fence.InputFence`). The coordinator's lifespan
task calls it every poll interval (:mod:`sagas.lifespan`), the test kit in line.

Example::

    due = DueWork(catalog, store, routes, clock=utc_now, group_commit=group_commit,
                  fence=fence, report=report, outbox_filled=tasks.outbox_filled)
    await due.process_requests() + await due.apply_set_aside() + await due.fire_due_timers()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from bus import decode
from sagas.effects import Transition
from sagas.fence import InputFence
from sagas.group_commit import GroupCommit
from sagas.operations import DecideSaga, Routes, inputs_for
from sagas.quarantine import TASK_PREFIX, kept_input
from sagas.stored_inputs import InputReport, PendingInput
from sagas.stores.base import ControlRequest, DueTimer, SagaStore, SetAsideInput
from sagas.timers import fire_due_timers
from sagas.triggers import Cancel, Retry, TaskDone, TimerFired, Trigger
from sagas.versions import Catalog

__all__ = ["DueWork"]

#: Operator requests and task completions carried out per round (one transaction).
_REQUEST_BATCH = 500


class DueWork:
    """Carries out the due work of the sagas of ``catalog`` on ``store``; ``report`` counts
    and reports what was stored; ``outbox_filled`` is set when a write stored commands."""

    def __init__(
        self,
        catalog: Catalog,
        store: SagaStore,
        routes: Routes,
        *,
        clock: Callable[[], datetime],
        group_commit: GroupCommit,
        fence: InputFence,
        report: InputReport,
        outbox_filled: asyncio.Event,
    ) -> None:
        self.catalog, self.store, self.routes, self.clock = catalog, store, routes, clock
        self.group_commit, self.fence, self.report = group_commit, fence, report
        self.stats = report.stats
        self.outbox_filled = outbox_filled

    async def fire_due_timers(self) -> int:
        n = await fire_due_timers(
            self.store, now=self.clock(), fire=self.fire_timer, ready=self.fence.caught_up
        )
        self.stats.timers_fired += n
        return n

    async def fire_timer(self, timer: DueTimer) -> Transition | None:
        given = DecideSaga(TimerFired(timer.id), fired_timer=timer.id)
        return await self.apply(PendingInput(self.catalog, timer.saga_id, given, self.clock()))

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
            pending.append(PendingInput(self.catalog, r.saga_id, given, now))
            ids.append(r.id)
        items = [(p.saga_id, p.change) for p in pending]
        writes = await self.group_commit.write(items) if items else []
        for p, request_id, write in zip(pending, ids, writes, strict=True):
            self.report.stored(p, write)
            if write is None:  # nothing to carry it out with: dropped alone
                await self.store.drop_request(request_id)
        if any(w is not None for w in writes):
            self.outbox_filled.set()
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

    async def apply(self, p: PendingInput) -> Transition | None:
        """Load, decide, save ``p`` - one :meth:`SagaStore.update`; the stored transition,
        or None when nothing changed or the saga does not exist (then the timer, request
        or set-aside input it carried out is dropped)."""
        assert isinstance(p.given, DecideSaga)
        [(_, change)] = self.group_commit.fault_guarded([(p.saga_id, p.change)])
        write = await self.store.update(p.saga_id, change, on_conflict=self.report.conflict)
        self.report.stored(p, write)
        if write is None:
            if p.given.fired_timer is not None:
                await self.store.cancel_timers([p.given.fired_timer])
            if p.given.request is not None:
                await self.store.drop_request(p.given.request)
            if p.kept:
                await self.store.drop_set_aside([p.kept])
            return None
        self.outbox_filled.set()
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
            await self.apply(PendingInput(self.catalog, item.saga_id, given, now, kept=item.seq))
            return
        if record is None:
            timer = item.timer_id or ""
            given = DecideSaga(TimerFired(timer), fired_timer=timer)
            await self.apply(PendingInput(self.catalog, item.saga_id, given, now, kept=item.seq))
            return
        env = decode(record.headers, record.value)  # it was read once: it reads again
        model = self.routes.models.get(env.type)
        message = None if model is None else model.from_json(env.data)
        inputs = [] if message is None else inputs_for(self.routes, env, message)
        mine = [g for saga_id, g in inputs if saga_id == item.saga_id]
        if not mine or not isinstance(mine[0], DecideSaga):
            await self.store.drop_set_aside([item.seq])
            return
        await self.apply(PendingInput(self.catalog, item.saga_id, mine[0], now, record, item.seq))
