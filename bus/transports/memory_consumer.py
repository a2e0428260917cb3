"""A member of a consumer group on the in-process log (:class:`MemoryConsumer`).

It settles a pending rebalance on every ``fetch`` (revoke what moved away, after telling the
listener; take what the old owner released), reads owned partitions round-robin, and commits
to its group on the :class:`~bus.transports.memory_broker.MemoryBroker`.

Example::

    consumer = MemoryTransport(broker).consumer(["hr.events"], group="billing")
    await consumer.start()
    batch = await consumer.fetch(max_records=100, timeout_s=1.0)
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bus.errors import CommitFailedError, ConfigError, TransportClosedError
from bus.record import Record, TopicPartition
from bus.transports.base import RebalanceListener
from bus.types import OffsetReset

if TYPE_CHECKING:
    from bus.transports.memory_broker import MemoryBroker

__all__ = ["MemoryConsumer"]

log = logging.getLogger("bus.memory")
_member_ids = itertools.count(1)


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
