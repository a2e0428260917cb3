"""The Transport protocol: what the runtime needs from a log of partitioned records.

Two implementations keep the same semantics, proven by one contract suite
(``tests/contract/test_transport.py``): :class:`~bus.transports.memory.MemoryTransport`
(in-process, the embedded default and the test kit's engine) and the Kafka transport.

Semantics every implementation keeps:

- a keyed record goes to ``partition_for_key(key, partitions)``; order is kept per partition;
- ``send`` returns once the record is queued; the returned :class:`Delivery` completes when
  the transport acknowledged it (the runtime commits only after that), or fails with a
  :class:`~bus.errors.BusError`;
- a consumer in a group owns a disjoint share of the partitions; ``commit`` stores the
  *next* offset to read; a restarted member resumes from it; committing a partition the
  member no longer owns raises :class:`~bus.errors.CommitFailedError`;
- the rebalance listener hears about revoked partitions before another member gets them.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bus.record import OutgoingRecord, Record, RecordMetadata, TopicPartition
from bus.types import OffsetReset

__all__ = [
    "Acked",
    "Consumer",
    "Delivery",
    "RebalanceListener",
    "TopicSpec",
    "TopicState",
    "Transport",
]


class Delivery(Protocol):
    """The outcome of a send: awaitable for its metadata, and checkable without waiting.

    Its failure is a :class:`~bus.errors.BusError` (``retryable`` set): ``exception()``
    returns one and awaiting raises it, however late the transport learned of it, so no
    caller translates a client library's error. :class:`Acked` is the
    already-acknowledged one the memory transport returns;
    :class:`~bus.transports.kafka_delivery.KafkaDelivery` wraps aiokafka's future.
    """

    def done(self) -> bool: ...

    def exception(self) -> BaseException | None: ...

    def result(self) -> RecordMetadata: ...

    def __await__(self) -> Generator[Any, None, RecordMetadata]: ...


class Acked:
    """A send acknowledged on the spot (cheaper than a resolved future on the hot path)."""

    __slots__ = ("_meta",)

    def __init__(self, meta: RecordMetadata) -> None:
        self._meta = meta

    def done(self) -> bool:
        return True

    def exception(self) -> BaseException | None:
        return None

    def result(self) -> RecordMetadata:
        return self._meta

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self._meta
        yield  # a generator that finishes at once


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as an app declares it.

    Example::

        TopicSpec("hr.events", partitions=6, config={"retention.ms": "604800000"})
    """

    name: str
    #: Number of partitions (the unit of parallelism within a consumer group).
    partitions: int = 1
    #: Copies kept by the broker (Kafka only; 1 on a dev broker).
    replication_factor: int = 1
    #: Broker topic configs, e.g. ``retention.ms``, ``cleanup.policy``.
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    #: Copies per partition (the replicas of partition 0).
    replication_factor: int
    #: Configs the broker reports (some brokers report only those set explicitly).
    config: Mapping[str, str] = field(default_factory=dict)


class RebalanceListener(Protocol):
    """Told when the consumer's share of partitions changes."""

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Finish and commit work on ``revoked``: another member takes them after this."""

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Start work on ``assigned`` (positions are at the committed offsets)."""


@runtime_checkable
class Consumer(Protocol):
    """A consumer of some topics, in a consumer group or (``group=None``) reading alone."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Leave the group; the partitions go to the remaining members."""

    async def fetch(
        self, *, max_records: int, timeout_s: float
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        """Records from owned, unpaused partitions, waiting up to ``timeout_s`` for any."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store ``offsets`` (next offset to read) for the group."""

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp``, or None."""

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now."""

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next."""

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        """Stop returning records of ``tps`` from fetch (backpressure)."""

    def resume(self, tps: Sequence[TopicPartition]) -> None: ...

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as last seen, for lag; None before the first fetch."""

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offsets (next offset to be written) of ``tps`` now, asked of the broker
        (one round trip; any partition, owned or not)."""

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offsets of the oldest records still kept in ``tps`` (retention), asked now."""


@runtime_checkable
class Transport(Protocol):
    """A client of one log (an in-process broker or a Kafka cluster)."""

    #: "memory" or "kafka".
    name: str

    @property
    def ready(self) -> bool:
        """True while the transport can reach its log (for /readyz): started and connected."""

    async def probe(self, timeout_s: float = 2.0) -> bool:
        """Ask the log now whether it answers (updates :attr:`ready`); False on no answer."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Flush pending sends, then close."""

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet."""

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        """The named topics that exist, as the broker describes them."""

    async def list_topics(self) -> list[str]:
        """Every topic of the log, sorted (internal ``__*`` topics left out)."""

    async def partitions_for(self, topic: str) -> int:
        """Number of partitions of ``topic``."""

    async def send(self, record: OutgoingRecord) -> Delivery:
        """Queue ``record``; the delivery completes when the transport acknowledged it."""

    async def publish(self, record: OutgoingRecord) -> RecordMetadata:
        """Send ``record`` and wait for its acknowledgement."""

    async def publish_many(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        """Send every record, then wait for all their acknowledgements (in order)."""

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> Consumer:
        """A new consumer of ``topics`` (not started)."""
