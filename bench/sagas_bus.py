"""The bus's side of ``bench/sagas.py``: onboarding sagas end to end in one process.

One round: the five handler command apps of ``sagas.demo.Systems`` (simulated systems,
in memory) and the saga coordinator on one transport and one saga store, all in this
process, as ``bus sagas demo`` runs them. A warm-up saga goes through first (untimed: every
consumer has joined and every topic exists when it completes); then ``n`` EmployeeHired
events are published at once, and the round ends when the coordinator has finished all
``n`` sagas. sagas/s = n / (first trigger published -> last saga finished, as the
coordinator reports it after the transaction that finished the saga committed); each
saga's duration is its own ``updated_at - started_at``.

Every timed hire takes the 4-step path (see ``sagas_rows``): no approval waits, no
failures. Each round checks afterwards, in the store, that every saga completed.

The ``v2`` scenario runs the grown onboarding (``onboarding_v2``) on the same hires: the
desk task and the equipment child saga's task are completed by a "person" loop through the
public task API (``sagas.tasks.list_tasks``/``complete_task``, as ``bus tasks complete``
does), the payroll path is the ``us`` one, and the start date is in the past, so the
activation on the start date is due at once. Its sagas take more steps (see
:func:`steps_of`), so the comparison with v1 is per step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sagas_rows import Hire

from bus import Publisher, Runner, TopicSpec, Transport, WorkerSettings
from handlers.hr.contracts import EmployeeHired
from sagas.children import SubSaga, child_id
from sagas.coordinator import Coordinator
from sagas.definition import SagaDefinition
from sagas.definitions.equipment import equipment_issue
from sagas.definitions.onboarding import onboarding
from sagas.definitions.onboarding_v2 import onboarding_v2
from sagas.demo import Systems
from sagas.state import SagaStatus, StepStatus
from sagas.stores.base import SagaStore
from sagas.tasks import complete_task, list_tasks
from sagas.versions import Catalog

#: What the person loop submits per task step (the forms of onboarding v2 and its child).
FORMS: dict[str, dict[str, object]] = {
    "assign_desk": {"desk": "D-1"},
    "issue_equipment": {"items": ["laptop"]},
}


@dataclass
class BusRound:
    sagas: int
    elapsed_s: float
    #: Steps one saga took (its completed steps and its child sagas'), the same for all.
    steps_per_saga: int
    #: Each timed saga's updated_at - started_at (seconds).
    durations: list[float]
    #: Wall time from the first published trigger to the first finished saga.
    first_done_s: float
    conflicts: int
    records: int

    @property
    def sagas_per_s(self) -> float:
        return self.sagas / self.elapsed_s

    @property
    def steps_per_s(self) -> float:
        return self.sagas_per_s * self.steps_per_saga


@dataclass
class _Finish:
    """A :class:`sagas.coordinator.SagaObserver` that counts finished sagas."""

    expected: int
    #: Only sagas of this name count (a v2 onboarding's child saga ends too).
    saga: str = "onboarding"
    statuses: dict[str, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    first_at: float | None = None
    last_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __getattr__(self, hook: str) -> Callable[..., None]:
        # Every other observer hook (the protocol grows: gauges, outbox backlog) is a no-op.
        if hook.startswith("_"):
            raise AttributeError(hook)
        return _ignore

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None:
        if saga != self.saga:
            return
        now = time.monotonic()
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.durations.append(duration_s)
        self.first_at = self.first_at or now
        self.last_at = now
        if sum(self.statuses.values()) >= self.expected:
            self.done.set()

    def saga_needs_attention(self, saga: str) -> None:
        self.statuses["needs_attention"] = self.statuses.get("needs_attention", 0) + 1
        self.done.set()  # a timed saga must not need attention: stop and report it


def _ignore(*args: object, **kwargs: object) -> None:
    pass


def hired(h: Hire) -> EmployeeHired:
    """The EmployeeHired event of ``h`` (also what ``bench/scale.py`` publishes)."""
    return EmployeeHired(
        employee_id=h.employee_id,
        full_name=h.full_name,
        department=h.department,
        manager_email=h.manager_email,
        start_date=h.start_date,
        email_domain=h.email_domain,
    )


async def steps_of(store: SagaStore, definition: SagaDefinition, saga_id: str) -> int:
    """The completed steps of a saga and of its child sagas."""
    stored = await store.load(saga_id)
    assert stored is not None
    done = [s for s in stored.state.steps.values() if s.status == StepStatus.COMPLETED]
    n = len(done)
    for s in definition.iter_steps():
        if isinstance(s, SubSaga) and stored.state.steps[s.name].status == StepStatus.COMPLETED:
            child = s.definition if isinstance(s.definition, SagaDefinition) else definition
            n += await steps_of(store, child, child_id(s.saga, saga_id, s.name))
    return n


async def _person(store: SagaStore, stop: asyncio.Event) -> None:
    """Complete every open task through the public task API, as people would."""
    while not stop.is_set():
        tasks = await list_tasks(store, limit=1000)
        for t in tasks:
            await complete_task(store, t.id, FORMS[t.step], actor="bench@example.com")
        if not tasks:
            await asyncio.sleep(0.005)


async def bus_round(
    warmup: Hire,
    hires: list[Hire],
    *,
    store: SagaStore,
    transport: Transport,
    settings: WorkerSettings,
    partitions: int,
    timeout_s: float,
    v2: bool = False,
) -> BusRound:
    """One round on ``transport`` (started and stopped here) and ``store`` (already open);
    ``v2``: the grown onboarding (its tasks completed by a person loop) instead of v1."""
    systems = Systems()
    # The licensing system's seat pools are finite (1,000 office seats): enough for all.
    systems.licenses.seats = {p: 10 * (len(hires) + 1) for p in systems.licenses.seats}
    finish = _Finish(expected=1)
    definition = onboarding_v2 if v2 else onboarding
    catalog = Catalog([onboarding, onboarding_v2, equipment_issue] if v2 else [onboarding])
    coordinator = Coordinator(catalog, store, transport, observer=finish)
    commands = {t.bus_topic for d in catalog for t in d.command_types()}
    topics = {*coordinator.topics, *commands}
    runner = Runner(
        systems.apps(),
        transport,
        settings,
        # before any consumer subscribes: a Kafka consumer learns of new topics late
        ensure_topics=[TopicSpec(t, partitions=partitions) for t in sorted(topics)],
    )
    stop_apps, stop_coordinator = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        apps = tg.create_task(runner.run(stop_apps))
        if v2:
            tg.create_task(_person(store, stop_apps))
        try:
            await _first(runner.started.wait(), apps, timeout_s, "the handler apps to start")
            saga_loop = tg.create_task(coordinator.run(stop_coordinator))
            hr = Publisher(transport, source="bus://hr")
            await hr.publish(hired(warmup))
            await _first(finish.done.wait(), saga_loop, timeout_s, "the warm-up saga")
            finish = _Finish(expected=len(hires))
            coordinator.observer = finish
            records, conflicts = coordinator.stats.records, coordinator.stats.conflicts
            started = time.monotonic()
            await hr.publish_many([hired(h) for h in hires])
            await _first(finish.done.wait(), saga_loop, timeout_s, f"{len(hires)} sagas")
            elapsed = finish.last_at - started
            first_done = (finish.first_at or finish.last_at) - started
            records = coordinator.stats.records - records
            conflicts = coordinator.stats.conflicts - conflicts
        finally:
            # The coordinator first: the runner stops the transport it publishes on.
            stop_coordinator.set()
            if "saga_loop" in locals():
                await asyncio.wait([saga_loop])
            stop_apps.set()
    not_completed = {k: v for k, v in finish.statuses.items() if k != SagaStatus.COMPLETED.value}
    if not_completed:
        raise RuntimeError(f"sagas that did not complete: {not_completed}")
    for h in (hires[0], hires[-1]):
        stored = await store.load(definition.saga_id_for(hired(h)))
        if stored is None or stored.state.status != SagaStatus.COMPLETED:
            raise RuntimeError(f"saga of {h.employee_id} is not completed in the store")
        if stored.state.version != definition.version:
            raise RuntimeError(f"saga of {h.employee_id} ran v{stored.state.version}")
    steps = await steps_of(store, definition, definition.saga_id_for(hired(hires[-1])))
    return BusRound(len(hires), elapsed, steps, finish.durations, first_done, conflicts, records)


async def _first(waited: object, task: asyncio.Task[None], timeout_s: float, what: str) -> None:
    """Wait for ``waited`` unless ``task`` ends first (its error then surfaces)."""
    waiter = asyncio.ensure_future(waited)  # type: ignore[arg-type]
    done, _ = await asyncio.wait([waiter, task], timeout=timeout_s, return_when="FIRST_COMPLETED")
    if waiter in done:
        return
    waiter.cancel()
    if task in done:
        task.result()
        raise RuntimeError(f"stopped while waiting for {what}")
    raise TimeoutError(f"no {what} within {timeout_s:.0f}s")
