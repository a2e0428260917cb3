"""The Kafka transport, on aiokafka: the same semantics as the memory transport.

aiokafka errors are translated here, once, into :mod:`bus.errors`. Records follow the
CloudEvents Kafka binding as built by the codec (``ce_*`` headers, key = partition key);
aiokafka's default partitioner is Kafka's murmur2, so keys land where the memory
transport puts them.

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
import contextlib
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    CommitFailedError as KafkaCommitFailedError,
)
from aiokafka.errors import (
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from bus.config import KafkaConfig
from bus.errors import (
    CommitFailedError,
    TopicNotFoundError,
    TransportClosedError,
    TransportError,
)
from bus.partitioning import partition_for_key
from bus.record import OutgoingRecord, Record, RecordMetadata, TopicPartition
from bus.transports.base import RebalanceListener, TopicSpec, TopicState
from bus.transports.kafka_delivery import KafkaDelivery, send_error
from bus.transports.kafka_raw import read_past_undecodable
from bus.transports.kafka_security import diagnose, login_failure
from bus.types import OffsetReset

__all__ = ["KafkaConsumer", "KafkaTransport", "client_options"]

log = logging.getLogger("bus.kafka")

#: How much longer than its own timeout a fetch may wait (the assignment wait of a
#: rebalance) before it returns nothing.
_FETCH_GRACE_S = 0.5

# Record's fields in order, without the NamedTuple's Python-level __new__ (hot path)
_new_record = tuple.__new__


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka keyword arguments shared by producer, consumer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": config.request_timeout_ms,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=config.ssl_cafile)
        if config.ssl_certfile and config.ssl_keyfile:
            context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile)
        options["ssl_context"] = context
    if config.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        options["sasl_plain_password"] = (
            config.sasl_password.reveal() if config.sasl_password else None
        )
    return options


def producer_options(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka producer keyword arguments for ``config``."""
    acks: int | str = "all" if config.acks == "all" else int(config.acks)
    options = {
        **client_options(config),
        "acks": acks,
        "linger_ms": config.linger_ms,
        "max_batch_size": config.max_batch_bytes,
        "max_request_size": config.max_request_bytes,
        "compression_type": None if config.compression == "none" else config.compression,
        "enable_idempotence": config.enable_idempotence,
    }
    # no transactional_id: KafkaConfig.validated refuses it (bus begins no transaction)
    return options


def _connect_retrying(config: KafkaConfig, what: str) -> AsyncRetrying:
    def announce(state: Any) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "kafka %s: broker %s unreachable (%s); retrying (attempt %d, up to %.0fs)",
            what,
            config.bootstrap_servers,
            type(error).__name__,
            state.attempt_number,
            config.connect_timeout_s,
        )

    return AsyncRetrying(
        stop=stop_after_delay(config.connect_timeout_s),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type((KafkaConnectionError, KafkaTimeoutError, OSError)),
        before_sleep=announce,
        reraise=True,
    )


async def _start_with_retries(client: Any, config: KafkaConfig, what: str) -> None:
    """``client.start()``, retried while the broker is unreachable; a client that does not
    start is stopped (aiokafka warns about an unclosed one at exit)."""
    try:
        await _start_retrying(client, config, what)
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise


async def _start_retrying(client: Any, config: KafkaConfig, what: str) -> None:
    try:
        async for attempt in _connect_retrying(config, what):
            with attempt:
                await _start_once(client, config, what)
    except (KafkaConnectionError, KafkaTimeoutError, OSError) as exc:
        raise TransportError(
            f"kafka {what}: cannot reach {config.bootstrap_servers} after "
            f"{config.connect_timeout_s:.0f}s ({type(exc).__name__}); is the broker up? "
            "(BUS_KAFKA_BOOTSTRAP_SERVERS)"
        ) from exc
    except KafkaError as exc:
        raise TransportError(f"kafka {what}: start failed: {exc!r}") from exc


