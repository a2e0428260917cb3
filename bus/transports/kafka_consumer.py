"""The Kafka consumer: a group member (or a reader of every partition) on aiokafka.

:class:`KafkaConsumer` is what :meth:`bus.transports.kafka.KafkaTransport.consumer`
returns. It turns aiokafka's fetches into :class:`~bus.record.Record` lists, its
rebalance callbacks into the worker's listener (through :class:`_Listener`, which also
keeps the owned partitions and where each was handed on to), and aiokafka's errors into
:mod:`bus.errors`. A fetch returns by its own timeout even while aiokafka waits for the
group's next assignment; a record aiokafka cannot decode is read raw
(:mod:`bus.transports.kafka_raw`).

Example::

    consumer = transport.consumer(["orders"], group="billing", listener=worker)
    await consumer.start()
    batches = await consumer.fetch(max_records=500, timeout_s=0.1)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.errors import (
    CommitFailedError as KafkaCommitFailedError,
)
from aiokafka.errors import (
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    RebalanceInProgressError,
    UnknownTopicOrPartitionError,
)

from bus.errors import CommitFailedError, TransportClosedError, TransportError
from bus.record import Record, TopicPartition
from bus.transports.base import RebalanceListener
from bus.transports.kafka_connect import client_options, start_with_retries
from bus.transports.kafka_raw import read_past_undecodable
from bus.types import OffsetReset

if TYPE_CHECKING:
    from bus.transports.kafka import KafkaTransport

__all__ = ["KafkaConsumer"]

log = logging.getLogger("bus.kafka")

#: How much longer than its own timeout a fetch may wait (the assignment wait of a
#: rebalance) before it returns nothing.
_FETCH_GRACE_S = 0.5

# Record's fields in order, without the NamedTuple's Python-level __new__ (hot path)
_new_record = tuple.__new__


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        tps = frozenset(TopicPartition(tp.topic, tp.partition) for tp in revoked)
        self.consumer._owned -= tps
        for tp in tps:
            self.consumer._next.pop(tp, None)
        if tps and self.consumer.listener is not None:  # the first join revokes nothing
            await self.consumer.listener.on_partitions_revoked(tps)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        tps = frozenset(TopicPartition(tp.topic, tp.partition) for tp in assigned)
        self.consumer._owned = tps
        if tps and self.consumer.listener is not None:
            await self.consumer.listener.on_partitions_assigned(tps)


class KafkaConsumer:
    """A consumer-group member (or, with ``group=None``, a reader of every partition)."""

    def __init__(
        self,
        transport: KafkaTransport,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset,
        listener: RebalanceListener | None,
    ) -> None:
        self.transport = transport
        self.topics = tuple(topics)
        self.group = group
        self.listener = listener
        self.offset_reset = offset_reset
        self._owned: frozenset[TopicPartition] = frozenset()
        #: The offset after the last record handed on, per partition (read_past_undecodable).
        self._next: dict[TopicPartition, int] = {}
        c = transport.config
        self._consumer = AIOKafkaConsumer(
            **client_options(c),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset=offset_reset,
            session_timeout_ms=c.session_timeout_ms,
            heartbeat_interval_ms=c.heartbeat_interval_ms,
            max_poll_interval_ms=c.max_poll_interval_ms,
            fetch_max_wait_ms=c.fetch_max_wait_ms,
            max_partition_fetch_bytes=max(c.max_request_bytes, 1_048_576),
        )
        self._running = False

    async def start(self) -> None:
        await start_with_retries(self._consumer, self.transport.config, "consumer")
        if self.group is not None:
            self._consumer.subscribe(list(self.topics), listener=_Listener(self))
        else:
            partitions = []
            for topic in self.topics:
                count = await self.transport.partitions_for(topic)
                partitions += [KafkaTopicPartition(topic, p) for p in range(count)]
            self._consumer.assign(partitions)
            self._owned = frozenset(TopicPartition(tp.topic, tp.partition) for tp in partitions)
            if self.listener is not None:
                await self.listener.on_partitions_assigned(self._owned)
        self._running = True

    async def stop(self) -> None:
        if self._running:
            self._running = False
            await self._consumer.stop()

    async def fetch(
        self, *, max_records: int, timeout_s: float
    ) -> dict[TopicPartition, list[Record]]:
        if not self._running:
            raise TransportClosedError("consumer is not running (call 'await consumer.start()')")
        try:
            # getmany waits without a limit for the group's next assignment while a
            # rebalance is under way (Tansu can hold one 20-30 s): a worker told to stop
            # did not notice until the 20 s its CLI waits had passed, and exited 1.
            async with asyncio.timeout(timeout_s + _FETCH_GRACE_S):
                raw = await self._consumer.getmany(
                    timeout_ms=int(timeout_s * 1000), max_records=max_records
                )
        except TimeoutError:
            return {}  # still rebalancing: the caller checks whether to stop, then asks again
        except KafkaConnectionError as exc:
            self.transport._mark(False, f"fetch failed: {exc}")
            await asyncio.sleep(min(timeout_s, 1.0))
            return {}
        except UnicodeDecodeError as exc:  # a header name aiokafka cannot decode
            return await self._read_past_undecodable(exc, timeout_s)
        # records are no proof the broker answers now (aiokafka may have fetched them
        # before it went away): only a probe's round trip marks it reachable again
        out: dict[TopicPartition, list[Record]] = {}
        for tp, messages in raw.items():
            topic, partition = tp.topic, tp.partition
            key = TopicPartition(topic, partition)
            # aiokafka's headers are a tuple already (tuple() would hand back the same object)
            out[key] = [
                _new_record(
                    Record, (topic, partition, m.offset, m.key, m.value, m.headers, m.timestamp)
                )
                for m in messages
            ]
            if messages:
                self._next[key] = messages[-1].offset + 1
        return out

    async def _read_past_undecodable(
        self, error: UnicodeDecodeError, timeout_s: float
    ) -> dict[TopicPartition, list[Record]]:
        """The partitions aiokafka failed on, read raw (:mod:`bus.transports.kafka_raw`):
        their undecodable records go on to the worker (which dead-letters them as
        ``decode``) instead of stopping it; TransportError if none can be found."""
        config = self.transport.config
        try:
            found = await read_past_undecodable(
                self._consumer,
                self._owned,
                self._next,
                earliest=self.offset_reset == "earliest",
                max_bytes=max(config.max_request_bytes, 1_048_576),
            )
        except TransportError as exc:
            log.warning("kafka: a fetched record is undecodable (%s); reading it raw failed "
                        "(%s), trying again", error, exc)  # fmt: skip
            await asyncio.sleep(min(timeout_s, 1.0))
            return {}
        except ValueError as exc:  # a legacy message set: no raw reading of it here
            raise TransportError(
                f"kafka: aiokafka cannot decode a fetched record ({error}) and bus cannot "
                f"read it raw ({exc}); the consumer cannot move past it"
            ) from exc
        if not found:
            raise TransportError(
                f"kafka: aiokafka cannot decode a fetched record ({error}) and no partition "
                "of this consumer holds one bus can read raw; the consumer cannot move past it"
            ) from error
        for tp, records in found.items():
            log.warning("kafka: %s[%d] holds a record aiokafka cannot decode (%s); read "
                        "%d record(s) at %d-%d raw", tp.topic, tp.partition, error,
                        len(records), records[0].offset, records[-1].offset)  # fmt: skip
        return found

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.group is None:
            raise CommitFailedError("a consumer without a group has nothing to commit to")
        if not offsets:
            return
        try:
            await self._consumer.commit({KafkaTopicPartition(*tp): o for tp, o in offsets.items()})
        except (KafkaCommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            raise CommitFailedError(
                f"cannot commit {sorted(offsets)}: the partitions were revoked or a rebalance is "
                f"under way ({type(exc).__name__}); their records will be redelivered"
            ) from exc
        except KafkaError as exc:
            raise TransportError(f"kafka: commit failed: {exc!r}") from exc

    async def committed(self, tp: TopicPartition) -> int | None:
        try:
            result = await self._consumer.committed(KafkaTopicPartition(*tp))
        except (UnknownTopicOrPartitionError, KafkaError) as exc:
            raise TransportError(f"kafka: cannot read committed offset of {tp}: {exc!r}") from exc
        return None if result is None else int(result)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._owned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(KafkaTopicPartition(*tp), offset)
        self._next[tp] = offset

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        # a partition revoked meanwhile has nothing left to pause or resume
        with contextlib.suppress(IllegalStateError):
            self._consumer.pause(*(KafkaTopicPartition(*tp) for tp in tps if tp in self._owned))

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        with contextlib.suppress(IllegalStateError):
            self._consumer.resume(*(KafkaTopicPartition(*tp) for tp in tps if tp in self._owned))

    def highwater(self, tp: TopicPartition) -> int | None:
        value = self._consumer.highwater(KafkaTopicPartition(*tp))
        return None if value is None else int(value)

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._list_offsets(tps, self._consumer.end_offsets, "end")

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._list_offsets(tps, self._consumer.beginning_offsets, "beginning")

    async def _list_offsets(
        self,
        tps: Sequence[TopicPartition],
        ask: Callable[[list[KafkaTopicPartition]], Awaitable[dict[KafkaTopicPartition, int]]],
        which: str,
    ) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        try:
            found = await ask([KafkaTopicPartition(*tp) for tp in tps])
        except KafkaError as exc:
            raise TransportError(f"kafka: cannot list the {which} offsets: {exc!r}") from exc
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in found.items()}
