"""aiokafka's record accumulator, reached past ``AIOKafkaProducer.send``.

:meth:`~bus.transports.kafka.KafkaTransport.send` appends a record of a topic whose
partitions are known straight to the producer's accumulator: ``producer.send`` would look
the topic up, check the size, pick the partition and build its TopicPartition again. This
is aiokafka's private API, so :func:`direct_appender` checks at start that the producer
looks as expected and otherwise answers None (every record then takes the public
``send``).

Example::

    appender = direct_appender(producer)  # None: use producer.send
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

__all__ = ["Appender", "direct_appender"]


@dataclass(frozen=True, slots=True)
class Appender:
    """What :meth:`~bus.transports.kafka.KafkaTransport.send` needs to append to aiokafka's accumulator itself."""

    add_message: Callable[..., Awaitable[asyncio.Future[Any]]]
    estimate: Callable[[bytes | None, bytes | None, list[tuple[str, bytes]]], int]
    max_request_size: int
    timeout_s: float


def direct_appender(producer: AIOKafkaProducer) -> Appender | None:
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
    return Appender(
        add_message,
        DefaultRecordBatchBuilder.estimate_size_in_bytes,
        max_request_size,
        timeout_ms / 1000,
    )
