"""The Kafka transport, on aiokafka: the same semantics as the memory transport.

aiokafka errors are translated here, once, into :mod:`bus.errors`. Records follow the
CloudEvents Kafka binding as built by the codec (``ce_*`` headers, key = partition key);
aiokafka's default partitioner is Kafka's murmur2, so keys land where the memory
transport puts them.

The transport owns the producer and an admin client; a group member is a
:class:`~bus.transports.kafka_consumer.KafkaConsumer`, and clients are configured and
started by :mod:`bus.transports.kafka_connect`.

Start-up retries an unreachable broker with exponential backoff (tenacity) for
``connect_timeout_s``, logging one clear line per attempt; ``ready`` is False until the
producer is connected and again while the broker does not answer (a failed fetch or
:meth:`KafkaTransport.probe`). Once connected, aiokafka reconnects by itself: losing and
regaining the broker is logged once each. ``publish`` gives up after ``publish_timeout_s``
with a :class:`~bus.errors.TransportError` instead of waiting for a broker that is gone.

Example::

    transport = KafkaTransport(KafkaConfig(bootstrap_servers="127.0.0.1:9092"))
    await transport.start()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
)

from bus.config import KafkaConfig
from bus.errors import (
    TopicNotFoundError,
    TransportClosedError,
    TransportError,
)
from bus.partitioning import partition_for_key
from bus.record import OutgoingRecord, RecordMetadata
from bus.transports.base import RebalanceListener, TopicSpec, TopicState
from bus.transports.kafka_append import Appender, direct_appender
from bus.transports.kafka_connect import client_options, producer_options, start_with_retries
from bus.transports.kafka_consumer import KafkaConsumer
from bus.transports.kafka_delivery import (
    KafkaDelivery,
    report_late_outcome,
    send_error,
    settled,
)
from bus.types import OffsetReset

# KafkaConsumer and the client options live in their own modules; imported from here
# as before
__all__ = ["KafkaConsumer", "KafkaTransport", "client_options", "producer_options"]

log = logging.getLogger("bus.kafka")


class KafkaTransport:
    """A client of a Kafka cluster: one producer, an admin client, consumers on demand."""

    name = "kafka"

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        # partitions per topic as of the producer's last metadata update (cleared by it):
        # aiokafka's partitions_for_topic builds a new set on every call
        self._partition_counts: dict[str, int] = {}
        #: aiokafka's record accumulator when :meth:`send` may append to it directly
        #: (:func:`direct_appender`); None: every record goes through ``producer.send``.
        self._appender: Appender | None = None
        #: aiokafka TopicPartition per (topic, partition) sent to, made once.
        self._send_tps: dict[tuple[str, int], KafkaTopicPartition] = {}
        self.ready = False
        #: When the broker stopped answering (monotonic seconds); None while it answers.
        self._lost_at: float | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(**producer_options(self.config))
        await start_with_retries(producer, self.config, "producer")
        self._partition_counts.clear()
        producer.client.cluster.add_listener(self._metadata_updated)
        self._appender = direct_appender(producer)
        self._producer = producer
        self.ready = True
        log.info("kafka producer connected to %s", self.config.bootstrap_servers)

    async def stop(self) -> None:
        """Flush pending sends for at most ``publish_timeout_s``, then close.

        Records the broker has not acknowledged by then are dropped with a warning: no
        sender was told they were delivered (a worker commits no offset for them, so they
        are consumed again). aiokafka's own stop would wait for them as long as its request
        timeout lets each batch be retried, past a shutdown deadline.
        """
        self.ready = False
        producer, self._producer = self._producer, None
        self._appender = None
        if producer is not None:
            await self._flush_or_drop(producer)
            log.debug("kafka: producer flushed")
            await producer.stop()
            log.debug("kafka: producer stopped")
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _flush_or_drop(self, producer: AIOKafkaProducer) -> None:
        timeout_s = self.config.publish_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await producer.flush()
            return
        except TimeoutError:
            log.warning(
                "kafka: stopping with sends the broker %s has not acknowledged within %gs: "
                "they are dropped, unacknowledged (BUS_KAFKA_PUBLISH_TIMEOUT_S)",
                self.config.bootstrap_servers,
                timeout_s,
            )
        # Stop the producer's sender first: producer.stop() then finds it done and does not
        # wait for the batches it was retrying (aiokafka has no public call for this; the
        # broker-down test checks that stop() returns in time on the aiokafka we run).
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            await sender.close()

    async def publish_many(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        """Send every record, then wait for all acknowledgements: at most
        ``publish_timeout_s`` in all, else :class:`~bus.errors.TransportError` saying how
        many were not acknowledged (they may still be delivered later)."""
        timeout_s = self.config.publish_timeout_s
        deliveries: list[KafkaDelivery] = []
        try:
            async with asyncio.timeout(timeout_s):
                for record in records:
                    deliveries.append(await self.send(record))
                return await settled(deliveries)
        except TimeoutError as exc:
            report_late_outcome(deliveries)
            acked = sum(1 for d in deliveries if d.done() and d.exception() is None)
            raise TransportError(
                f"kafka: {len(records) - acked} of {len(records)} records not acknowledged "
                f"within {timeout_s:g}s: is the broker {self.config.bootstrap_servers} up? "
                "They may still be delivered later (BUS_KAFKA_PUBLISH_TIMEOUT_S)"
            ) from exc

    def _metadata_updated(self, _cluster: Any) -> None:
        self._partition_counts.clear()

    async def probe(self, timeout_s: float = 2.0) -> bool:
        """A metadata round trip to the cluster within ``timeout_s``; updates :attr:`ready`.

        ``ready`` alone only knows start-up and failed fetches: a broker that went away
        while nothing was fetching is noticed here (``/readyz`` calls this).
        """
        if self._producer is None:
            return False
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation that
            # lands as the answer arrives, and a probe loop cancelled at shutdown ran on
            async with asyncio.timeout(timeout_s):
                answered = await self._producer.client.force_metadata_update()
            why = "no metadata answer"
        except (TimeoutError, KafkaError, OSError) as exc:
            answered, why = False, f"no answer within {timeout_s:g}s ({type(exc).__name__})"
        self._mark(bool(answered), why)
        return self.ready

    def _mark(self, reachable: bool, why: str = "") -> None:
        """Record whether the broker answers; log each change once (not each failed try).

        aiokafka's own per-try connection errors are filtered out of the log
        (:func:`bus.logs.configure_logging`): these two lines are what an operator reads.
        """
        if self._producer is None or reachable == self.ready:
            return
        self.ready = reachable
        if not reachable:
            self._lost_at = time.monotonic()
            log.warning(
                "kafka: broker %s unreachable (%s); not ready, producer and consumers keep "
                "retrying by themselves",
                self.config.bootstrap_servers,
                why,
            )
        else:
            down_s = time.monotonic() - self._lost_at if self._lost_at is not None else 0.0
            self._lost_at = None
            log.info(
                "kafka: broker %s reachable again after %.1fs; ready",
                self.config.bootstrap_servers,
                down_s,
            )

    async def admin(self) -> AIOKafkaAdminClient:
        """The admin client, started on first use."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(**client_options(self.config))
            await start_with_retries(admin, self.config, "admin")
            self._admin = admin
        return self._admin

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        admin = await self.admin()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return
        new = [
            NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
            for s in missing
        ]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            return  # created concurrently by another process
        except KafkaError as exc:
            raise TransportError(
                f"kafka: cannot create topics {[s.name for s in missing]}: {exc!r}"
            ) from exc
        for topic, code, *rest in getattr(response, "topic_errors", ()):
            if code not in (0, TopicAlreadyExistsError.errno):
                raise TransportError(
                    f"kafka: creating topic {topic!r} failed (error code {code}: {rest})"
                )

    async def describe_topics(self, names: Sequence[str]) -> dict[str, TopicState]:
        admin = await self.admin()
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n in existing]
        if not wanted:
            return {}
        try:
            described = await admin.describe_topics(wanted)
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
            )
        except KafkaError as exc:
            raise TransportError(f"kafka: cannot describe topics {wanted}: {exc!r}") from exc
        config_of: dict[str, dict[str, str]] = {}
        for response in configs:
            for resource in response.resources:
                entries = resource[4]
                config_of[resource[3]] = {e[0]: e[1] for e in entries if e[1] is not None}
        out = {}
        for topic in described:
            parts = sorted(topic["partitions"], key=lambda p: p["partition"])
            replicas = len(parts[0]["replicas"]) if parts else 0
            name = topic["topic"]
            out[name] = TopicState(name, len(parts), replicas, config_of.get(name, {}))
        return out

    async def list_topics(self) -> list[str]:
        admin = await self.admin()
        try:
            names = await admin.list_topics()
        except KafkaError as exc:
            raise TransportError(f"kafka: cannot list topics: {exc!r}") from exc
        return sorted(str(n) for n in names if not str(n).startswith("__"))

    async def partitions_for(self, topic: str) -> int:
        producer = self._require_producer()
        partitions = await producer.partitions_for(topic)
        if not partitions:
            raise TopicNotFoundError(
                f"topic {topic!r} does not exist on {self.config.bootstrap_servers}"
            )
        return len(partitions)

    async def send(self, record: OutgoingRecord) -> KafkaDelivery:
        """Queue ``record``; the delivery wraps aiokafka's own future.

        Its failure, whether ``send`` raises it now or the broker's answer fails the
        record later, is one :func:`~bus.transports.kafka_delivery.send_error`
        translation: a :class:`~bus.errors.BusError` (no second future or callback per
        record: the wrapper is one small object, and translates only a failure it reads).

        A record for a topic whose partitions are known goes straight into aiokafka's
        record accumulator (:func:`direct_appender`): ``producer.send`` would look the
        topic up, check the size, pick the partition and build its TopicPartition again,
        which cost 2.3 of its 13.3 µs per record (``add_message`` is what it ends with).
        """
        producer = self._producer
        if producer is None:
            producer = self._require_producer()  # raises
        topic, key, value, headers, partition = record
        count = self._partition_counts.get(topic)
        if count is None:
            # aiokafka's cached metadata (no request); unknown topic: producer.send waits
            known = producer.client.cluster.partitions_for_topic(topic)
            count = len(known) if known else 0
            if count:
                self._partition_counts[topic] = count
        if partition is None and key is not None and count:
            # the same choice as aiokafka's default partitioner, from bus's cached murmur2
            # (aiokafka's own runs in Python for every record)
            partition = partition_for_key(key, count)
        # aiokafka's C builder takes only lists (emitted records carry one already)
        if type(headers) is not list:
            headers = list(headers)
        appender = self._appender
        try:
            # a typed local rather than typing.cast: a Python call per record
            future: asyncio.Future[Any]
            if (
                appender is not None
                and partition is not None
                and 0 <= partition < count
                and (value is not None or key is not None)
            ):
                if appender.estimate(key, value, headers) > appender.max_request_size:
                    raise MessageSizeTooLargeError()
                tp = self._send_tps.get((topic, partition))
                if tp is None:
                    tp = self._send_tps[(topic, partition)] = KafkaTopicPartition(topic, partition)
                future = await appender.add_message(
                    tp, key, value, appender.timeout_s, headers=headers
                )
            else:
                future = await producer.send(
                    topic, value=value, key=key, partition=partition, headers=headers
                )
        except KafkaError as exc:
            raise send_error(exc, record, self.config) from exc
        return KafkaDelivery(future, record, self.config)

    async def publish(self, record: OutgoingRecord) -> RecordMetadata:
        """Send ``record`` and wait for its acknowledgement, at most ``publish_timeout_s``.

        On timeout the record may still sit in the producer's buffer and be delivered once
        the broker is back: a caller that publishes it again can cause a duplicate.
        """
        timeout_s = self.config.publish_timeout_s
        delivery: KafkaDelivery | None = None
        try:
            async with asyncio.timeout(timeout_s):
                delivery = await self.send(record)
                # shielded: the future is aiokafka's, which completes it later either way
                return await delivery.shielded()
        except TimeoutError as exc:
            if delivery is not None:
                report_late_outcome([delivery])
            raise TransportError(
                f"kafka: publish to {record.topic!r} not acknowledged within {timeout_s:g}s: "
                f"is the broker {self.config.bootstrap_servers} up? The record may still be "
                "delivered later (BUS_KAFKA_PUBLISH_TIMEOUT_S)"
            ) from exc

    def consumer(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        offset_reset: OffsetReset = "earliest",
        listener: RebalanceListener | None = None,
    ) -> KafkaConsumer:
        return KafkaConsumer(
            self, topics, group=group, offset_reset=offset_reset, listener=listener
        )

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise TransportClosedError(
                "KafkaTransport is not started (use 'await transport.start()')"
            )
        return self._producer
