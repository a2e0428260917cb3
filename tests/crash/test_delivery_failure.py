"""A delivery that fails after ``send`` returned is a bus error, on both transports.

Memory: :meth:`MemoryBroker.fail_deliveries` fails sends on the next turn of the loop.
Kafka: a real Tansu (``s3://`` storage, so topics survive) is SIGKILLed with records in
flight; aiokafka fails them after ``request_timeout_ms``, and the broker is restarted.
The outbox relay and DLQ replay raise a retryable ``TransportError`` (never aiokafka's
error) and publish everything once the broker is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bus import (
    BusError,
    MemoryBroker,
    MemoryTransport,
    OutgoingRecord,
    TopicSpec,
    Transport,
    TransportError,
)
from bus.devbroker import DevBroker
from bus.dlq import DeadLetter, ReplayPlan, replay_dead_letters
from bus.record import Record
from bus.transports.kafka import KafkaTransport
from sagas import SagaState, SagaStatus
from sagas.outbox import OutboxRelay
from sagas.stores import MemorySagaStore, OutboxEntry, SagaWrite
from tests.conftest import kafka_test_config, unique

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Outage:
    """A broker that goes away with records in flight, and comes back."""

    def __init__(self, transport: Transport, broker: MemoryBroker | DevBroker) -> None:
        self.transport = transport
        self.broker = broker

    def begin(self) -> None:
        if isinstance(self.broker, MemoryBroker):
            self.broker.fail_deliveries()
        else:
            self.broker.kill()

    async def end(self) -> None:
        if isinstance(self.broker, MemoryBroker):
            self.broker.deliver_again()
        else:
            await asyncio.to_thread(self.broker.start)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=[pytest.mark.kafka])])
async def outage(request: pytest.FixtureRequest) -> AsyncIterator[Outage]:
    broker: MemoryBroker | DevBroker
    transport: Transport
    if request.param == "memory":
        broker = MemoryBroker()
        transport = MemoryTransport(broker)
    else:
        broker = request.getfixturevalue("s3_broker")
        # below the outage: records in flight fail while the broker is away
        config = kafka_test_config(
            broker.bootstrap_servers, request_timeout_ms=4000, publish_timeout_s=10.0
        )
        transport = KafkaTransport(config)
    await transport.start()
    yield Outage(transport, broker)
    await transport.stop()


async def _topic(transport: Transport) -> str:
    """A fresh topic the transport has published to (so its partitions are known)."""
    topic = unique("delivery")
    await transport.ensure_topics([TopicSpec(topic, partitions=1)])
    await transport.publish(OutgoingRecord(topic, key=b"k", value=b"warm-up"))
    return topic


async def _values(transport: Transport, topic: str, count: int) -> list[bytes | None]:
    """The first ``count`` values of ``topic`` (a reader of its own, no group)."""
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    values: list[bytes | None] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.fetch(max_records=100, timeout_s=0.5)
            values += [r.value for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return values


async def test_a_delivery_that_fails_after_send_returned_is_a_retryable_bus_error(
    outage: Outage,
) -> None:
    topic = await _topic(outage.transport)
    outage.begin()
    try:
        delivery = await outage.transport.send(OutgoingRecord(topic, key=b"k", value=b"lost"))
        with pytest.raises(TransportError) as failed:
            await delivery
        assert failed.value.retryable
        # read without awaiting (the worker's way): the same bus error
        assert delivery.done()
        assert isinstance(delivery.exception(), BusError)
        with pytest.raises(TransportError):
            delivery.result()
    finally:
        await outage.end()
    assert await outage.transport.publish(OutgoingRecord(topic, key=b"k", value=b"back"))


def _state() -> SagaState:
    return SagaState(
        saga_id="demo:1", name="demo", version=1, status=SagaStatus.RUNNING, data={},
        steps={}, trigger_id="t-1", started_at=T0, updated_at=T0,
    )  # fmt: skip


async def test_the_outbox_relay_raises_a_late_failure_as_retryable_and_publishes_it_later(
    outage: Outage,
) -> None:
    topic = await _topic(outage.transport)
    store = MemorySagaStore()
    await store.open()
    headers = (("ce_id", b"c-1"), ("ce_type", b"demo.command.v1"))
    row = OutboxEntry("c-1", "demo:1", topic, b"demo:1", b"command", headers, T0)
    await store.save(SagaWrite(_state(), 0, outbox=(row,)))
    now = [T0]
    relay = OutboxRelay(store, outage.transport, clock=lambda: now[0])

    outage.begin()
    try:
        with pytest.raises(TransportError) as failed:
            await relay.relay_once()
        assert failed.value.retryable
        assert relay.published == 0
        assert relay.dead_lettered == 0  # a broker away is no reason to dead-letter
    finally:
        await outage.end()
    now[0] += relay.lease  # the claim of the failed batch runs out
    assert await relay.relay_all() == 1
    assert (await _values(outage.transport, topic, 2))[1:] == [b"command"]
    assert (
        await store.claim_outbox(now=now[0] + timedelta(hours=1), limit=10, lease=relay.lease) == []
    )


async def test_dlq_replay_raises_a_late_failure_as_retryable_and_replays_once_back(
    outage: Outage,
) -> None:
    topic = await _topic(outage.transport)
    letter = DeadLetter.from_record(Record(topic + ".dlq", 0, 0, b"k", b"replayed", (), 0))
    plan = ReplayPlan(
        send=((letter, OutgoingRecord(topic, key=b"k", value=b"replayed")),), refused=()
    )

    outage.begin()
    try:
        with pytest.raises(TransportError) as failed:
            await replay_dead_letters(outage.transport, plan)
        assert failed.value.retryable
    finally:
        await outage.end()
    assert await replay_dead_letters(outage.transport, plan) == 1
    assert (await _values(outage.transport, topic, 2))[1:] == [b"replayed"]
