"""What every record bus writes is stamped with: the time and id of now, and header tuples
shared per millisecond and per (source, type).

The shell beside the pure :mod:`bus.encoding`: it reads the clock (once per emitted record,
for both its ``ce_id`` and its ``ce_time``) and keeps the caches that spare the hot path
an allocation or a formatting per record. The values it makes are what the codec would
make (a property test holds :func:`event_headers` to ``codec.encode``); only their
sharing is remembered here.

Example::

    id_header, time_header = stamp()  # ("ce_id", b"0193..."), ("ce_time", b"2026-...Z")
    headers = binary_headers(id_header, source_type_headers("bus://hr", "hr.hired.v1"),
                             time_header, b"e-1", b"c-1", b"c-1", None)
"""

from __future__ import annotations

from datetime import UTC, datetime
from time import time_ns as _time_ns

from bus.cloudevents import format_time
from bus.encoding import binary_headers
from bus.ids import new_id_at

__all__ = [
    "event_headers",
    "source_type_headers",
    "stamp",
    "time_header",
    "utc_now",
]

_last_ms = -1
_last_now = datetime.fromtimestamp(0, UTC)


def utc_now() -> datetime:
    """The wall clock as an aware UTC datetime at millisecond precision.

    Within one millisecond the same object is returned: at thousands of messages per
    second most envelopes then share one timestamp object and its ``ce_time`` header
    (:func:`time_header` remembers the last one), which halves the cost of stamping.
    Kafka's own record timestamps are milliseconds too.

    Example::

        env = Envelope(id=new_id(), source="bus://hr", type="hr.hired.v1", time=utc_now())
    """
    global _last_ms, _last_now
    ms = _time_ns() // 1_000_000
    if ms != _last_ms:
        _last_ms = ms
        _last_now = datetime.fromtimestamp(ms / 1000, UTC)
    return _last_now


_last_time_header: tuple[datetime | None, tuple[str, bytes]] = (None, ("ce_time", b""))


def time_header(t: datetime) -> tuple[str, bytes]:
    """The ``ce_time`` header of ``t``, remembered for the last ``t`` (shared per millisecond:
    one tuple for every record stamped in it, so one allocation less per record)."""
    global _last_time_header
    last, header = _last_time_header
    if t is last:
        return header
    header = ("ce_time", format_time(t).encode())
    _last_time_header = (t, header)
    return header


_stamp_ms = -1
_stamp_time: tuple[str, bytes] = ("ce_time", b"")


def stamp() -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """A new ``ce_id`` header (:func:`bus.ids.new_id`) and the ``ce_time`` header of now
    (:func:`utc_now`, to the millisecond), from one read of the clock.

    What every record a handler emits is stamped with, by default. Separate calls to
    ``new_id`` and ``utc_now`` read the clock twice and made a datetime per record; here
    the time header is made once per millisecond and shared.

    Example::

        id_header, time_header = stamp()  # ("ce_id", b"0193..."), ("ce_time", b"2026-...Z")
    """
    global _stamp_ms, _stamp_time
    ms = _time_ns() // 1_000_000
    if ms != _stamp_ms:
        _stamp_ms = ms
        _stamp_time = ("ce_time", format_time(datetime.fromtimestamp(ms / 1000, UTC)).encode())
    return ("ce_id", new_id_at(ms).encode()), _stamp_time


_constant_headers: dict[tuple[str, str], tuple[str, bytes]] = {}
_source_type_headers: dict[tuple[str, str], tuple[tuple[str, bytes], tuple[str, bytes]]] = {}


def _constant_header(name: str, value: str) -> tuple[str, bytes]:
    """One shared header tuple per (name, value): sources and types repeat on every record."""
    found = _constant_headers.get((name, value))
    if found is None:
        if len(_constant_headers) > 4096:  # a bound, should values ever stop repeating
            _constant_headers.clear()
        found = _constant_headers[(name, value)] = (name, value.encode())
    return found


def source_type_headers(source: str, type: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The shared ``ce_source`` and ``ce_type`` headers of one (source, type): one lookup.

    The ``ce_type`` tuple is one object per type, which is what the worker's metrics count
    produced records by (``metrics.HandlerStats``).
    """
    pair = _source_type_headers.get((source, type))
    return _source_type_pair(source, type) if pair is None else pair


def _source_type_pair(source: str, type: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The shared ``ce_source`` and ``ce_type`` headers of one (source, type)."""
    if len(_source_type_headers) > 4096:  # a bound, should values ever stop repeating
        _source_type_headers.clear()
    pair = (_constant_header("ce_source", source), _constant_header("ce_type", type))
    _source_type_headers[(source, type)] = pair
    return pair


def event_headers(
    id: str,
    source: str,
    type: str,
    time: datetime | None,
    subject: str | None,
    correlationid: str | None,
    causationid: str | None,
    traceparent: str | None,
) -> list[tuple[str, bytes]]:
    """``codec.encode(event_envelope(...))[0]`` without building the envelope, with the
    shared ``ce_source``, ``ce_type`` and ``ce_time`` headers.

    The same headers in the same order as ``encode`` of a JSON envelope with no schema
    and no other extensions (a property test holds the two together).
    """
    return binary_headers(
        ("ce_id", id.encode()),
        source_type_headers(source, type),
        None if time is None else time_header(time),
        None if subject is None else subject.encode(),
        None if correlationid is None else correlationid.encode(),
        None if causationid is None else causationid.encode(),
        None if traceparent is None else traceparent.encode(),
    )
