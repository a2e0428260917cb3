"""A transient dedup store fault never drains the input into the dead-letter topic
(issue 16, item 5).

Before: with the dedup store's disk full, 886 commands went to the DLQ as
``handler_failed`` (about 5/s) until stopped: a StoreError from the store's own
transaction counted as a handler failure. Now the lane holds the record and retries with
backoff, ``/readyz`` is 503, ``bus_store_faults_total`` counts it, and every record is
handled once the store is back, with nothing dead-lettered. On the real broker (Tansu)
with a SQLite store whose reads and transactions fail until the test lets them pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bus import (
    App,
    Context,
    DedupEntry,
    DedupKey,
    Event,
    Metrics,
    OutgoingRecord,
    Publisher,
    RetryPolicy,
    Runner,
    SqliteDedupStore,
    TopicSpec,
    WorkerSettings,
)
from bus.devbroker import DevBroker
from bus.errors import StoreError
from bus.http import HttpServer, HttpSettings, runner_readiness
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
RUN = unique("storefault")
ORDERS = 20


class Order(Event, type="it.storefault.order.v1", topic=f"it.storefault.orders.{RUN}", key="key"):
    key: str
    n: int


class FlakyStore:
    """A SQLite dedup store whose first ``get_failures`` reads fail, and whose
    transactions fail while ``broken`` (a full disk, a lost database)."""

    def __init__(self, inner: SqliteDedupStore, *, get_failures: int) -> None:
        self.inner = inner
        self.get_failures = get_failures
        self.broken = True
        self.failed = 0

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: DedupKey) -> DedupEntry | None:
        if self.get_failures > 0:
            self.get_failures -= 1
            self.failed += 1
            raise StoreError("database or disk is full (injected)")
        return await self.inner.get(key)

    async def record(self, key: DedupKey, outputs: Iterable[OutgoingRecord] = ()) -> DedupEntry:
        return await self.inner.record(key, outputs)

    @asynccontextmanager
    async def transaction(self, key: DedupKey) -> AsyncIterator[Any]:
        async with self.inner.transaction(key) as tx:
            yield tx
            if self.broken:  # at commit, after the handler ran: as a full disk does
                self.failed += 1
                raise StoreError("database or disk is full (injected)")

    async def mark_sent(self, keys: Sequence[DedupKey]) -> None:
        await self.inner.mark_sent(keys)

    async def purge(self, older_than: datetime) -> int:
        return await self.inner.purge(older_than)


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_a_failing_dedup_store_holds_the_lane_and_dead_letters_nothing(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    store = FlakyStore(SqliteDedupStore(tmp_path / "dedup.db"), get_failures=3)
    runs: Counter[int] = Counter()
    app = App(f"storefault-{RUN}", retry=RetryPolicy(max_attempts=3, initial_delay_s=0))

    @app.handler(dedup=store)
    async def take(order: Order, ctx: Context) -> None:
        runs[order.n] += 1

    config = kafka_test_config(kafka_broker.bootstrap_servers)
    transport = KafkaTransport(config)
    metrics = Metrics()
    topics = [TopicSpec(Order.bus_topic, partitions=2), TopicSpec(Order.bus_topic + ".dlq")]
    runner = Runner(
        [app], transport, WorkerSettings(fetch_timeout_s=0.05), ensure_topics=topics,
        metrics=metrics,
    )  # fmt: skip
    stop = asyncio.Event()
    labels = {"app": app.name, "handler": "take"}
    # readiness probed on every call: this test is about the store fault, not the cache
    fresh = HttpSettings(readiness_interval_s=0)
    readiness = runner_readiness(runner)
    async with HttpServer(port=0, metrics=metrics, readiness=readiness, settings=fresh) as server:
        task = asyncio.create_task(runner.run(stop))
        try:
            await wait_until(runner.started.is_set, timeout_s=30, what="the runner to start")
            publisher = Publisher(transport, source="/test")
            for n in range(ORDERS):
                await publisher.publish(Order(key=f"k-{n}", n=n))
            worker = runner.workers[0]
            await wait_until(
                lambda: (metrics.sample("bus_store_faults_total", labels) or 0) >= 6,
                timeout_s=60,
                what="store faults to be counted",
            )
            assert await status_of(f"{server.url}/readyz") == 503
            assert worker.stats.dead_lettered == 0
            assert worker.stats.handled == 0
            store.broken = False  # the disk has room again
            await wait_until(
                lambda: worker.stats.handled == ORDERS, timeout_s=60, what="every order handled"
            )
            await wait_until(
                lambda: worker.store_fault is None, timeout_s=10, what="the lanes to go on"
            )
            assert await status_of(f"{server.url}/readyz") == 200
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    assert worker.stats.dead_lettered == 0
    assert metrics.sample(
        "bus_messages_dead_lettered_total",
        {"app": app.name, "topic": Order.bus_topic, "reason": "handler_failed"},
    ) in (None, 0)
    assert set(runs) == set(range(ORDERS))  # each ran (and was rolled back) until it stuck
