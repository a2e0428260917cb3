"""The in-process broker: topics, partitioned logs with offsets and retention, consumer groups.

Keys map to partitions exactly as on Kafka; records get offsets; consumer groups
(:mod:`bus.transports.memory_groups`) split partitions and keep committed offsets.
:meth:`MemoryBroker.fail_deliveries` injects delivery failures for tests. All state lives on
one event loop; nothing here is thread-safe.

Example::

    broker = MemoryBroker(default_partitions=3, retention_records=10_000)
    broker.create_topic("hr.events")
    broker.records("hr.events")  # []
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bus.errors import (
    BusError,
    ConfigError,
    MessageTooLargeError,
    TopicNotFoundError,
    TransportError,
)
from bus.record import OutgoingRecord, Record, RecordMetadata, TopicPartition
from bus.transports.base import TopicState
from bus.transports.memory_groups import ConsumerGroups

if TYPE_CHECKING:
    from bus.transports.memory_consumer import MemoryConsumer

__all__ = ["MemoryBroker"]

# Record's fields in order, without the NamedTuple's Python-level __new__ (hot path)
_new_record = tuple.__new__


class MemoryBroker:
    """Topics, partitions, offsets and consumer groups, in memory."""

    def __init__(
        self,
        *,
        default_partitions: int = 1,
        auto_create_topics: bool = True,
        max_record_bytes: int = 1_048_576,
        retention_records: int | None = None,
    ) -> None:
        if default_partitions < 1:
            raise ConfigError("default_partitions must be at least 1")
        if retention_records is not None and retention_records < 1:
            raise ConfigError("retention_records must be at least 1 (or None: keep everything)")
        #: Records kept per partition (oldest dropped first, like Kafka's retention); None
        #: keeps everything. A consumer behind the log start resumes at the log start.
        self.retention_records = retention_records
        self.default_partitions = default_partitions
        self.auto_create_topics = auto_create_topics
        self.max_record_bytes = max_record_bytes
        self._logs: dict[str, list[list[Record]]] = {}
        self._configs: dict[str, dict[str, str]] = {}
        #: Offset of the first record still kept, per partition (0 until retention trims).
        self._starts: dict[TopicPartition, int] = {}
        self._changed: asyncio.Event | None = None
        #: Set by :meth:`fail_deliveries`: the error sends' deliveries fail with, and how
        #: many more may fail (None: until :meth:`deliver_again`).
        self._failing: tuple[BusError, int | None] | None = None
        self._groups = ConsumerGroups(self._partition_count, self._notify)

    # -- fault injection ------------------------------------------------------------------
    def fail_deliveries(self, count: int | None = None, error: BusError | None = None) -> None:
        """Fail the next ``count`` sends (None: every send until :meth:`deliver_again`)
        *after* ``send`` returned, as a broker that goes away with records in flight does:
        the record is not appended and its delivery fails with ``error`` (default a
        retryable :class:`~bus.errors.TransportError`) on the next turn of the loop.

        Example::

            broker.fail_deliveries()        # the broker is away
            ...
            broker.deliver_again()          # and back
        """
        if count is not None and count < 1:
            raise ConfigError("fail_deliveries: count must be at least 1 (or None)")
        error = error or TransportError("memory broker: delivery failed (injected)")
        self._failing = (error, count)

    def deliver_again(self) -> None:
        """End :meth:`fail_deliveries`: sends are appended and acknowledged again."""
        self._failing = None

    def _failed_delivery(self) -> asyncio.Future[RecordMetadata]:
        """A delivery that fails on the next turn of the loop (fail_deliveries)."""
        assert self._failing is not None
        error, left = self._failing
        if left is not None:
            self._failing = (error, left - 1) if left > 1 else None
        loop = asyncio.get_running_loop()
        delivery: asyncio.Future[RecordMetadata] = loop.create_future()
        loop.call_soon(_fail, delivery, error)
        return delivery

    # -- topics -------------------------------------------------------------------------
    def create_topic(
        self, name: str, partitions: int | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        """Create ``name`` if missing (an existing topic keeps its partitions and configs)."""
        if name not in self._logs:
            count = partitions or self.default_partitions
            self._logs[name] = [[] for _ in range(count)]
            self._configs[name] = dict(config or {})
            self._groups.rebalance_subscribers(name)

    def describe(self, name: str) -> TopicState | None:
        if name not in self._logs:
            return None
        return TopicState(name, len(self._logs[name]), 1, dict(self._configs.get(name, {})))

    def topics(self) -> dict[str, int]:
        """Every topic with its partition count."""
        return {name: len(parts) for name, parts in self._logs.items()}

    def partitions(self, topic: str) -> list[list[Record]]:
        log = self._logs.get(topic)
        if log is None:
            if not self.auto_create_topics:
                raise TopicNotFoundError(
                    f"topic {topic!r} does not exist; create it first (ensure_topics) "
                    "or build the MemoryBroker with auto_create_topics=True"
                )
            self.create_topic(topic)
            log = self._logs[topic]
        return log

    def end_offset(self, tp: TopicPartition) -> int:
        return self.log_start(tp) + len(self.partitions(tp.topic)[tp.partition])

    def log_start(self, tp: TopicPartition) -> int:
        """Offset of the oldest record still kept in ``tp``."""
        return self._starts.get(tp, 0)

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic``, partition by partition (for tests and tools)."""
        return [r for part in self.partitions(topic) for r in part]

    # -- appends ------------------------------------------------------------------------
    def append(self, record: OutgoingRecord, partition: int) -> RecordMetadata:
        size = record.size_bytes()
        if size > self.max_record_bytes:
            raise MessageTooLargeError(
                f"record of {size} bytes for topic {record.topic!r} is above the limit of "
                f"{self.max_record_bytes} bytes (max_record_bytes)"
            )
        log = self.partitions(record.topic)
        if not 0 <= partition < len(log):
            raise TopicNotFoundError(
                f"topic {record.topic!r} has {len(log)} partitions; partition {partition} does not exist"
            )
        part = log[partition]
        tp = TopicPartition(record.topic, partition) if self.retention_records else None
        start = self._starts.get(tp, 0) if tp is not None else 0
        offset = start + len(part)
        part.append(
            _new_record(
                Record,
                (
                    record.topic,
                    partition,
                    offset,
                    record.key,
                    record.value,
                    headers if type(headers := record.headers) is tuple else tuple(headers),
                    time.time_ns() // 1_000_000,
                ),
            )
        )
        if tp is not None and self.retention_records is not None:
            self._trim(tp, part, start, self.retention_records)
        self._notify()
        return RecordMetadata(record.topic, partition, offset)

    def _trim(self, tp: TopicPartition, part: list[Record], start: int, keep: int) -> None:
        """Drop the oldest records beyond ``keep``, a quarter at a time (amortized O(1))."""
        if len(part) > keep + max(keep // 4, 1):
            drop = len(part) - keep
            del part[:drop]
            self._starts[tp] = start + drop

    # -- waiting ------------------------------------------------------------------------
    def _notify(self) -> None:
        """Wake every waiting fetch (an append or a group change happened).

        The event is set once per waiting round and replaced only when someone waits
        again, so a burst of appends costs one wake-up, not one per record.
        """
        event = self._changed
        if event is not None:
            self._changed = None
            event.set()

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return when a record is appended or a group changes, or after ``timeout_s``."""
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            pass

    # -- groups -------------------------------------------------------------------------
    def group_committed(self, group: str) -> dict[TopicPartition, int]:
        """The committed offsets of ``group`` (a copy)."""
        return dict(self._groups.committed_offsets(group))

    def group_lag(self, group: str, topics: Sequence[str]) -> int:
        """Records in ``topics`` that ``group`` has not committed yet (exact)."""
        committed = self._groups.committed_offsets(group)
        lag = 0
        for topic in topics:
            for i in range(len(self.partitions(topic))):
                tp = TopicPartition(topic, i)
                lag += self.end_offset(tp) - max(committed.get(tp, 0), self.log_start(tp))
        return lag

    def join(self, group: str, member: MemoryConsumer) -> None:
        self._groups.join(group, member)

    def leave(self, group: str, member: MemoryConsumer) -> None:
        self._groups.leave(group, member)

    def settle(
        self, group: str, member_id: int, owned: frozenset[TopicPartition]
    ) -> tuple[frozenset[TopicPartition], frozenset[TopicPartition]]:
        """(to revoke, free to take) for a member that owns ``owned`` now."""
        return self._groups.settle(group, member_id, owned)

    def release(self, group: str, member_id: int, tps: frozenset[TopicPartition]) -> None:
        self._groups.release(group, member_id, tps)

    def take(self, group: str, member_id: int, tps: frozenset[TopicPartition]) -> None:
        self._groups.take(group, member_id, tps)

    def commit(self, group: str, member_id: int, offsets: Mapping[TopicPartition, int]) -> None:
        self._groups.commit(group, member_id, offsets)

    def committed(self, group: str, tp: TopicPartition) -> int | None:
        return self._groups.committed(group, tp)

    def _partition_count(self, topic: str) -> int | None:
        log = self._logs.get(topic)
        return None if log is None else len(log)


def _fail(delivery: asyncio.Future[RecordMetadata], error: BusError) -> None:
    if not delivery.done():
        delivery.set_exception(error)
