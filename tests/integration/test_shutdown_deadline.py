"""Graceful shutdown keeps its deadline even when leaving the group does not finish.

Found by the crash tests (tests/crash): a handler process SIGTERMed while its group
rebalanced took 18 s to exit with a 10 s deadline (and ``bus run`` exited 1), because
aiokafka's ``consumer.stop()`` first lets the join under way finish - a join the broker
holds until the other members rejoin, bounded only by the request timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bus import (
    App,
    Event,
    MemoryBroker,
    MemoryTransport,
    Publisher,
    TopicPartition,
    Worker,
    WorkerSettings,
)
from bus.transports.base import Consumer, RebalanceListener
from bus.types import OffsetReset
from tests.waiting import wait_until


class Tick(Event, type="it.shutdown.tick.v1", topic="it.shutdown.ticks", key="key"):
    key: str


class StuckLeave(MemoryTransport):
    """A transport whose consumers never finish leaving (a rebalance that never ends)."""

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> Consumer:
        inner = super().consumer(topics, group=group, offset_reset=offset_reset, listener=listener)

        async def stop_forever() -> None:
            await asyncio.Event().wait()

        inner.stop = stop_forever  # type: ignore[method-assign]
        return inner


async def test_a_consumer_that_cannot_leave_does_not_hold_shutdown_past_its_deadline() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = StuckLeave(broker)
    await transport.start()
    app = App("it-shutdown-stuck")
    handled: list[str] = []

    @app.handler
    async def tick(t: Tick) -> None:
        handled.append(t.key)

    await Publisher(transport, source="bus://test").publish(Tick(key="a"))
    worker = Worker(app, transport, WorkerSettings(shutdown_deadline_s=0.5, commit_interval_s=0.05))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: handled, timeout_s=10, what="the tick handled")
    stop.set()
    started = time.monotonic()
    await asyncio.wait_for(running, 5)  # hung forever before the fix
    took = time.monotonic() - started
    assert took < 2.0, took  # the deadline, plus at least 1 s granted to leave cleanly
    # what was handled is committed before leaving is even tried
    assert broker.committed(app.group, TopicPartition(Tick.bus_topic, 0)) == 1
    await transport.stop()


class JoinWhileLeaving(MemoryTransport):
    """Consumers whose stop first completes a rebalance: aiokafka finishes the join under
    way, and calls the listener's ``on_partitions_assigned``, before it leaves."""

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> Consumer:
        inner = super().consumer(topics, group=group, offset_reset=offset_reset, listener=listener)
        leave = inner.stop

        async def stop_after_a_join() -> None:
            if listener is not None:
                await listener.on_partitions_assigned(frozenset(inner.assignment()))
            await leave()

        inner.stop = stop_after_a_join  # type: ignore[method-assign]
        return inner


async def test_partitions_assigned_while_leaving_do_not_keep_the_worker_running() -> None:
    # Found by tests/crash: a member SIGTERMed during a rebalance got its new assignment
    # while leaving; the lanes started for it waited for records forever, so the worker
    # never returned and ``bus run`` exited 1 after the deadline.
    broker = MemoryBroker(default_partitions=2)
    transport = JoinWhileLeaving(broker)
    await transport.start()
    app = App("it-shutdown-join")
    handled: list[str] = []

    @app.handler
    async def tick(t: Tick) -> None:
        handled.append(t.key)

    await Publisher(transport, source="bus://test").publish(Tick(key="b"))
    worker = Worker(app, transport, WorkerSettings(shutdown_deadline_s=1.0, commit_interval_s=0.05))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: handled, timeout_s=10, what="the tick handled")
    stop.set()
    await asyncio.wait_for(running, 5)  # hung forever before the fix
    await transport.stop()
