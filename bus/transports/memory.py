"""The in-process partitioned log: the embedded default transport and the test kit's engine.

Not a mock: topics have partitions, keys map to partitions exactly as on Kafka, records
get offsets, consumer groups split partitions and keep committed offsets, and a member
joining or leaving rebalances the group. Several :class:`MemoryTransport` clients on one
:class:`MemoryBroker` behave like several processes on one cluster.

A rebalance is *eager with a barrier*, as Kafka's: a partition moves to its new owner
only after the old owner's listener was told it is revoked (and committed), so records
are never handled by two members at once. The old owner learns of the change on its next
``fetch``; a stopped member releases its partitions at once.

All state lives on one event loop; nothing here is thread-safe. The broker
(:mod:`bus.transports.memory_broker`), its consumer groups
(:mod:`bus.transports.memory_groups`) and the consumer (:mod:`bus.transports.memory_consumer`)
have their own modules; :class:`MemoryBroker` and :class:`MemoryConsumer` are re-exported here.

Example::

    broker = MemoryBroker(default_partitions=3)
    transport = MemoryTransport(broker)
    await transport.start()
    await transport.publish(OutgoingRecord("hr.events", key=b"e-1", value=b"{}"))
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from bus.errors import TransportClosedError
from bus.partitioning import partition_for_key
from bus.record import OutgoingRecord, RecordMetadata
from bus.transports.base import Acked, Delivery, RebalanceListener, TopicSpec, TopicState
from bus.transports.memory_broker import MemoryBroker
from bus.transports.memory_consumer import MemoryConsumer
from bus.types import OffsetReset

__all__ = ["MemoryBroker", "MemoryConsumer", "MemoryTransport"]


class MemoryTransport:
    """A client of a :class:`MemoryBroker` (a new private broker when none is given)."""

    name = "memory"

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.broker = broker or MemoryBroker()
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._started = False

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    @property
    def ready(self) -> bool:
        """An in-process log is reachable whenever the client is started."""
        return self._started

    async def probe(self, timeout_s: float = 2.0) -> bool:
        return self._started

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.broker.create_topic(spec.name, spec.partitions, spec.config)

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        found = (self.broker.describe(n) for n in names)
        return {state.name: state for state in found if state is not None}

    async def list_topics(self) -> list[str]:
        return sorted(t for t in self.broker.topics() if not t.startswith("__"))

    async def partitions_for(self, topic: str) -> int:
        return len(self.broker.partitions(topic))

    def _partition(self, record: OutgoingRecord) -> int:
        if record.partition is not None:
            return record.partition
        count = len(self.broker.partitions(record.topic))
        if record.key is not None:
            return partition_for_key(record.key, count)
        counter = self._round_robin.setdefault(record.topic, itertools.count())
        return next(counter) % count

    async def send(self, record: OutgoingRecord) -> Delivery:
        if not self._started:
            raise TransportClosedError(
                "MemoryTransport is not started (use 'await transport.start()')"
            )
        broker = self.broker
        if broker._failing is not None:
            return broker._failed_delivery()
        return Acked(broker.append(record, self._partition(record)))

    async def publish(self, record: OutgoingRecord) -> RecordMetadata:
        return await (await self.send(record))

    async def publish_many(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        return [await (await self.send(r)) for r in records]

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> MemoryConsumer:
        return MemoryConsumer(
            self.broker, topics, group=group, offset_reset=offset_reset, listener=listener
        )
