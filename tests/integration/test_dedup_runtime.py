"""Idempotent handlers in the runtime: a message completed once is never run again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from bus import (
    App,
    Context,
    DedupKey,
    Event,
    MemoryBroker,
    MemoryDedupStore,
    MemoryTransport,
    Publisher,
    RetryPolicy,
    SqliteDedupStore,
    TestBus,
    record_for,
)

TOPIC = "it.dedup.orders"


class Order(Event, type="it.dedup.order.v1", topic=TOPIC, key="key"):
    key: str
    n: int


class Charged(Event, type="it.dedup.charged.v1", topic="it.dedup.charged", key="key"):
    key: str
    n: int


NO_WAIT = RetryPolicy(max_attempts=3, initial_delay_s=0, jitter_s=0)


async def publish_copies(bus: TestBus, order: Order, copies: int, *, source: str) -> None:
    """The same CloudEvent (same source and id) published ``copies`` times."""
    publisher = Publisher(bus.transport, source=source)
    record = record_for(order, publisher.envelope(order))
    for _ in range(copies):
        await (await bus.transport.send(record))


async def test_a_redelivered_message_is_acknowledged_without_running_the_handler_again() -> None:
    store = MemoryDedupStore()
    effects: Counter[int] = Counter()
    app = App("it-dedup-once", retry=NO_WAIT)

    @app.handler(dedup=store)
    async def charge(order: Order) -> Charged:
        effects[order.n] += 1
        return Charged(key=order.key, n=order.n)

    orders = [Order(key=f"k{n % 3}", n=n) for n in range(20)]
    publisher_source = "bus://shop"
    async with TestBus(app, partitions=2) as bus:
        publisher = Publisher(bus.transport, source=publisher_source)
        records = [record_for(o, publisher.envelope(o)) for o in orders]
        for record in records:
            await bus.transport.send(record)
        await bus.drain()  # handled, outputs acknowledged and marked sent
        for record in records * 2:  # redelivered twice (a rewind, a zombie, a re-publish)
            await bus.transport.send(record)
        await bus.drain()
        charged = bus.envelopes(Charged)
        stats = bus.runner.workers[0].stats
    assert effects == Counter(range(20))
    assert (stats.handled, stats.duplicates) == (20, 40)
    assert len(charged) == 20  # emits nothing new: outputs known sent are not re-sent


async def test_copies_in_a_burst_run_the_handler_once_with_one_output_id_each() -> None:
    store = MemoryDedupStore()
    effects: Counter[int] = Counter()
    app = App("it-dedup-burst", retry=NO_WAIT)

    @app.handler(dedup=store)
    async def charge(order: Order) -> Charged:
        effects[order.n] += 1
        return Charged(key=order.key, n=order.n)

    async with TestBus(app, partitions=1) as bus:
        for n in range(10):
            await publish_copies(bus, Order(key="k", n=n), 3, source="bus://shop")
        await bus.drain()
        charged = bus.envelopes(Charged)
    assert effects == Counter(range(10))
    # a copy may re-send the recorded outputs (the first run could have died before their
    # ack): byte-identical records, so the CloudEvents ids say "duplicate" downstream
    assert len({e.id for e in charged}) == 10
    by_id = {e.id: orjson.loads(e.data)["n"] for e in charged}
    assert sorted(by_id.values()) == list(range(10))


async def test_the_same_id_from_another_source_is_another_message() -> None:
    store = MemoryDedupStore()
    effects: list[int] = []
    app = App("it-dedup-sources", retry=NO_WAIT)

    @app.handler(dedup=store)
    async def charge(order: Order) -> None:
        effects.append(order.n)

    async with TestBus(app, partitions=1) as bus:
        order = Order(key="k", n=1)
        publisher = Publisher(bus.transport, source="bus://a")
        envelope = publisher.envelope(order)
        await bus.transport.send(record_for(order, envelope))
        await bus.transport.send(record_for(order, envelope._replace(source="bus://b")))
        await bus.drain()
    assert effects == [1, 1]


async def test_a_failed_try_records_nothing_and_a_later_try_completes_once() -> None:
    store = MemoryDedupStore()
    tries: Counter[int] = Counter()
    app = App("it-dedup-retry", retry=NO_WAIT)

    @app.handler(dedup=store)
    async def flaky(order: Order, ctx: Context) -> Charged:
        tries[order.n] += 1
        ctx.transaction.connection[("charge", order.n)] = tries[order.n]  # the effect
        if tries[order.n] < 3:
            raise ConnectionError("payment gateway blip")
        return Charged(key=order.key, n=order.n)

    async with TestBus(app, partitions=1) as bus:
        await publish_copies(bus, Order(key="k", n=5), 2, source="bus://shop")
        await bus.drain()
        # one output; the copy may re-send it, with the same CloudEvents id
        assert len({e.id for e in bus.envelopes(Charged)}) == 1
    assert tries[5] == 3
    # only the successful try's effect was committed, together with the dedup record
    assert store.data[("charge", 5)] == 3


async def test_handlers_without_dedup_keep_at_least_once() -> None:
    effects: list[int] = []
    app = App("it-dedup-off", retry=NO_WAIT)

    @app.handler
    async def charge(order: Order, ctx: Context) -> None:
        effects.append(order.n)

    async with TestBus(app, partitions=1) as bus:
        await publish_copies(bus, Order(key="k", n=9), 2, source="bus://shop")
        await bus.drain()
    assert effects == [9, 9]


async def test_an_effect_in_the_sqlite_store_commits_with_the_dedup_record(tmp_path: Path) -> None:
    store = SqliteDedupStore(tmp_path / "charges.db")
    await store.open()
    await store.database.run(lambda db: db.execute("CREATE TABLE charges (n INTEGER)"))
    app = App("it-dedup-sqlite", retry=NO_WAIT)
    failed_once: set[int] = set()

    @app.handler(dedup=store)
    async def charge(order: Order, ctx: Context) -> Charged:
        await ctx.transaction.run(
            lambda db: db.execute("INSERT INTO charges VALUES (?)", (order.n,))
        )
        if order.n % 2 and order.n not in failed_once:  # fails after writing: rolled back
            failed_once.add(order.n)
            raise ConnectionError("after the effect")
        return Charged(key=order.key, n=order.n)

    async with TestBus(app, partitions=2) as bus:
        for n in range(10):
            await publish_copies(bus, Order(key=f"k{n}", n=n), 2, source="bus://shop")
        await bus.drain()
        assert len({e.id for e in bus.envelopes(Charged)}) == 10
    check = SqliteDedupStore(tmp_path / "charges.db")
    await check.open()
    rows = await check.database.run(lambda db: db.execute("SELECT n FROM charges").fetchall())
    await check.close()
    assert sorted(n for (n,) in rows) == list(range(10))  # once each, the failed tries undone


async def test_copies_arriving_before_the_outputs_are_marked_sent_do_not_re_send_them() -> None:
    # the outputs of the first copy are in flight in this worker (it tracks them until
    # acknowledged, and re-sends a refused one itself): the copies have nothing to add
    store = MemoryDedupStore()
    app = App("it-dedup-inflight", retry=NO_WAIT)

    @app.handler(dedup=store)
    async def charge(order: Order) -> Charged:
        return Charged(key=order.key, n=order.n)

    async with TestBus(app, partitions=1) as bus:
        for n in range(10):
            await publish_copies(bus, Order(key="k", n=n), 3, source="bus://shop")
        await bus.drain()
        charged = bus.records(Charged.bus_topic)
        stats = bus.runner.workers[0].stats
    assert (stats.handled, stats.duplicates) == (10, 20)
    assert len(charged) == 10


async def test_outputs_an_earlier_process_recorded_but_never_confirmed_are_re_sent_once() -> None:
    # the earlier process completed the message, then died before its outputs were acked:
    # the copy re-sends them byte for byte (same CloudEvents id), without running the handler
    store = MemoryDedupStore()
    runs: list[int] = []
    app = App("it-dedup-dead-process", retry=NO_WAIT)

    @app.handler(dedup=store, name="charge")
    async def charge(order: Order) -> Charged:
        runs.append(order.n)
        return Charged(key=order.key, n=order.n)

    order = Order(key="k", n=3)
    shop = Publisher(MemoryTransport(MemoryBroker()), source="bus://shop")
    envelope = shop.envelope(order)
    output = Charged(key="k", n=3)
    recorded = record_for(output, Publisher(shop.transport, source="bus://app").envelope(output))
    await store.record(DedupKey("charge", "bus://shop", envelope.id), [recorded])

    async with TestBus(app, partitions=1) as bus:
        for _ in range(2):  # the redelivery, and one more copy while the re-send is in flight
            await bus.transport.send(record_for(order, envelope))
        await bus.drain()
        charged = bus.records(Charged.bus_topic)
    assert runs == []
    assert [(r.key, r.value, r.headers) for r in charged] == [
        (recorded.key, recorded.value, recorded.headers)
    ]
