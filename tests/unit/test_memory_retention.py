"""The memory log's retention: bounded memory, absolute offsets, consumers resume at the start."""

from __future__ import annotations

from bus import MemoryBroker, MemoryTransport, OutgoingRecord, TopicPartition

TP = TopicPartition("ret", 0)


async def fill(broker: MemoryBroker, count: int) -> MemoryTransport:
    transport = MemoryTransport(broker)
    await transport.start()
    for i in range(count):
        await transport.publish(OutgoingRecord("ret", key=None, value=str(i).encode()))
    return transport


async def test_retention_bounds_the_log_and_keeps_offsets_absolute() -> None:
    broker = MemoryBroker(retention_records=100)
    transport = await fill(broker, 1000)
    kept = broker.records("ret")
    assert 100 <= len(kept) <= 125
    assert kept[-1].offset == 999
    assert kept[0].offset == broker.log_start(TP)
    assert broker.end_offset(TP) == 1000
    assert [int(r.value or b"") for r in kept] == list(range(kept[0].offset, 1000))
    meta = await transport.publish(OutgoingRecord("ret", key=None, value=b"next"))
    assert meta.offset == 1000


async def test_a_consumer_behind_the_log_start_resumes_at_the_start() -> None:
    broker = MemoryBroker(retention_records=50)
    transport = await fill(broker, 10)
    consumer = transport.consumer(["ret"], group="slow")
    await consumer.start()
    first = await consumer.fetch(max_records=5, timeout_s=0)
    assert [r.offset for r in first[TP]] == [0, 1, 2, 3, 4]
    for i in range(500):
        await transport.publish(OutgoingRecord("ret", key=None, value=str(i).encode()))
    batch = await consumer.fetch(max_records=1000, timeout_s=0)
    assert batch[TP][0].offset == broker.log_start(TP)
    assert batch[TP][-1].offset == 509
    await consumer.stop()


async def test_a_new_group_from_earliest_starts_at_the_log_start_and_lag_is_exact() -> None:
    broker = MemoryBroker(retention_records=20)
    transport = await fill(broker, 200)
    consumer = transport.consumer(["ret"], group="new", offset_reset="earliest")
    await consumer.start()
    batch = await consumer.fetch(max_records=1000, timeout_s=0)
    assert batch[TP][0].offset == broker.log_start(TP)
    assert broker.group_lag("new", ["ret"]) == 200 - broker.log_start(TP)
    await consumer.commit({TP: 200})
    assert broker.group_lag("new", ["ret"]) == 0
    await consumer.stop()


async def test_without_retention_everything_is_kept() -> None:
    broker = MemoryBroker()
    await fill(broker, 300)
    assert len(broker.records("ret")) == 300
    assert broker.log_start(TP) == 0
