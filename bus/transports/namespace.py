"""A transport whose topics and consumer groups live under a prefix: one log, many worlds.

Apps name topics by their messages (``hr.events``) and consumer groups by their app
(``identity-commands``); two copies of the same apps on one Kafka cluster would share
both, so each would read the other's records and take the other's partitions. Wrapping
the transport of one copy in :class:`NamespacedTransport` puts its topics and groups under
``prefix`` on the broker (``demo-3f2a.hr.events``, group ``demo-3f2a.identity-commands``)
while the apps, the worker and the coordinator above it keep seeing the plain names: every
topic is prefixed on the way down and stripped on the way up, so dead-letter and retry
topics (derived from a record's topic) follow.

Example::

    transport = NamespacedTransport(KafkaTransport(config), prefix="demo-3f2a.")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from bus.errors import ConfigError
from bus.record import OutgoingRecord, Record, RecordMetadata, TopicPartition
from bus.transports.base import (
    Consumer,
    Delivery,
    RebalanceListener,
    TopicSpec,
    TopicState,
    Transport,
)
from bus.types import OffsetReset

__all__ = ["NamespacedTransport"]


class NamespacedTransport:
    """``inner`` with every topic and consumer group name under ``prefix``.

    Example::

        NamespacedTransport(MemoryTransport(broker), prefix="test-1.")
    """

    def __init__(self, inner: Transport, *, prefix: str) -> None:
        if not prefix or any(c not in _TOPIC_CHARS for c in prefix):
            raise ConfigError(
                f"topic prefix {prefix!r}: use letters, digits, '.', '_' or '-' (e.g. 'demo-1.')"
            )
        self.inner = inner
        self.prefix = prefix
        self.name = inner.name

    def __repr__(self) -> str:
        return f"NamespacedTransport({self.inner!r}, prefix={self.prefix!r})"

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def probe(self, timeout_s: float = 2.0) -> bool:
        return await self.inner.probe(timeout_s)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        await self.inner.ensure_topics(
            [dataclasses.replace(s, name=self.prefix + s.name) for s in specs]
        )

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        found = await self.inner.describe_topics([self.prefix + n for n in names])
        return {
            _strip(self.prefix, k): dataclasses.replace(v, name=_strip(self.prefix, v.name))
            for k, v in found.items()
        }

    async def list_topics(self) -> list[str]:
        topics = await self.inner.list_topics()
        return [_strip(self.prefix, t) for t in topics if t.startswith(self.prefix)]

    async def partitions_for(self, topic: str) -> int:
        return await self.inner.partitions_for(self.prefix + topic)

    async def send(self, record: OutgoingRecord) -> Delivery:
        delivery = await self.inner.send(record._replace(topic=self.prefix + record.topic))
        return _StrippedDelivery(delivery, self.prefix)

    async def publish(self, record: OutgoingRecord) -> RecordMetadata:
        meta = await self.inner.publish(record._replace(topic=self.prefix + record.topic))
        return _strip_meta(self.prefix, meta)

    async def publish_many(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        metas = await self.inner.publish_many(
            [r._replace(topic=self.prefix + r.topic) for r in records]
        )
        return [_strip_meta(self.prefix, m) for m in metas]

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> Consumer:
        inner = self.inner.consumer(
            [self.prefix + t for t in topics],
            group=None if group is None else self.prefix + group,
            offset_reset=offset_reset,
            listener=None if listener is None else _StrippedListener(listener, self.prefix),
        )
        return _NamespacedConsumer(inner, self.prefix)


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _strip(prefix: str, topic: str) -> str:
    return topic.removeprefix(prefix)


def _strip_meta(prefix: str, meta: RecordMetadata) -> RecordMetadata:
    return meta._replace(topic=_strip(prefix, meta.topic))


def _up(prefix: str, tp: TopicPartition) -> TopicPartition:
    return TopicPartition(_strip(prefix, tp.topic), tp.partition)


def _down(prefix: str, tp: TopicPartition) -> TopicPartition:
    return TopicPartition(prefix + tp.topic, tp.partition)


class _StrippedDelivery:
    """A delivery whose metadata names the topic without the prefix."""

    __slots__ = ("_inner", "_prefix")

    def __init__(self, inner: Delivery, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    def done(self) -> bool:
        return self._inner.done()

    def exception(self) -> BaseException | None:
        return self._inner.exception()

    def result(self) -> RecordMetadata:
        return _strip_meta(self._prefix, self._inner.result())

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        meta = yield from self._inner.__await__()
        return _strip_meta(self._prefix, meta)


class _StrippedListener:
    def __init__(self, inner: RebalanceListener, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        await self._inner.on_partitions_revoked(frozenset(_up(self._prefix, t) for t in revoked))

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        await self._inner.on_partitions_assigned(frozenset(_up(self._prefix, t) for t in assigned))


class _NamespacedConsumer:
    """The inner consumer, its partitions and records named without the prefix."""

    def __init__(self, inner: Consumer, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def fetch(
        self, *, max_records: int, timeout_s: float
    ) -> Mapping[TopicPartition, Sequence[Record]]:
        batches = await self._inner.fetch(max_records=max_records, timeout_s=timeout_s)
        p = self._prefix
        return {
            _up(p, tp): [r._replace(topic=_strip(p, r.topic)) for r in records]
            for tp, records in batches.items()
        }

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self._inner.commit({_down(self._prefix, tp): o for tp, o in offsets.items()})

    async def committed(self, tp: TopicPartition) -> int | None:
        return await self._inner.committed(_down(self._prefix, tp))

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(_up(self._prefix, tp) for tp in self._inner.assignment())

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._inner.seek(_down(self._prefix, tp), offset)

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._inner.pause([_down(self._prefix, tp) for tp in tps])

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._inner.resume([_down(self._prefix, tp) for tp in tps])

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._inner.highwater(_down(self._prefix, tp))

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found = await self._inner.end_offsets([_down(self._prefix, tp) for tp in tps])
        return {_up(self._prefix, tp): o for tp, o in found.items()}

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found = await self._inner.beginning_offsets([_down(self._prefix, tp) for tp in tps])
        return {_up(self._prefix, tp): o for tp, o in found.items()}
