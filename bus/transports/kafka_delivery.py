"""A Kafka send's delivery, and the one translation of aiokafka's send errors.

:func:`send_error` turns what aiokafka raises for a record into a :mod:`bus.errors` error,
whether ``send`` raised it at once or the broker's answer failed the record later:
:class:`KafkaDelivery` reads a late failure through it, so a delivery's error is always a
:class:`~bus.errors.BusError` with ``retryable`` set, and no caller translates again.

A delivery is aiokafka's own future behind a small ``__slots__`` object: no second future
and no callback per record (the hot path); a failure is translated only when it is read.

Example::

    delivery = await transport.send(record)
    try:
        meta = await delivery
    except TransportError as exc:
        ...  # exc.retryable: a broker outage, try again later
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Sequence
from typing import Any

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
)

from bus.config import KafkaConfig
from bus.errors import BusError, MessageTooLargeError, TransportError
from bus.record import OutgoingRecord, RecordMetadata

__all__ = ["KafkaDelivery", "report_late_outcome", "send_error", "settled"]

log = logging.getLogger("bus.kafka")

_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)
#: Refusals that sending again cannot change (aiokafka's ``retriable`` flag is no guide:
#: it calls ``KafkaTimeoutError``, the broker-down case, not retriable).
_REFUSED = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError, InvalidTopicError)


def send_error(exc: BaseException, record: OutgoingRecord, config: KafkaConfig) -> BusError:
    """The bus error for ``exc``, raised by sending ``record`` or failing its delivery.

    Too large: :class:`~bus.errors.MessageTooLargeError` (permanent); a topic the client
    may not write or that cannot exist: a permanent :class:`~bus.errors.TransportError`;
    anything else (a broker away, a timeout, a producer stopped before the answer): a
    retryable one. ``exc`` becomes the ``__cause__``, as ``raise ... from exc`` would.
    """
    if isinstance(exc, BusError):
        return exc
    topic, servers = record.topic, config.bootstrap_servers
    error: BusError
    if isinstance(exc, _TOO_LARGE):
        error = MessageTooLargeError(
            f"record of about {record.size_bytes()} bytes for topic {topic!r} is above the "
            f"limit of {config.max_request_bytes} bytes (BUS_KAFKA_MAX_REQUEST_BYTES, and the "
            "broker's message.max.bytes)"
        )
    elif isinstance(exc, _REFUSED):
        error = TransportError(f"kafka: {servers} refused records for {topic!r}: {exc!r}")
        error.retryable = False
    elif isinstance(exc, KafkaTimeoutError):
        error = TransportError(
            f"kafka: send to {topic!r} timed out ({exc!r}): is the broker {servers} up?"
        )
    elif isinstance(exc, asyncio.CancelledError):
        error = TransportError(
            f"kafka: send to {topic!r} was cancelled before {servers} acknowledged it (the "
            "producer stopped); it may have been delivered"
        )
    else:
        error = TransportError(f"kafka: send to {topic!r} failed ({exc!r}): is {servers} up?")
    error.__cause__ = exc
    return error


class KafkaDelivery:
    """The delivery of one record: aiokafka's future, its failure read as a bus error.

    ``done()`` asks the future; ``exception()``, ``result()`` and awaiting give
    :func:`send_error`'s translation (made once, when first read).
    """

    __slots__ = ("_config", "_error", "_future", "_record")

    def __init__(
        self, future: asyncio.Future[Any], record: OutgoingRecord, config: KafkaConfig
    ) -> None:
        self._future = future
        self._record = record
        self._config = config

    def done(self) -> bool:
        return self._future.done()

    def exception(self) -> BusError | None:
        """The failure as a bus error, None if acknowledged (``InvalidStateError`` if pending)."""
        try:
            error = self._future.exception()
        except asyncio.CancelledError as cancelled:  # a cancelled future raises it
            error = cancelled
        if error is None:
            return None
        translated: BusError | None = getattr(self, "_error", None)  # unset until now
        if translated is None:
            translated = self._error = send_error(error, self._record, self._config)
        return translated

    def result(self) -> RecordMetadata:
        error = self.exception()
        if error is not None:
            raise error
        meta = self._future.result()
        return RecordMetadata(meta.topic, meta.partition, meta.offset)

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        future = self._future
        if not future.done():
            try:
                yield from future.__await__()
            except asyncio.CancelledError:
                raise  # the waiting task was cancelled: not a failure of the send
            except Exception:  # read, translated, by result() below
                pass
        return self.result()

    async def shielded(self) -> RecordMetadata:
        """Wait like ``await delivery``, but a cancelled wait (a timeout) leaves the send
        going: aiokafka still completes the future, the record may still be delivered."""
        try:
            await asyncio.shield(self._future)
        except asyncio.CancelledError:
            if not self._future.cancelled():
                raise  # the wait was cancelled, not the send
        except Exception:  # read, translated, by result() below
            pass
        return self.result()


async def settled(deliveries: Sequence[KafkaDelivery]) -> list[RecordMetadata]:
    """Wait like :meth:`KafkaDelivery.shielded` for every delivery at once (a cancelled wait
    leaves the sends going), until all are acknowledged or one failed; their metadata, or
    the first failure in order. One wait for a batch, not a shield future per record."""
    pending = [d._future for d in deliveries if not d._future.done()]
    if pending:
        await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
    return [d.result() for d in deliveries]


class _LateOutcome:
    """Counts the late outcomes of records a publish gave up waiting for; one line at the end."""

    def __init__(self, pending: Sequence[KafkaDelivery]) -> None:
        self.pending = pending
        self.left = len(pending)

    def settle(self, _future: asyncio.Future[Any]) -> None:
        self.left -= 1
        if self.left:
            return
        errors = [e for e in (d.exception() for d in self.pending) if e is not None]
        topic, total = self.pending[0]._record.topic, len(self.pending)
        if errors:
            log.warning("kafka: %d of %d record(s) to %r that publish gave up on failed for "
                        "good (never delivered; first: %s); %d were delivered late",
                        len(errors), total, topic, errors[0], total - len(errors))  # fmt: skip
        else:
            log.info("kafka: %d record(s) to %r that publish gave up on were delivered late",
                     total, topic)  # fmt: skip


def report_late_outcome(deliveries: Sequence[KafkaDelivery]) -> None:
    """After a publish gave up waiting (its timeout): log, once every pending delivery has
    settled, how many were delivered late and how many failed for good.

    The caller was told the records "may still be delivered"; this line says which. Reading
    each outcome also keeps asyncio from printing "Future exception was never retrieved".
    """
    pending = [d for d in deliveries if not d.done()]
    if pending:
        outcome = _LateOutcome(pending)
        for delivery in pending:
            delivery._future.add_done_callback(outcome.settle)
