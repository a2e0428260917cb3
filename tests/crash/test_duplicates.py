"""Duplicates on the real broker: the same CloudEvent published three times runs once.

Issue 6(b): each of 1,000 events is published 3 times with the same ``source`` + ``id``
(its copies 0 ms, 500 ms and 550 ms after its first send), and 100 events reuse an id
under another ``source``. The handler (``dedup=`` a SQLite store, its effect written in
the store's transaction) must leave 1,100 effects and 1,100 downstream events: counted
as distinct CloudEvents ids AND as records on the output topic, so a duplicate that
re-sent the outputs of its first copy (same ids, see ``Worker._already_done``) shows.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bus import (
    App,
    Context,
    Event,
    OutgoingRecord,
    Publisher,
    RetryPolicy,
    Runner,
    SqliteDedupStore,
    TopicSpec,
    WorkerSettings,
    decode,
    record_for,
)
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.markers import read_to_markers
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
log = logging.getLogger(__name__)

RUN = unique("dup")
ORDERS = f"crash.dup.orders.{RUN}"
CHARGED = f"crash.dup.charged.{RUN}"
EVENTS = 1000
OTHER_SOURCE_EVENTS = 100
#: When each copy of an event is sent, in seconds after its first copy.
COPIES_AT_S = (0.0, 0.5, 0.55)
#: When the same id under another source is sent, after the event's first copy.
OTHER_SOURCE_AT_S = 0.525
#: First copies of successive events are this far apart (~4.5 s to send them all).
SPACING_S = 0.004
SHOP, OTHER_SHOP = "bus://shop", "bus://other-shop"


class Order(Event, type="crash.dup.order.v1", topic=ORDERS, key="key"):
    key: str
    n: int


class Charged(Event, type="crash.dup.charged.v1", topic=CHARGED, key="key"):
    key: str
    n: int
    source: str


def charging_app(store: SqliteDedupStore) -> App:
    app = App(unique("crash-dup"), retry=RetryPolicy(max_attempts=3, jitter_s=0))

    @app.handler(dedup=store)
    async def charge(order: Order, ctx: Context) -> Charged:
        source = ctx.envelope.source
        # the effect, in the dedup transaction: it commits with the dedup record or not at all
        await ctx.transaction.run(
            lambda db: db.execute(
                "INSERT INTO charges (source, n, at) VALUES (?, ?, ?)",
                (source, order.n, time.time()),
            )
        )
        return Charged(key=order.key, n=order.n, source=source)

    return app


def events(publisher: Publisher) -> list[tuple[int, OutgoingRecord, OutgoingRecord | None]]:
    """(event number, its record, the same id under another source or None) per event."""
    out: list[tuple[int, OutgoingRecord, OutgoingRecord | None]] = []
    for n in range(EVENTS):
        order = Order(key=f"k{n % 50}", n=n)
        envelope = publisher.envelope(order)
        other = None
        if n < OTHER_SOURCE_EVENTS:  # same id, same data, another source: another event
            other = record_for(order, envelope._replace(source=OTHER_SHOP))
        out.append((n, record_for(order, envelope), other))
    return out


async def send_on_time(
    transport: KafkaTransport, plan: list[tuple[int, OutgoingRecord, OutgoingRecord | None]]
) -> dict[tuple[int, str], list[float]]:
    """Send each event's copies at their times after its first copy's *actual* send.

    The later sends are scheduled from when the first copy really went out, so a sender
    running late shifts an event's copies together and never squeezes their spacing.
    Returns the send times (seconds from the start) per (event, source).
    """
    sent: dict[tuple[int, str], list[float]] = {}
    deliveries = []
    later: list[tuple[float, int, int, str, OutgoingRecord]] = []  # a heap by due time
    t0 = time.monotonic()
    firsts = iter(plan)
    next_first = 0.0
    seq = 0

    async def send(n: int, source: str, record: OutgoingRecord) -> float:
        deliveries.append(await transport.send(record))
        at = time.monotonic() - t0
        sent.setdefault((n, source), []).append(at)
        return at

    while True:
        now = time.monotonic() - t0
        if later and later[0][0] <= now and (later[0][0] <= next_first or next_first > now):
            _, _, n, source, record = heapq.heappop(later)
            await send(n, source, record)
            continue
        if next_first <= now:
            item = next(firsts, None)
            if item is not None:
                n, record, other = item
                at = await send(n, SHOP, record)
                for delay in COPIES_AT_S[1:]:
                    heapq.heappush(later, (at + delay, seq := seq + 1, n, SHOP, record))
                if other is not None:
                    heapq.heappush(
                        later, (at + OTHER_SOURCE_AT_S, seq := seq + 1, n, OTHER_SHOP, other)
                    )
                next_first = max(next_first + SPACING_S, at)
                continue
            next_first = float("inf")
        if not later:
            break
        await asyncio.sleep(max(0.0, min(later[0][0], next_first) - (time.monotonic() - t0)))
    for delivery in deliveries:
        await delivery
    return sent


@pytest.mark.slow
async def test_three_copies_of_each_event_give_one_effect_and_one_downstream_event(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    config = kafka_test_config(kafka_broker.bootstrap_servers)
    transport = KafkaTransport(config)
    await transport.start()
    store = SqliteDedupStore(tmp_path / "shop.db")
    await store.open()  # the runner's open() is idempotent: our table is created first
    await store.database.run(
        lambda db: db.execute("CREATE TABLE charges (source TEXT, n INTEGER, at REAL)")
    )
    app = charging_app(store)
    specs = [
        TopicSpec(ORDERS, partitions=4),
        TopicSpec(CHARGED, partitions=4),
        TopicSpec(ORDERS + ".dlq", partitions=1),
    ]
    # default settings: outputs are marked sent in the commit loop, every 0.5 s
    runner = Runner([app], KafkaTransport(config), WorkerSettings(), ensure_topics=specs)
    [worker] = runner.workers
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    records_total = EVENTS * len(COPIES_AT_S) + OTHER_SOURCE_EVENTS
    try:
        await asyncio.wait_for(runner.started.wait(), 30)
        await wait_until(lambda: worker.running, timeout_s=30, what="the worker to join its group")
        sent = await send_on_time(transport, events(Publisher(transport, source=SHOP)))
        await wait_until(
            lambda: worker.stats.handled + worker.stats.duplicates,
            until=lambda n: n >= records_total,
            timeout_s=90,
            what=f"{records_total} records handled or recognised as duplicates",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    try:
        # the runner stopped gracefully, so every output it sent is acknowledged: reading
        # to markers written now sees each one, a late re-send included
        outputs = await read_to_markers(transport, CHARGED, timeout_s=60)
    finally:
        await transport.stop()

    # the schedule held: each event's copies went out 500 ms and 550 ms after the first
    shop = [times for (n, source), times in sent.items() if source == SHOP]
    second = [t[1] - t[0] for t in shop]
    third = [t[2] - t[0] for t in shop]
    log.warning(
        "copy spacing: 2nd %.0f-%.0f ms, 3rd %.0f-%.0f ms after the 1st",
        min(second) * 1000,
        max(second) * 1000,
        min(third) * 1000,
        max(third) * 1000,
    )
    assert len(shop) == EVENTS
    assert min(second) >= 0.5
    assert min(third) >= 0.55

    # effects: one per (source, id)
    with sqlite3.connect(tmp_path / "shop.db") as db:
        rows = db.execute("SELECT source, n FROM charges").fetchall()
    effects = Counter(rows)
    assert sum(effects.values()) == EVENTS + OTHER_SOURCE_EVENTS
    assert effects == Counter(
        [(SHOP, n) for n in range(EVENTS)] + [(OTHER_SHOP, n) for n in range(OTHER_SOURCE_EVENTS)]
    )
    stats = worker.stats
    assert (stats.handled, stats.duplicates, stats.dead_lettered) == (
        EVENTS + OTHER_SOURCE_EVENTS,
        EVENTS * (len(COPIES_AT_S) - 1),
        0,
    )

    # downstream: one event per (source, id), and no record sent twice
    envelopes = [decode(r.headers, r.value) for r in outputs]
    ids = Counter(e.id for e in envelopes)
    by_id = {e.id: orjson.loads(e.data) for e in envelopes}
    log.warning("downstream: %d records, %d distinct CloudEvents ids", len(outputs), len(ids))
    assert len(ids) == EVENTS + OTHER_SOURCE_EVENTS
    assert Counter((d["source"], d["n"]) for d in by_id.values()) == Counter(effects)
    resent = {i: c for i, c in ids.items() if c > 1}
    assert len(outputs) == len(ids), f"{len(resent)} output(s) re-sent by a duplicate"
