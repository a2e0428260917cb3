"""Reading a whole topic without waiting for a quiet period: a marker closes each partition.

A test that asserts a topic holds *no more* than some records must not read until nothing
came for a while (that passes whenever the extra record is late). Once the writers it
cares about are stopped or drained, :func:`read_to_markers` writes one marker record at
the end of every partition and reads from the start until it has seen them all: every
record written before the call is in the answer, however late it was::

    runner_stopped()  # graceful: everything it sent is acknowledged
    outputs = await read_to_markers(transport, "shop.charged", timeout_s=60)
"""

from __future__ import annotations

import uuid

from bus import OutgoingRecord, Record, TopicPartition
from bus.transports.kafka import KafkaTransport
from tests.waiting import wait_until

MARKER_HEADER = "test_end_marker"


async def read_to_markers(
    transport: KafkaTransport, topic: str, *, timeout_s: float
) -> list[Record]:
    """Every record of ``topic`` written before the call, in fetch order, markers left out."""
    partitions = await transport.partitions_for(topic)
    mine = uuid.uuid4().hex.encode()  # a marker of an earlier call ends nothing
    await transport.publish_many(
        [
            OutgoingRecord(topic, None, b"", ((MARKER_HEADER, mine),), partition=p)
            for p in range(partitions)
        ]
    )
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    got: list[Record] = []
    ended: set[TopicPartition] = set()

    async def partitions_left() -> int:
        for tp, records in (await consumer.fetch(max_records=1000, timeout_s=0.2)).items():
            for record in records:
                marker = record.header(MARKER_HEADER)
                if marker == mine:
                    ended.add(tp)
                elif marker is None and tp not in ended:
                    got.append(record)
        return partitions - len(ended)

    try:
        await wait_until(
            partitions_left,
            until=lambda left: left == 0,
            timeout_s=timeout_s,
            what=f"the end marker of every partition of {topic} (partitions left shown)",
            interval_s=0,
        )
    finally:
        await consumer.stop()
    return got
