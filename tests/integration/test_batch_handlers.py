"""Batch handlers (``App.batch_handler``) on both transports: runs in partition order,
outputs before commits, bisection down to the poison message, lifespan tasks."""

from __future__ import annotations

import asyncio

import pytest

from bus import (
    App,
    BatchContext,
    DefinitionError,
    Event,
    MemoryBroker,
    Publisher,
    RetryPolicy,
    Worker,
    WorkerSettings,
    decode,
)
from tests.conftest import Cluster, unique
from tests.integration.test_runtime import HeldTransport
from tests.waiting import wait_until

NO_WAIT = RetryPolicy(max_attempts=2, initial_delay_s=0, jitter_s=0)


class Tick(Event, type="it.batch.tick.v1", topic="it.batch.ticks", key="key"):
    key: str
    n: int


class Tock(Event, type="it.batch.tock.v1", topic="it.batch.ticks", key="key"):
    key: str
    n: int


class Tally(Event, type="it.batch.tally.v1", topic="it.batch.tallies", key="key"):
    key: str
    n: int


def tally_app(
    name: str, seen: list[list[int]], *, key: str = "k", poison: int | None = None
) -> App:
    """Counts the ticks and tocks of ``key`` (a Kafka topic keeps other tests' records)."""
    app = App(name, retry=NO_WAIT)

    @app.batch_handler
    async def count(batch: list[Tick | Tock], ctx: BatchContext) -> None:
        if any(m.n == poison and m.key == key for m in batch):
            raise ValueError(f"cannot count {poison}")
        seen.append([m.n for m in batch if m.key == key])
        for i, m in enumerate(batch):
            ctx.publish(Tally(key=m.key, n=m.n), cause=i)

    return app


async def _published(
    transport: object, n: int, *, key: str = "k", every_other_tock: bool = False
) -> None:
    messages = [
        Tock(key=key, n=i) if every_other_tock and i % 2 else Tick(key=key, n=i) for i in range(n)
    ]
    await Publisher(transport, source="t").publish_many(messages)  # type: ignore[arg-type]


async def test_a_batch_handler_gets_runs_of_its_types_in_partition_order(cluster: Cluster) -> None:
    transport = await cluster.client()
    key = unique("k")
    await _published(transport, 200, key=key, every_other_tock=True)
    seen: list[list[int]] = []
    stop = asyncio.Event()
    worker = Worker(
        tally_app(unique("it-batch-order"), seen, key=key),
        transport,
        WorkerSettings(commit_interval_s=0.05),
    )
    task = asyncio.create_task(worker.run(stop))
    await wait_until(
        lambda: sum(map(len, seen)) == 200, timeout_s=30, what="200 of this test's handled"
    )
    await wait_until(lambda: worker.in_flight() == 0, timeout_s=30, what="all settled")
    stop.set()
    await task
    assert [n for batch in seen for n in batch] == list(range(200))
    assert max(len(b) for b in seen) > 1, "consecutive records arrive together"
    assert worker.stats.emitted == worker.stats.handled


async def test_each_output_of_a_batch_is_caused_by_the_message_it_names() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = HeldTransport(broker, "nothing-held")
    await transport.start()
    await _published(transport, 20)
    stop = asyncio.Event()
    worker = Worker(tally_app("it-batch-lineage", []), transport)
    task = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: worker.stats.handled == 20, timeout_s=10, what="20 handled")
    stop.set()
    await task
    ticks = {decode(r.headers, r.value).id: r for r in broker.records("it.batch.ticks")}
    for r in broker.records("it.batch.tallies"):
        env = decode(r.headers, r.value)
        assert env.causationid in ticks
        cause = decode(ticks[env.causationid].headers, ticks[env.causationid].value)
        assert Tally.model_validate_json(env.data).n == Tick.model_validate_json(cause.data).n
        assert env.correlationid == cause.id


async def test_no_offset_of_a_batch_is_committed_before_all_its_outputs_are_acknowledged() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = HeldTransport(broker, "it.batch.tallies")
    await transport.start()
    await _published(transport, 30)
    stop = asyncio.Event()
    worker = Worker(
        tally_app("it-batch-held", []), transport, WorkerSettings(commit_interval_s=0.01)
    )
    task = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: len(transport.held) == 30, timeout_s=10, what="30 held outputs")
    # every handled record waits for the acks: nothing is settled, so nothing committable
    await wait_until(lambda: worker.in_flight() == 30, timeout_s=10, what="30 in flight")
    assert sum(broker.group_committed("it-batch-held").values()) == 0
    transport.release()
    await wait_until(
        lambda: sum(broker.group_committed("it-batch-held").values()) == 30,
        timeout_s=10,
        what="30 committed after the release",
    )
    stop.set()
    await task


async def test_a_failing_batch_is_bisected_until_only_the_poison_message_is_dead_lettered(
    cluster: Cluster,
) -> None:
    transport = await cluster.client()
    key = unique("k")
    await _published(transport, 64, key=key)
    seen: list[list[int]] = []
    stop = asyncio.Event()
    worker = Worker(tally_app(unique("it-batch-poison"), seen, key=key, poison=37), transport)
    task = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: worker.stats.dead_lettered == 1, timeout_s=30, what="a dead letter")
    await wait_until(lambda: sum(map(len, seen)) == 63, timeout_s=30, what="the other 63 handled")
    await wait_until(lambda: worker.in_flight() == 0, timeout_s=30, what="all settled")
    stop.set()
    await task
    assert sorted(n for batch in seen for n in batch) == [n for n in range(64) if n != 37]
    assert worker.stats.dead_lettered == 1


def test_a_batch_handler_must_take_a_list_of_message_classes() -> None:
    app = App("it-batch-wiring")

    @app.batch_handler
    async def wrong(batch: Tick) -> None:  # not a list
        pass

    @app.batch_handler
    def not_async(batch: list[Tick]) -> None:
        pass

    with pytest.raises(DefinitionError) as raised:
        app.validate()
    text = str(raised.value)
    assert "batch handler wrong: annotate its first parameter as list[" in text
    assert "batch handler not_async must be 'async def'" in text


async def test_a_background_task_runs_beside_the_consume_loop_until_the_worker_stops() -> None:
    broker = MemoryBroker(default_partitions=1)
    transport = HeldTransport(broker, "nothing-held")
    await transport.start()
    app = tally_app("it-batch-tasks", [])
    events: list[str] = []
    started = asyncio.Event()

    @app.background
    async def beside(stop: asyncio.Event) -> None:
        events.append("started")
        started.set()
        await stop.wait()
        events.append("stopped")

    stop = asyncio.Event()
    worker = Worker(app, transport)
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(started.wait(), 10)
    assert not task.done()
    stop.set()
    await task
    assert events == ["started", "stopped"]


def test_a_batch_handler_may_name_its_types_when_they_are_known_only_at_run_time() -> None:
    app = App("it-batch-types")

    @app.batch_handler(types=[Tick, Tock])
    async def count(batch: list[Event]) -> None:
        pass

    assert {t for t, r in app.routes.items() if r.batch} == {Tick.bus_type, Tock.bus_type}
    wrong = App("it-batch-types-wrong")

    @wrong.batch_handler(types=[Tick, str])  # type: ignore[list-item]
    async def broken(batch: list[Event]) -> None:
        pass

    with pytest.raises(DefinitionError, match="batch handler broken: annotate"):
        wrong.validate()
