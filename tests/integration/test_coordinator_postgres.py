"""Two coordinator replicas on one PostgreSQL store (the production set-up), memory transport.

The replicas share a consumer group (they split the partitions), the saga tables, the
outbox and the timers: every hire is onboarded once, every command published once, every
timer fired once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from bus import (
    App,
    MemoryBroker,
    MemoryTransport,
    Publisher,
    Runner,
    WorkerSettings,
    decode,
    utc_now,
)
from sagas import Catalog, SagaState, SagaStatus
from sagas.coordinator import Coordinator
from sagas.definitions.onboarding import onboarding
from sagas.stores import PostgresSagaStore
from sagas.testing import VirtualClock
from tests.integration.test_onboarding_handlers import World, hire
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def replicas(
    dsn: str, broker: MemoryBroker, clock: Callable[[], datetime], apps: list[App]
) -> AsyncIterator[list[Coordinator]]:
    stop = asyncio.Event()
    coordinators = []
    for _ in range(2):
        store = PostgresSagaStore(dsn, max_connections=4)
        await store.open()
        transport = MemoryTransport(broker)
        await transport.start()
        coordinators.append(
            Coordinator(Catalog([onboarding]), store, transport, clock=clock, poll_interval_s=0.02)
        )
    async with asyncio.TaskGroup() as tg:
        if apps:
            runner = Runner(apps, MemoryTransport(broker), WorkerSettings(commit_interval_s=0.05))
            tg.create_task(runner.run(stop))
        for c in coordinators:
            tg.create_task(c.run(stop))
        try:
            yield coordinators
        finally:
            stop.set()
    for c in coordinators:
        await c.transport.stop()
        await c.store.close()


async def wait_for(
    store: PostgresSagaStore, ids: list[str], done: Callable[[SagaState], bool]
) -> list[SagaState]:
    async def states() -> list[SagaState]:
        return [s for i in ids if (s := await _state(store, i)) is not None]

    return await wait_until(
        states,
        until=lambda got: len(got) == len(ids) and all(done(s) for s in got),
        timeout_s=60,
        what=f"{len(ids)} sagas in the awaited state",
    )


def counting_timer_polls(coordinator: Coordinator) -> list[int]:
    """Count how often ``coordinator`` polls its timers (one cell, updated in place)."""
    polls = [0]
    fire = coordinator.fire_due_timers

    async def counted() -> int:
        polls[0] += 1
        return await fire()

    coordinator.fire_due_timers = counted  # type: ignore[method-assign]
    return polls


async def _state(store: PostgresSagaStore, saga_id: str) -> SagaState | None:
    stored = await store.load(saga_id)
    return None if stored is None else stored.state


async def test_two_replicas_onboard_every_hire_once(postgres_dsn: str) -> None:
    broker = MemoryBroker(default_partitions=4)
    w = World()
    rejected = {f"e-{n}" for n in range(0, 16, 5)}
    w.payroll.reject.update(rejected)
    ids = [f"onboarding:e-{n}" for n in range(16)]
    async with replicas(postgres_dsn, broker, utc_now, w.apps) as (a, b):
        hr = Publisher(a.transport, source="bus://hr")
        for n in range(16):
            await hr.publish(hire(f"e-{n}"))
        states = await wait_for(a.store, ids, lambda s: s.terminal)  # type: ignore[arg-type]
    expected = {
        i: SagaStatus.COMPENSATED if i.split(":")[1] in rejected else SagaStatus.COMPLETED
        for i in ids
    }
    assert {s.saga_id: s.status for s in states} == expected
    assert a.stats.transitions > 0
    assert b.stats.transitions > 0  # both replicas had partitions
    topics = {t.bus_topic for t in onboarding.command_types()}
    sent = Counter(decode(r.headers, r.value).id for topic in topics for r in broker.records(topic))
    assert sent, "no command was published"
    assert max(sent.values()) == 1, "a command was published twice"
    assert sum(sent.values()) == sum(len(st.command_ids) for s in states for st in s.steps.values())


async def test_two_replicas_fire_each_due_timer_once(postgres_dsn: str) -> None:
    broker = MemoryBroker(default_partitions=4)
    clock = VirtualClock(datetime(2026, 6, 1, tzinfo=UTC))
    ids = [f"onboarding:e-{n}" for n in range(12)]
    async with replicas(postgres_dsn, broker, clock, apps=[]) as (a, b):
        polls = [counting_timer_polls(a), counting_timer_polls(b)]
        hr = Publisher(a.transport, source="bus://hr")
        for n in range(12):
            await hr.publish(hire(f"e-{n}"))
        await wait_for(a.store, ids, lambda s: s.steps["create_account"].attempts == 1)  # type: ignore[arg-type]
        clock.advance(timedelta(seconds=30))  # nobody answered: every reply timed out
        states = await wait_for(
            a.store,  # type: ignore[arg-type]
            ids,
            lambda s: s.steps["create_account"].attempts == 2,
        )
        # no timer fires twice: both replicas polled the timers again since, twice each
        seen = [p[0] for p in polls]
        await wait_until(
            lambda: [p[0] - before for p, before in zip(polls, seen, strict=True)],
            until=lambda more: min(more) >= 2,
            timeout_s=30,
            what="both replicas to poll their timers twice more",
        )
    assert a.stats.timers_fired + b.stats.timers_fired == 12
    assert all(s.status == SagaStatus.RUNNING for s in states)
