"""The runtime on a real Kafka-protocol broker: in process, and as killed processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bus import Publisher, Runner, TopicSpec, TransportError, WorkerSettings, decode
from bus.devbroker import DevBroker
from bus.errors import MessageTooLargeError
from bus.partitioning import partition_for_key
from bus.record import OutgoingRecord
from bus.topics import desired_topics
from bus.transports.kafka import KafkaTransport
from bus.transports.kafka_append import direct_appender
from handlers.hr.contracts import EmployeeHired
from tests.conftest import kafka_test_config, unique
from tests.integration.test_runtime import chain, hire
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


async def read_topic(
    transport: KafkaTransport, topic: str, expected: int, timeout_s: float
) -> list:  # type: ignore[type-arg]
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in (await consumer.fetch(max_records=1000, timeout_s=0.2)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_the_demo_chain_runs_on_kafka_with_correlation_kept(kafka_broker: DevBroker) -> None:
    config = kafka_test_config(kafka_broker.bootstrap_servers)
    transport = KafkaTransport(config)
    await transport.start()
    publisher = Publisher(transport, source="bus://test")
    apps = chain()[0]
    for app in apps:  # the topics are shared with other tests on this broker: own groups
        app.group = unique(app.name)
    specs = desired_topics(apps, partitions=3, replication_factor=1)
    runner = Runner(
        apps, KafkaTransport(config), WorkerSettings(commit_interval_s=0.1), ensure_topics=specs
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await runner.started.wait()
    hires = [hire(9000 + i) for i in range(20)]
    sent = [await publisher.publish(h) for h in hires]
    assert all(m.topic == EmployeeHired.bus_topic for m in sent)
    records = await read_topic(transport, "notifications.events", 10_000, timeout_s=30)
    stop.set()
    await task
    mine = [decode(r.headers, r.value) for r in records]
    mine = [e for e in mine if e.subject and e.subject.startswith("e-90")]
    assert sorted(e.subject for e in mine) == sorted(h.employee_id for h in hires)
    await transport.stop()


async def distinct_outputs(
    transport: KafkaTransport, topic: str, distinct: int, timeout_s: float
) -> Counter[int]:
    """How often each ``n`` was output, reading until ``distinct`` values arrived."""
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    values: Counter[int] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < distinct and time.monotonic() < deadline:
            for records in (await consumer.fetch(max_records=1000, timeout_s=0.2)).values():
                values.update(orjson.loads(decode(r.headers, r.value).data)["n"] for r in records)
    finally:
        await consumer.stop()
    return values


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bus", "run", "tests.integration.echo_app", "--transport", "kafka"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_a_killed_member_and_a_joining_member_lose_no_record(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    run = unique("run")
    effects = tmp_path / "effects.txt"
    env = {
        "ECHO_RUN": run,
        "ECHO_EFFECTS": str(effects),
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_REQUEST_TIMEOUT_MS": "15000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "BUS_COMMIT_INTERVAL_S": "0.2",
    }
    os.environ["ECHO_RUN"] = run
    from tests.integration import echo_app

    config = kafka_test_config(kafka_broker.bootstrap_servers)
    transport = KafkaTransport(config)
    await transport.start()
    pings, pongs = f"it.echo.pings.{run}", f"it.echo.pongs.{run}"
    await transport.ensure_topics(
        [
            TopicSpec(pings, partitions=6),
            TopicSpec(pongs, partitions=6),
            TopicSpec(pings + ".dlq", partitions=1),
        ]
    )

    a, b = _spawn(env), _spawn(env)
    try:
        publisher = Publisher(transport, source="bus://test")
        total = 3000
        for i in range(total):
            msg = echo_app.Ping.model_validate({"key": f"k{i % 100}", "n": i})
            record_future = await transport.send(_record(publisher, msg, pings))
            if i % 500 == 499:
                await record_future
                await asyncio.sleep(0.3)
            if i == 1000:
                await _wait_for_effects(effects, 200, timeout_s=40)
                a.send_signal(signal.SIGKILL)
                a.wait()
            if i == 2000:
                c = _spawn(env)
        values = await distinct_outputs(transport, pongs, total, timeout_s=90)
        assert set(values) == set(range(total)), (
            f"missing {sorted(set(range(total)) - set(values))[:20]}"
        )
        # at-least-once: a record is handled twice only if the killed member handled it
        # and died before committing it (a rebalance on join commits before it moves)
        handled_by: dict[int, list[int]] = {}
        for line in effects.read_text().splitlines():
            pid, _, n = line.split()
            handled_by.setdefault(int(n), []).append(int(pid))
        twice = {n: pids for n, pids in handled_by.items() if len(pids) > 1}
        assert all(a.pid in pids for pids in twice.values()), "a duplicate not caused by the kill"
    finally:
        for p in (a, b, locals().get("c")):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=20)
        await transport.stop()
    assert b.returncode == 0


def _record(publisher: Publisher, message, topic: str):  # type: ignore[no-untyped-def]
    from bus import record_for

    record = record_for(message, publisher.envelope(message))
    assert record.topic == topic
    return record


async def _wait_for_effects(path: Path, count: int, timeout_s: float) -> None:
    await wait_until(
        lambda: len(path.read_text().splitlines()) if path.exists() else 0,
        until=lambda n: n >= count,
        timeout_s=timeout_s,
        what=f"{count} effects",
        interval_s=0.1,
    )


async def test_start_retries_an_unreachable_broker_then_connects_when_it_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late = DevBroker()
    transport = KafkaTransport(kafka_test_config(late.bootstrap_servers, connect_timeout_s=30.0))
    assert transport.ready is False
    starting = asyncio.create_task(transport.start())
    # not a pause: two failed tries logged, so start() went on after a failure
    await wait_until(
        lambda: sum("unreachable" in r.getMessage() for r in caplog.records),
        until=lambda tries: tries >= 2,
        timeout_s=20,
        what="two failed connection tries logged",
    )
    assert not starting.done()
    assert transport.ready is False
    late.start()
    try:
        await asyncio.wait_for(starting, 30)
        assert transport.ready is True
        assert any("unreachable" in r.getMessage() for r in caplog.records)
    finally:
        await transport.stop()
        late.stop()


async def test_start_gives_up_with_a_clear_error_after_the_connect_timeout() -> None:
    nobody = DevBroker()  # a free port nobody listens on
    transport = KafkaTransport(kafka_test_config(nobody.bootstrap_servers, connect_timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"cannot reach .* is the broker up"):
        await transport.start()
    assert time.monotonic() - started < 15
    assert transport.ready is False


async def test_this_broker_refuses_an_idempotent_producer_with_a_clear_error(
    kafka_broker: DevBroker,
) -> None:
    # Tansu answers aiokafka's InitProducerId v0 with UnknownError: idempotence and
    # transactions stay options for Apache Kafka. If this starts passing start(), Tansu
    # gained support: update docs/testing.md's broker notes.
    config = kafka_test_config(kafka_broker.bootstrap_servers, enable_idempotence=True)
    transport = KafkaTransport(config)
    with pytest.raises(TransportError, match="start failed"):
        await transport.start()
    await transport.stop()


async def test_readiness_turns_false_when_the_broker_goes_away() -> None:
    broker = DevBroker()
    broker.start()
    transport = KafkaTransport(kafka_test_config(broker.bootstrap_servers))
    try:
        await transport.start()
        assert await transport.probe(timeout_s=5.0) is True
        assert transport.ready is True
        broker.kill()
        assert await transport.probe(timeout_s=2.0) is False
        assert transport.ready is False
    finally:
        await transport.stop()
        broker.stop()


async def test_a_fetch_during_a_rebalance_returns_by_its_timeout(kafka_broker: DevBroker) -> None:
    # aiokafka's getmany waits for the next assignment while the group rebalances, however
    # long the broker holds the join; a worker told to stop then missed its deadline.
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    topic, group = unique("it.rebalance.fetch"), unique("it-rebalance-fetch")
    await transport.ensure_topics([TopicSpec(topic, partitions=2)])
    first = transport.consumer([topic], group=group)
    second = transport.consumer([topic], group=group)
    try:
        await first.start()
        deadline = time.monotonic() + 30
        while not first.assignment():
            assert time.monotonic() < deadline, "the first member was never assigned"
            await first.fetch(max_records=10, timeout_s=0.1)
        await second.start()
        # the first member learns of the rebalance from its next heartbeat
        subscription = first._consumer._subscription  # type: ignore[attr-defined]
        while not subscription.reassignment_in_progress:
            assert time.monotonic() < deadline, "no rebalance began"
            await asyncio.gather(
                first.fetch(max_records=10, timeout_s=0.05),
                second.fetch(max_records=10, timeout_s=0.05),
            )
        started = time.monotonic()
        assert await first.fetch(max_records=10, timeout_s=0.1) == {}
        assert time.monotonic() - started < 1.5
        assert subscription.reassignment_in_progress, "the rebalance ended first: no proof"
    finally:
        await first.stop()
        await second.stop()
        await transport.stop()


async def test_sends_to_a_known_topic_skip_producer_send_and_arrive_whole(
    kafka_broker: DevBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # KafkaTransport.send appends to aiokafka's accumulator itself (its private API). If
    # an aiokafka upgrade changes what direct_appender checks, this fails here instead
    # of every send quietly taking the slower public path.
    config = kafka_test_config(kafka_broker.bootstrap_servers, max_request_bytes=200_000)
    transport = KafkaTransport(config)
    await transport.start()
    try:
        assert transport._appender is not None
        topic = unique("direct")
        await transport.ensure_topics([TopicSpec(topic, partitions=3)])
        first = await transport.publish(OutgoingRecord(topic, b"k-0", b"v-0", (("h", b"0"),)))
        producer = transport._producer
        assert producer is not None

        async def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("producer.send used for a topic whose partitions are known")

        monkeypatch.setattr(producer, "send", refuse)
        sent = [
            OutgoingRecord(topic, f"k-{i}".encode(), f"v-{i}".encode(), (("h", str(i).encode()),))
            for i in range(1, 31)
        ]
        sent.append(OutgoingRecord(topic, None, b"to partition 2", (), partition=2))
        metadata = [first, *[await transport.publish(r) for r in sent]]
        with pytest.raises(MessageTooLargeError, match="limit"):
            await transport.publish(OutgoingRecord(topic, b"big", b"x" * 200_001))
        got = await read_topic(transport, topic, expected=len(metadata), timeout_s=20)
    finally:
        await transport.stop()
    by_value = {r.value: r for r in got}
    assert len(got) == len(metadata)
    for record, where in zip(
        [OutgoingRecord(topic, b"k-0", b"v-0", (("h", b"0"),)), *sent], metadata, strict=True
    ):
        read = by_value[record.value]
        assert (read.key, tuple(read.headers)) == (record.key, tuple(record.headers))
        assert (read.partition, read.offset) == (where.partition, where.offset)
        if record.key is not None:
            assert read.partition == partition_for_key(record.key, 3)
    assert by_value[b"to partition 2"].partition == 2


async def test_a_transactional_or_serializing_producer_keeps_the_public_send() -> None:
    plain = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    idempotent = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", enable_idempotence=True)
    transactional = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", transactional_id="tx-1")
    serializing = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", value_serializer=bytes)
    assert direct_appender(plain) is not None
    assert direct_appender(idempotent) is not None
    assert direct_appender(transactional) is None
    assert direct_appender(serializing) is None
