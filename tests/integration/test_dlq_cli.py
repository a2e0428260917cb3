"""``bus dlq list/show/replay`` against the real broker, with a worker dead-lettering."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bus import (
    App,
    Event,
    OutgoingRecord,
    Publisher,
    Record,
    RetryPolicy,
    TopicSpec,
    Worker,
    WorkerSettings,
    dead_letter,
    utc_now,
)
from bus.devbroker import DevBroker
from bus.dlq import REPLAYS_HEADER
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
RUN = unique("dlq")


class OrderPlaced(Event, type="it.dlq.order.placed.v1", topic=f"it.dlq.orders.{RUN}", key="id"):
    id: str
    fail: bool = False


ORDERS = f"it.dlq.orders.{RUN}"


def bus(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BUS_TRANSPORT": "kafka", "BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "bus", "dlq", *args, "--topic", ORDERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def read_all(transport: KafkaTransport, topic: str, expected: int) -> list[Record]:
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    got: list[Record] = []

    async def fetched() -> int:
        for records in (await consumer.fetch(max_records=100, timeout_s=0.2)).values():
            got.extend(records)
        return len(got)

    try:
        await wait_until(
            fetched,
            until=lambda n: n >= expected,
            timeout_s=30,
            what=f"{expected} records on {topic}",
            interval_s=0,
        )
    finally:
        await consumer.stop()
    assert len(got) == expected, f"{topic}: {len(got)} of {expected} records"
    return got


async def test_list_show_and_replay_on_kafka_until_the_replay_limit(
    kafka_broker: DevBroker,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    config = kafka_test_config(bootstrap)
    transport = KafkaTransport(config)
    await transport.start()
    await transport.ensure_topics(
        [TopicSpec(ORDERS, partitions=1), TopicSpec(ORDERS + ".dlq", partitions=2)]
    )
    app = App(unique("dlq-app"), retry=RetryPolicy(max_attempts=1))

    @app.handler
    async def take_order(order: OrderPlaced) -> None:
        if order.fail:
            raise ValueError(f"order {order.id}: warehouse closed")

    stop = asyncio.Event()
    worker = Worker(app, KafkaTransport(config), WorkerSettings(commit_interval_s=0.1))
    await worker.transport.start()
    task = asyncio.create_task(worker.run(stop))
    try:
        publisher = Publisher(transport, source="bus://test")
        await publisher.publish(OrderPlaced(id="o-1", fail=True))
        await publisher.publish(OrderPlaced(id="o-2"))
        await publisher.publish(OrderPlaced(id="o-3", fail=True))
        await transport.publish(OutgoingRecord(ORDERS, key=b"junk", value=b"\xff not json"))
        letters = await read_all(transport, ORDERS + ".dlq", 3)
        failed_id = next(
            r.header("ce_id").decode()  # type: ignore[union-attr]
            for r in letters
            if b"o-1" in (r.value or b"")
        )

        listed = await asyncio.to_thread(bus, "list", bootstrap=bootstrap)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:3] == ["ID", "TIME", "TOPIC"]
        assert len(lines) == 4
        assert "3 dead letter(s) in 1 topic(s)" in listed.stderr
        row = next(line for line in lines if line.startswith(failed_id))
        assert "handler_failed" in row
        assert "take_order" in row
        assert "ValueError: order o-1: warehouse closed" in row

        decoded = await asyncio.to_thread(
            bus, "list", "--reason", "decode", "--json", bootstrap=bootstrap
        )
        [junk] = orjson.loads(decoded.stdout)
        assert junk["id"] == junk["location"]
        assert junk["value"] == {"base64": base64.b64encode(b"\xff not json").decode()}
        assert junk["topic"] == ORDERS

        shown = await asyncio.to_thread(bus, "show", failed_id, bootstrap=bootstrap)
        assert shown.returncode == 0, shown.stderr
        assert f"id:        {failed_id}" in shown.stdout
        assert '    "id": "o-1",' in shown.stdout  # the payload, indented
        assert any(
            line.startswith("  bus_dlq_handler: ") and line.endswith("take_order")
            for line in shown.stdout.splitlines()
        )
        missing = await asyncio.to_thread(bus, "show", "nope", bootstrap=bootstrap)
        assert missing.returncode == 2
        assert "no dead letter has ID 'nope'" in missing.stderr

        dry = await asyncio.to_thread(bus, "replay", failed_id, "--dry-run", bootstrap=bootstrap)
        assert dry.returncode == 0, dry.stderr
        assert f"would replay  {failed_id}" in dry.stdout
        assert f"-> {ORDERS} (replay 1)" in dry.stdout
        everything = await asyncio.to_thread(bus, "replay", bootstrap=bootstrap)
        assert everything.returncode == 2
        assert "--all" in everything.stderr

        # replayed, handled again, fails again: a second copy with the replay count
        replayed = await asyncio.to_thread(bus, "replay", failed_id, bootstrap=bootstrap)
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 1 dead letter(s); refused 0" in replayed.stdout
        letters = await read_all(transport, ORDERS + ".dlq", 4)
        copies = [r for r in letters if r.header("ce_id") == failed_id.encode()]
        assert sorted(r.header(REPLAYS_HEADER) or b"0" for r in copies) == [b"0", b"1"]
        again = next(r for r in copies if r.header(REPLAYS_HEADER) == b"1")
        assert again.header("bus_dlq_offset") == b"4"  # it went through the original topic
        # show: the newest copy (the replay that failed again), naming the older one
        shown_again = await asyncio.to_thread(bus, "show", failed_id, bootstrap=bootstrap)
        assert shown_again.returncode == 0, shown_again.stderr
        assert shown_again.stdout.count(f"id:        {failed_id}") == 1
        assert f"location:  {again.topic}:{again.partition}:{again.offset}" in shown_again.stdout
        assert "copies:    2 with this ID; this is the newest" in shown_again.stdout
        nothing = await asyncio.to_thread(
            bus, "replay", "--type", "no.such.type.*", bootstrap=bootstrap
        )
        assert nothing.returncode == 1
        assert "nothing matched" in nothing.stdout

        refused = await asyncio.to_thread(
            bus, "replay", failed_id, "--max-replays", "1", bootstrap=bootstrap
        )
        assert refused.returncode == 1
        assert "replayed 1 time(s) already (limit 1)" in refused.stdout
        assert "--max-replays" in refused.stdout
        assert "replayed 0 dead letter(s); refused 1" in refused.stdout

        # the undecodable record, by filter, to another topic, key and bytes untouched
        elsewhere = unique("it.dlq.elsewhere")
        await transport.ensure_topics([TopicSpec(elsewhere, partitions=1)])
        moved = await asyncio.to_thread(
            bus, "replay", "--reason", "decode", "--to", elsewhere, bootstrap=bootstrap
        )
        assert moved.returncode == 0, moved.stderr
        [copy] = await read_all(transport, elsewhere, 1)
        assert (copy.key, copy.value, list(copy.headers)) == (
            b"junk",
            b"\xff not json",
            [(REPLAYS_HEADER, b"1")],
        )
    finally:
        stop.set()
        await task
        await worker.transport.stop()
        await transport.stop()
    assert worker.stats.handled == 1
    assert worker.stats.dead_lettered == 4


def test_dlq_commands_refuse_the_memory_transport_and_unbounded_replays() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bus", "dlq", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "BUS_TRANSPORT": "memory"},
        )

    listed = run("list")
    assert listed.returncode == 2
    assert "another process cannot read its dead letters" in listed.stderr
    assert "--transport kafka" in listed.stderr
    unbounded = run("replay", "--transport", "kafka")
    assert unbounded.returncode == 2
    assert "or --all" in unbounded.stderr
    zero = run("replay", "--all", "--max-replays", "0", "--transport", "kafka")
    assert zero.returncode == 2
    assert "--max-replays must be at least 1" in zero.stderr
    since = run("list", "--since", "last week")
    assert since.returncode == 2
    assert "--since 'last week'" in since.stderr


async def test_list_without_topic_reads_every_dlq_topic_and_lists_them_in_order(
    kafka_broker: DevBroker,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    run = unique("it.dlqmany")
    topics = [f"{run}.{n:02d}.dlq" for n in range(30)]
    handler = f"h-{run}"  # only this test's dead letters match --handler
    transport = KafkaTransport(kafka_test_config(bootstrap))
    await transport.start()
    try:
        await transport.ensure_topics([TopicSpec(t, partitions=2) for t in topics])
        letters = [
            dead_letter(
                Record(
                    topic[: -len(".dlq")], 0, n, key, b"{}", (("ce_id", f"{topic}/{n}".encode()),)
                ),
                topic=topic,
                reason="handler_failed",
                error=ValueError("no"),
                app="it",
                handler=handler,
                attempts=1,
                now=utc_now(),
            )
            for topic in reversed(topics)  # written last topic first: the order is the listing's
            for n, key in enumerate([b"a", b"b", b"c", b"d"])
        ]
        await transport.publish_many(letters)
    finally:
        await transport.stop()

    env = {**os.environ, "BUS_TRANSPORT": "kafka", "BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bus", "dlq", "list", "--json", "--handler", handler],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    where = [
        (d["dlq"]["topic"], d["dlq"]["partition"], d["dlq"]["offset"])
        for d in orjson.loads(listed.stdout)
    ]
    assert len(where) == len(letters)
    assert {topic for topic, _, _ in where} == set(topics)
    assert where == sorted(where), "listed by dead-letter topic, partition, offset"
    reading = re.search(r"reading (\d+) dead-letter topics", listed.stderr)
    assert reading is not None, listed.stderr
    assert int(reading[1]) >= len(topics)
