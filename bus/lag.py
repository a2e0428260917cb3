"""How far a consumer group is behind, per partition: end offset minus committed offset.

Read without joining the group (joining would rebalance the workers it measures): on the
memory broker, its committed offsets; on Kafka, a consumer that *assigns* the partitions
under the group's id (an OffsetFetch, no JoinGroup) and reads each partition's high
watermark from a fetch (``ListOffsets``, hence ``end_offsets()``, is wrong on Tansu; the
fetch's high watermark is right everywhere, as ``bus dlq`` relies on). Another transport:
unknown (None).

Example::

    for p in await group_lag(transport, "identity", ["hr.events"]) or []:
        print(p.topic, p.partition, p.lag)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from bus.errors import TransportError
from bus.record import TopicPartition
from bus.transports.base import Transport
from bus.transports.kafka import KafkaTransport, client_options
from bus.transports.memory import MemoryTransport

__all__ = ["PartitionLag", "group_lag"]

_FETCH_TRIES = 5


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of one group."""

    group: str
    topic: str
    partition: int
    #: The partition's end (the offset of its next record).
    end: int
    #: The group's committed offset (None: it never committed on this partition).
    committed: int | None

    @property
    def lag(self) -> int:
        """Records not yet handled by the group (never negative)."""
        return max(0, self.end - (self.committed or 0))


async def group_lag(
    transport: Transport, group: str, topics: Sequence[str]
) -> list[PartitionLag] | None:
    """Every partition of the existing ``topics`` for ``group``; None when the transport
    cannot tell. Raises :class:`~bus.errors.TransportError` when Kafka does not answer."""
    existing = set(await transport.list_topics())
    tps = [
        TopicPartition(t, i)
        for t in topics
        if t in existing
        for i in range(await transport.partitions_for(t))
    ]
    if isinstance(transport, MemoryTransport):
        broker = transport.broker
        committed = broker.group_committed(group)
        return [PartitionLag(group, *tp, broker.end_offset(tp), committed.get(tp)) for tp in tps]
    if isinstance(transport, KafkaTransport):
        return await _kafka_lag(transport, group, tps) if tps else []
    return None


async def _kafka_lag(
    transport: KafkaTransport, group: str, tps: Sequence[TopicPartition]
) -> list[PartitionLag]:
    kafka_tps = [KafkaTopicPartition(*tp) for tp in tps]
    consumer = AIOKafkaConsumer(
        group_id=group, enable_auto_commit=False, **client_options(transport.config)
    )
    try:
        await consumer.start()
        consumer.assign(kafka_tps)
        committed = {tp: await consumer.committed(tp) for tp in kafka_tps}
        for _ in range(_FETCH_TRIES):
            if all(consumer.highwater(tp) is not None for tp in kafka_tps):
                break
            await consumer.getmany(*kafka_tps, timeout_ms=300, max_records=1)
    except KafkaError as exc:
        raise TransportError(f"kafka: cannot read the offsets of group {group}: {exc!r}") from exc
    finally:
        await consumer.stop()
    return [
        PartitionLag(group, tp.topic, tp.partition, consumer.highwater(tp) or 0, committed[tp])
        for tp in kafka_tps
    ]