async def _start_once(client: Any, config: KafkaConfig, what: str) -> None:
    """``client.start()``; a refused login or a failed TLS handshake as a SecurityError,
    which is not retried (:mod:`bus.transports.kafka_security`)."""
    try:
        await client.start()
    except KafkaConnectionError as exc:
        fault = await diagnose(config, what, client_options(config))
        if fault is not None:
            raise fault from exc
        raise
    except Exception as exc:
        fault = login_failure(config, what, exc)
        if fault is not None:
            raise fault from exc
        raise


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
        #: (:func:`_direct_appender`); None: every record goes through ``producer.send``.
        self._appender: _Appender | None = None
        #: aiokafka TopicPartition per (topic, partition) sent to, made once.
        self._send_tps: dict[tuple[str, int], KafkaTopicPartition] = {}
        self.ready = False
        #: When the broker stopped answering (monotonic seconds); None while it answers.
        self._lost_at: float | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(**producer_options(self.config))
        await _start_with_retries(producer, self.config, "producer")
        self._partition_counts.clear()
        producer.client.cluster.add_listener(self._metadata_updated)
        self._appender = _direct_appender(producer)
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
                return [await d.shielded() for d in deliveries]
        except TimeoutError as exc:
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
            answered = await asyncio.wait_for(
                self._producer.client.force_metadata_update(), timeout_s
            )
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
            await _start_with_retries(admin, self.config, "admin")
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
        record accumulator (:func:`_direct_appender`): ``producer.send`` would look the
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
        try:
            async with asyncio.timeout(timeout_s):
                # shielded: the future is aiokafka's, which completes it later either way
                return await (await self.send(record)).shielded()
        except TimeoutError as exc:
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


@dataclass(frozen=True, slots=True)
class _Appender:
    """What :meth:`KafkaTransport.send` needs to append to aiokafka's accumulator itself."""

    add_message: Callable[..., Awaitable[asyncio.Future[Any]]]
    estimate: Callable[[bytes | None, bytes | None, list[tuple[str, bytes]]], int]
    max_request_size: int
    timeout_s: float


def _direct_appender(producer: AIOKafkaProducer) -> _Appender | None:
    """The accumulator of ``producer`` if records may be appended to it directly; else None.

    ``AIOKafkaProducer.send`` waits for the topic's metadata, checks transactions,
    serializes, checks the size, partitions, then awaits ``_message_accumulator.
    add_message``. Bus sends bytes (no serializers) and partitions itself, and only
    records of topics with known partitions take this path, so what is left of ``send``
    is the size check, done here with the same estimate. It is aiokafka's private API
    (stable from 0.5 to 0.14): anything unexpected, or a transactional producer (whose
    ``send`` checks that a transaction is open), keeps the public ``send``.
    """
    accumulator = getattr(producer, "_message_accumulator", None)
    add_message = getattr(accumulator, "add_message", None)
    max_request_size = getattr(producer, "_max_request_size", None)
    timeout_ms = getattr(producer, "_request_timeout_ms", None)
    transactions = getattr(producer, "_txn_manager", "unknown")
    if (
        add_message is None
        or not isinstance(max_request_size, int)
        or not isinstance(timeout_ms, int)
        or getattr(producer, "_key_serializer", "unknown") is not None
        or getattr(producer, "_value_serializer", "unknown") is not None
        # idempotence alone has a manager without a transactional id
        or (transactions is not None and getattr(transactions, "transactional_id", 1) is not None)
    ):
        return None
    try:
        parameters = list(inspect.signature(add_message).parameters)
    except (TypeError, ValueError):
        return None
    if parameters[:4] != ["tp", "key", "value", "timeout"] or "headers" not in parameters:
        return None
    return _Appender(
        add_message,
        DefaultRecordBatchBuilder.estimate_size_in_bytes,
        max_request_size,
        timeout_ms / 1000,
    )


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
        await _start_with_retries(self._consumer, self.transport.config, "consumer")
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
