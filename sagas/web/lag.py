"""How far each consumer group is behind, per partition: end offset minus committed.

Read without joining the group (joining would rebalance the running workers): the memory
broker's committed offsets directly; on Kafka the admin client's group offsets and a
group-less consumer's end offsets. Any other transport: unknown (None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bus import BusError, MemoryTransport, TopicPartition, Transport

__all__ = ["PartitionLag", "group_lag"]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end: int
    #: The group's committed offset (None: it never committed on this partition).
    committed: int | None

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


async def group_lag(
    transport: Transport, group: str, topics: Sequence[str]
) -> list[PartitionLag] | None:
    """Every partition of ``topics`` for ``group``; None when the transport cannot tell."""
    existing = set(await transport.list_topics())
    topics = [t for t in topics if t in existing]
    if isinstance(transport, MemoryTransport):
        broker = transport.broker
        committed = broker.group_committed(group)
        return [
            PartitionLag(group, t, i, broker.end_offset(tp), committed.get(tp))
            for t in topics
            for i in range(len(broker.partitions(t)))
            for tp in [TopicPartition(t, i)]
        ]
    admin_of = getattr(transport, "admin", None)
    if admin_of is None or not topics:
        return None if admin_of is None else []
    return await _kafka_lag(transport, admin_of, group, topics)


async def _kafka_lag(
    transport: Transport, admin_of: Any, group: str, topics: Sequence[str]
) -> list[PartitionLag] | None:
    try:
        admin = await admin_of()
        offsets = await admin.list_consumer_group_offsets(group)
        committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        tps = [
            TopicPartition(t, i) for t in topics for i in range(await transport.partitions_for(t))
        ]
        consumer = transport.consumer(list(topics), group=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
    except (BusError, OSError, AttributeError):
        return None
    except Exception as exc:  # aiokafka's own errors: the page says "unknown", not 500
        if type(exc).__module__.startswith("aiokafka"):
            return None
        raise
    return [
        PartitionLag(
            group, tp.topic, tp.partition, ends.get(tp, 0), committed.get((tp.topic, tp.partition))
        )
        for tp in tps
    ]
