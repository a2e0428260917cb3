"""The in-process partitioned log: the embedded default transport and the test kit's engine.

Not a mock: topics have partitions, keys map to partitions exactly as on Kafka, records
get offsets, consumer groups split partitions and keep committed offsets, and a member
joining or leaving rebalances the group. Several :class:`MemoryTransport` clients on one
:class:`MemoryBroker` behave like several processes on one cluster.

A rebalance is *eager with a barrier*, as Kafka's: a partition moves to its new owner
only after the old owner's listener was told it is revoked (and committed), so records
are never handled by two members at once. The old owner learns of the change on its next
``fetch``; a stopped member releases its partitions at once.

All state lives on one event loop; nothing here is thread-safe.

Example::

    broker = MemoryBroker(default_partitions=3)
    transport = MemoryTransport(broker)
    await transport.start()
    await transport.publish(OutgoingRecord("hr.events", key=b"e-1", value=b"{}"))
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bus.errors import (
    BusError,
    CommitFailedError,
    ConfigError,
    MessageTooLargeError,
    TopicNotFoundError,
    TransportClosedError,
    TransportError,
)
from bus.partitioning import partition_for_key
from bus.record import OutgoingRecord, Record, RecordMetadata, TopicPartition
from bus.transports.base import Acked, Delivery, RebalanceListener, TopicSpec, TopicState
from bus.types import OffsetReset

__all__ = ["MemoryBroker", "MemoryConsumer", "MemoryTransport"]

log = logging.getLogger("bus.memory")
_member_ids = itertools.count(1)
# Record's fields in order, without the NamedTuple's Python-level __new__ (hot path)
_new_record = tuple.__new__


@dataclass
class _Group:
    members: dict[int, MemoryConsumer] = field(default_factory=dict)
    #: Who should own each partition once the rebalance settles.
    target: dict[TopicPartition, int] = field(default_factory=dict)
    #: Who owns each partition now (absent: released, free to take).
    owner: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)


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
        self._groups: dict[str, _Group] = {}
        self._changed: asyncio.Event | None = None
        #: Set by :meth:`fail_deliveries`: the error sends' deliveries fail with, and how
        #: many more may fail (None: until :meth:`deliver_again`).
        self._failing: tuple[BusError, int | None] | None = None

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
            self._rebalance_subscribers(name)

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
        return dict(self._group(group).committed)

    def group_lag(self, group: str, topics: Sequence[str]) -> int:
        """Records in ``topics`` that ``group`` has not committed yet (exact)."""
        committed = self._group(group).committed
        lag = 0
        for topic in topics:
            for i in range(len(self.partitions(topic))):
                tp = TopicPartition(topic, i)
                lag += self.end_offset(tp) - max(committed.get(tp, 0), self.log_start(tp))
        return lag

    def _group(self, name: str) -> _Group:
        return self._groups.setdefault(name, _Group())

    def join(self, group: str, member: MemoryConsumer) -> None:
        self._group(group).members[member.member_id] = member
        self._reassign(group)

    def leave(self, group: str, member: MemoryConsumer) -> None:
        g = self._group(group)
        g.members.pop(member.member_id, None)
        for tp in [tp for tp, owner in g.owner.items() if owner == member.member_id]:
            del g.owner[tp]
        self._reassign(group)

    def _rebalance_subscribers(self, topic: str) -> None:
        for name, g in self._groups.items():
            if any(topic in m.topics for m in g.members.values()):
                self._reassign(name)

    def _reassign(self, group: str) -> None:
        """Range-assign every subscribed partition among members (as Kafka's RangeAssignor)."""
        g = self._group(group)
        target: dict[TopicPartition, int] = {}
        topics = sorted({t for m in g.members.values() for t in m.topics})
        for topic in topics:
            if topic not in self._logs:
                continue
            subscribers = sorted(mid for mid, m in g.members.items() if topic in m.topics)
            count = len(self._logs[topic])
            per, extra = divmod(count, len(subscribers))
            start = 0
            for i, mid in enumerate(subscribers):
                n = per + (1 if i < extra else 0)
                for p in range(start, start + n):
                    target[TopicPartition(topic, p)] = mid
                start += n
        g.target = target
        self._notify()

    def settle(
        self, group: str, member_id: int, owned: frozenset[TopicPartition]
    ) -> tuple[frozenset[TopicPartition], frozenset[TopicPartition]]:
        """(to revoke, free to take) for a member that owns ``owned`` now."""
        g = self._group(group)
        mine = {tp for tp, mid in g.target.items() if mid == member_id}
        revoke = frozenset(owned - mine)
        takeable = frozenset(tp for tp in mine - owned if tp not in g.owner)
        return revoke, takeable

    def release(self, group: str, member_id: int, tps: frozenset[TopicPartition]) -> None:
        g = self._group(group)
        for tp in tps:
            if g.owner.get(tp) == member_id:
                del g.owner[tp]
        self._notify()

    def take(self, group: str, member_id: int, tps: frozenset[TopicPartition]) -> None:
        g = self._group(group)
        for tp in tps:
            g.owner[tp] = member_id

    def commit(self, group: str, member_id: int, offsets: Mapping[TopicPartition, int]) -> None:
        g = self._group(group)
        foreign = sorted(tp for tp in offsets if g.owner.get(tp) != member_id)
        if foreign:
            raise CommitFailedError(
                f"cannot commit {foreign} for group {group!r}: the partitions were revoked "
                "from this member (a rebalance moved them); their records will be redelivered"
            )
        g.committed.update(offsets)

    def committed(self, group: str, tp: TopicPartition) -> int | None:
        return self._group(group).committed.get(tp)


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


class MemoryConsumer:
    """A member of a consumer group on a :class:`MemoryBroker` (see the module docstring)."""

    def __init__(
        self,
        broker: MemoryBroker,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> None:
        if not topics:
            raise ConfigError("a consumer needs at least one topic")
        self.broker = broker
        self.topics = tuple(topics)
        self.group = group
        self.offset_reset: OffsetReset = offset_reset
        self.listener = listener
        self.member_id = next(_member_ids)
        self._owned: frozenset[TopicPartition] = frozenset()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._running = False
        self._rotation = 0

    async def start(self) -> None:
        for topic in self.topics:
            self.broker.partitions(topic)  # auto-create (or raise TopicNotFoundError)
        self._running = True
        if self.group is not None:
            self.broker.join(self.group, self)
        await self._settle()

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self.group is not None:
            self.broker.leave(self.group, self)
        self._owned = frozenset()
        self._positions.clear()

    def assignment(self) -> frozenset[TopicPartition]:
        return self._owned

    async def _settle(self) -> None:
        """Apply a pending rebalance: revoke what moved away, take what was released."""
        if self.group is None:
            everything = frozenset(
                TopicPartition(t, p)
                for t in self.topics
                for p in range(len(self.broker.partitions(t)))
            )
            new = everything - self._owned
            if new:
                await self._take(new)
            return
        revoke, takeable = self.broker.settle(self.group, self.member_id, self._owned)
        if revoke:
            if self.listener is not None:
                await self.listener.on_partitions_revoked(revoke)
            self._owned = self._owned - revoke
            for tp in revoke:
                self._positions.pop(tp, None)
                self._paused.discard(tp)
            self.broker.release(self.group, self.member_id, revoke)
            _, takeable = self.broker.settle(self.group, self.member_id, self._owned)
        if takeable:
            self.broker.take(self.group, self.member_id, takeable)
            await self._take(takeable)

    async def _take(self, tps: frozenset[TopicPartition]) -> None:
        for tp in tps:
            committed = self.broker.committed(self.group, tp) if self.group else None
            if committed is not None:
                self._positions[tp] = committed
            elif self.offset_reset == "earliest":
                self._positions[tp] = self.broker.log_start(tp)
            else:
                self._positions[tp] = self.broker.end_offset(tp)
        self._owned = self._owned | tps
        if self.listener is not None:
            await self.listener.on_partitions_assigned(tps)

    async def fetch(
        self, *, max_records: int, timeout_s: float
    ) -> dict[TopicPartition, list[Record]]:
        self._check_running()
        deadline = time.monotonic() + timeout_s
        while True:
            await self._settle()
            batch = self._read(max_records)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0 or not self._running:
                return batch
            await self.broker.wait_for_change(remaining)

    def _read(self, max_records: int) -> dict[TopicPartition, list[Record]]:
        out: dict[TopicPartition, list[Record]] = {}
        tps = sorted(self._owned - self._paused)
        if not tps:
            return out
        self._rotation = (self._rotation + 1) % len(tps)
        budget = max_records
        for tp in tps[self._rotation :] + tps[: self._rotation]:
            part = self.broker.partitions(tp.topic)[tp.partition]
            start = self.broker.log_start(tp)
            pos = self._positions[tp]
            if pos < start:  # retention dropped records this consumer had not read
                log.warning(
                    "%s: offset %d is below the log start %d; resuming there", tp, pos, start
                )
                pos = start
            if pos - start < len(part):
                chunk = part[pos - start : pos - start + budget]
                out[tp] = chunk
                self._positions[tp] = pos + len(chunk)
                budget -= len(chunk)
                if budget <= 0:
                    break
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_running()
        if self.group is None:
            raise CommitFailedError("a consumer without a group has nothing to commit to")
        if offsets:
            self.broker.commit(self.group, self.member_id, offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.broker.committed(self.group, tp) if self.group else None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._owned:
            raise ConfigError(f"cannot seek {tp}: not assigned to this consumer")
        self._positions[tp] = offset

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._paused.update(tps)

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._paused.difference_update(tps)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.broker.end_offset(tp)

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.broker.end_offset(tp) for tp in tps}

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.broker.log_start(tp) for tp in tps}

    def position(self, tp: TopicPartition) -> int | None:
        return self._positions.get(tp)

    def _check_running(self) -> None:
        if not self._running:
            raise TransportClosedError("consumer is not running (call 'await consumer.start()')")


def _fail(delivery: asyncio.Future[RecordMetadata], error: BusError) -> None:
    if not delivery.done():
        delivery.set_exception(error)
