"""From a typed message to a record on a topic.

:func:`envelope_for` and :func:`record_for` are pure: they wrap a message in its
CloudEvent and turn that into a record (key from the message's key field, binary-mode
headers, JSON value). :class:`Publisher` is the shell that sends it.

Example::

    publisher = Publisher(transport, source="bus://hr-system")
    await publisher.publish(EmployeeHired(employee_id="e-1", name="Ada"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from bus import tracing
from bus.encoding import binary_headers, encode
from bus.envelope import Envelope, event_envelope
from bus.ids import new_id
from bus.message import Message
from bus.record import OutgoingRecord, RecordMetadata
from bus.stamping import event_headers, source_type_headers, time_header, utc_now
from bus.transports.base import Transport

_new_outgoing = tuple.__new__

__all__ = [
    "Publisher",
    "child_record",
    "emitted_record",
    "envelope_for",
    "lineage",
    "record_for",
]


def envelope_for(
    message: Message,
    *,
    source: str,
    id: str,
    time: datetime,
    correlationid: str | None = None,
    causationid: str | None = None,
    traceparent: str | None = None,
    subject: str | None = None,
) -> Envelope:
    """The CloudEvent for ``message``; ``subject`` defaults to its key value (none when
    that is empty: a CloudEvent's subject is absent or non-empty).

    A message that starts a process (no ``correlationid``) is its own correlation: its id.
    """
    return event_envelope(
        id,
        source,
        message.bus_type,
        message.to_json(),
        time,
        subject or message.bus_key_value() or None,
        correlationid or id,
        causationid,
        traceparent,
    )


def emitted_record(
    message: Message, parent: Envelope, *, source: str, id: str, time: datetime
) -> OutgoingRecord:
    """The record of ``message`` emitted while handling ``parent``.

    Same process (``correlationid`` kept, or the parent's id when it had none), caused by
    the parent (``causationid`` = its id), same trace. The headers are those of
    ``encode(envelope_for(...))``, built without the intermediate envelope.
    """
    correlationid, causationid, traceparent = lineage(parent)
    stamp = ("ce_id", id.encode()), time_header(time)
    return child_record(message, source, stamp, correlationid, causationid, traceparent)


def lineage(parent: Envelope) -> tuple[bytes, bytes, bytes | None]:
    """What a record emitted while handling ``parent`` takes from it, as header values:
    its correlation id (the parent's id when it had none), its causation id (the parent's
    id) and its traceparent."""
    parent_id = parent.id.encode()
    correlationid = parent.correlationid
    traceparent = parent.traceparent
    return (
        correlationid.encode() if correlationid else parent_id,
        parent_id,
        None if traceparent is None else traceparent.encode(),
    )


def child_record(
    message: Message,
    source: str,
    stamp: tuple[tuple[str, bytes], tuple[str, bytes]],
    correlationid: bytes,
    causationid: bytes,
    traceparent: bytes | None,
) -> OutgoingRecord:
    """:func:`emitted_record` from the parent's header values (the hot path).

    ``stamp`` is the record's ``ce_id`` and ``ce_time`` headers (``stamping.stamp()``).
    ``correlationid`` is the parent's correlation id (its id when it had none),
    ``causationid`` its id, ``traceparent`` its trace, all as the bytes of the parent
    record's headers: the worker passes them on without decoding and encoding them again.
    The key is encoded once: the same bytes are the subject header's.
    """
    found = _emitting.get((type(message), source))
    if found is None:
        found = _emitting_of(type(message), source)
    topic, field, source_type = found
    value = None if field is None else getattr(message, field)
    key = None if value is None else (value if type(value) is str else str(value)).encode()
    headers = binary_headers(
        stamp[0], source_type, stamp[1], key, correlationid, causationid, traceparent
    )
    # OutgoingRecord's fields in order, without its Python __new__; the headers stay the
    # list they were built as (Kafka's record builder takes a list; nothing mutates it)
    return _new_outgoing(OutgoingRecord, (topic, key, message.to_json(), headers, None))


_Emitting = tuple[str, str | None, tuple[tuple[str, bytes], tuple[str, bytes]]]
#: (message class, source) -> its topic, key field and shared source and type headers.
#: Reading a class attribute of a pydantic model (through the metaclass's ``__getattr__``
#: hook) cost about 1k instructions each, three per emitted record.
_emitting: dict[tuple[type[Message], str], _Emitting] = {}


def _emitting_of(cls: type[Message], source: str) -> _Emitting:
    if len(_emitting) > 4096:  # a bound, should classes be made at run time without end
        _emitting.clear()
    found = _emitting[(cls, source)] = (
        cls.bus_topic,
        cls.bus_key,
        source_type_headers(source, cls.bus_type),
    )
    return found


def record_for(message: Message, envelope: Envelope) -> OutgoingRecord:
    """The record carrying ``envelope`` to ``message``'s topic, keyed by its key field.

    The headers are ``codec.encode``'s; those of an envelope as :func:`envelope_for` makes
    it (JSON, no schema, no other extensions) come from ``stamping.event_headers``, which
    shares the ``ce_source``, ``ce_type`` and ``ce_time`` tuples between records.
    """
    env = envelope
    if (
        env.datacontenttype == "application/json"
        and env.dataschema is None
        and not env.extensions
        and env.specversion == "1.0"
    ):
        headers = event_headers(
            env.id,
            env.source,
            env.type,
            env.time,
            env.subject,
            env.correlationid,
            env.causationid,
            env.traceparent,
        )
        value = env.data
    else:
        headers, value = encode(env)
    key = message.bus_key_value()
    return OutgoingRecord(
        message.bus_topic, None if key is None else key.encode(), value, tuple(headers)
    )


class Publisher:
    """Publishes typed messages from an upstream system (a script, a web hook, a test).

    Each ``publish`` starts a new process (correlation id = the message id) unless a
    ``correlationid`` is given. It returns once the transport acknowledged the record.

    Example::

        async with Publisher(transport, source="bus://hr-system") as publisher:
            meta = await publisher.publish(EmployeeHired(employee_id="e-1", name="Ada"))
    """

    def __init__(
        self,
        transport: Transport,
        *,
        source: str,
        clock: Callable[[], datetime] = utc_now,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self.transport = transport
        self.source = source
        self._clock = clock
        self._ids = ids

    async def __aenter__(self) -> Publisher:
        await self.transport.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.transport.stop()

    def envelope(
        self,
        message: Message,
        *,
        correlationid: str | None = None,
        causationid: str | None = None,
        traceparent: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        source: str | None = None,
        time: datetime | None = None,
    ) -> Envelope:
        """The envelope :meth:`publish` would send: a fresh id, this publisher's source
        and the time now, unless ``id``, ``source`` or ``time`` are given (an event
        re-sent with its id and source is a duplicate consumers can detect).

        Without a ``traceparent``, the current OpenTelemetry span's is used when spans are
        enabled (see :mod:`bus.tracing`), so a message published from a traced request
        joins its trace.
        """
        if traceparent is None and tracing.enabled():
            traceparent = tracing.current_traceparent()
        return envelope_for(
            message,
            source=source or self.source,
            id=id or self._ids(),
            time=time or self._clock(),
            correlationid=correlationid,
            causationid=causationid,
            traceparent=traceparent,
            subject=subject,
        )

    async def publish(
        self,
        message: Message,
        *,
        correlationid: str | None = None,
        causationid: str | None = None,
        traceparent: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        source: str | None = None,
        time: datetime | None = None,
    ) -> RecordMetadata:
        """Send ``message`` and wait until the transport acknowledged it (``id``,
        ``source`` and ``time`` as for :meth:`envelope`)."""
        env = self.envelope(
            message,
            correlationid=correlationid,
            causationid=causationid,
            traceparent=traceparent,
            subject=subject,
            id=id,
            source=source,
            time=time,
        )
        return await self.transport.publish(record_for(message, env))

    async def forward(self, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
        """Send records made already (:func:`record_for` of an event from elsewhere, ids,
        sources and times kept: the HTTP ingress) and wait for every acknowledgement."""
        return await self.transport.publish_many(records)

    async def publish_many(self, messages: Iterable[Message]) -> list[RecordMetadata]:
        """Send every message (each its own process), then wait for all acknowledgements
        (on Kafka at most ``publish_timeout_s`` in all, then TransportError)."""
        return await self.transport.publish_many(
            [record_for(m, self.envelope(m)) for m in messages]
        )
