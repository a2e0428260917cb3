"""The handler test kit on a virtual clock: backoffs and retry tiers wait for the test."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bus import App, Event, RetryPolicy, TestBus, VirtualClock


class Order(Event, type="it.kitclock.order.v1", topic="it.kitclock.orders", key="order_id"):
    order_id: str


class Billed(Event, type="it.kitclock.billed.v1", topic="it.kitclock.billed", key="order_id"):
    order_id: str


def flaky_app(clock: VirtualClock, tries: list[datetime], *, fail: int, policy: RetryPolicy) -> App:
    """Fails its first ``fail`` tries, then bills; ``tries`` records the time of each try."""
    app = App("it-kitclock", retry=policy)

    @app.handler
    async def bill(order: Order) -> Billed:
        tries.append(clock())
        if len(tries) <= fail:
            raise ConnectionError("billing is down")
        return Billed(order_id=order.order_id)

    return app


async def test_a_retry_tier_waits_for_the_virtual_clock_not_the_wall_clock() -> None:
    clock = VirtualClock()
    tries: list[datetime] = []
    policy = RetryPolicy(max_attempts=1, tiers_s=(600.0,), initial_delay_s=0, jitter_s=0)
    app = flaky_app(clock, tries, fail=1, policy=policy)
    async with TestBus(app, clock=clock) as bus:
        await bus.publish(Order(order_id="o-1"))
        await bus.drain()  # the first try failed; the record waits in its 10-minute tier
        assert len(tries) == 1
        assert bus.messages(Billed) == []
        await bus.advance(timedelta(seconds=599))
        assert len(tries) == 1, "not due yet: drain returned with the record still waiting"
        await bus.advance(timedelta(seconds=1))
        assert [b.order_id for b in bus.messages(Billed)] == ["o-1"]
    assert tries[1] - tries[0] == timedelta(seconds=600)


async def test_an_in_process_backoff_waits_for_the_virtual_clock() -> None:
    clock = VirtualClock()
    tries: list[datetime] = []
    policy = RetryPolicy(max_attempts=3, initial_delay_s=30.0, multiplier=2.0, jitter_s=0)
    app = flaky_app(clock, tries, fail=2, policy=policy)
    async with TestBus(app, clock=clock) as bus:
        await bus.publish(Order(order_id="o-2"))
        await bus.drain()  # first try failed; the handler sleeps 30 virtual seconds
        assert len(tries) == 1
        await bus.advance(timedelta(seconds=30))
        assert len(tries) == 2
        await bus.advance(timedelta(seconds=60))
        assert [b.order_id for b in bus.messages(Billed)] == ["o-2"]
    assert [t - tries[0] for t in tries] == [
        timedelta(0),
        timedelta(seconds=30),
        timedelta(seconds=90),
    ]


async def test_a_sleeper_wakes_when_the_clock_passes_its_time_in_time_order() -> None:
    clock = VirtualClock()
    woke: list[int] = []

    async def sleeper(n: int, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(n)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in ((1, 20.0), (2, 10.0), (3, 30.0))]
    await asyncio.sleep(0)
    assert clock.sleepers == 3
    clock.advance(timedelta(seconds=25))
    await asyncio.sleep(0)
    assert woke == [2, 1]
    assert clock.sleepers == 1
    clock.advance(timedelta(seconds=5))
    await asyncio.gather(*tasks)
    assert woke == [2, 1, 3]
