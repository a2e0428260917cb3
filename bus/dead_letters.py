"""Dead letters: the original record, byte for byte, plus headers saying why.

A record that cannot be handled (undecodable, unknown type, invalid payload, or a
handler that kept failing) is appended to a dead-letter topic with its key, value and
headers untouched and ``bus_dlq_*`` headers added, so it can be inspected and replayed.
The one exception: a header name that was not UTF-8 cannot be written again by a Kafka
client, so it is written escaped and its bytes kept in ``bus_dlq_raw_header_names``.
Pure: the caller sends the returned record.

Example::

    record = dead_letter(consumed, topic="hr.events.dlq", reason="invalid",
                         error=exc, app="identity", handler="create_account",
                         attempts=1, now=utc_now())
"""

from __future__ import annotations

from datetime import datetime

from bus.cloudevents import format_time
from bus.record import OutgoingRecord, Record
from bus.types import Headers

__all__ = [
    "DROPPED_HEADER",
    "HEADER_PREFIX",
    "RAW_NAMES_HEADER",
    "REASONS",
    "dead_letter",
    "dead_letter_topic",
    "reason_headers",
    "without_original",
]

HEADER_PREFIX = "bus_dlq_"
#: Every ``bus_dlq_reason`` the runtime writes (README, "Dead letters"); ``undeliverable``
#: is a saga command the transport refused for good (``sagas.outbox``).
REASONS = (
    "decode",
    "unknown_type",
    "invalid",
    "handler_failed",
    "permanent_error",
    "output_rejected",
    "undeliverable",
)
#: Set on a dead letter that had to leave out parts of the original to fit the size limit.
DROPPED_HEADER = HEADER_PREFIX + "dropped"
#: Set on a dead letter of a record whose header names were not all UTF-8: those names
#: are written as text with ``\xNN`` escapes, and their bytes kept here as space-separated
#: ``index:hex`` pairs (the header's position among the original headers).
RAW_NAMES_HEADER = HEADER_PREFIX + "raw_header_names"
_MAX_ERROR_TEXT = 2000


def dead_letter_topic(topic: str, override: str | None = None) -> str:
    """``<topic>.dlq`` unless ``override`` names another topic."""
    return override or f"{topic}.dlq"


def reason_headers(
    record: Record,
    *,
    reason: str,
    error: BaseException,
    app: str,
    handler: str | None,
    attempts: int,
    now: datetime,
) -> list[tuple[str, bytes]]:
    """The ``bus_dlq_*`` headers describing why ``record`` was dead-lettered."""
    text = str(error) or type(error).__name__
    pairs = {
        "reason": reason,
        "error_type": f"{type(error).__module__}.{type(error).__qualname__}",
        "error_message": text[:_MAX_ERROR_TEXT],
        "app": app,
        "handler": handler or "",
        "attempts": str(attempts),
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
        "time": format_time(now),
    }
    return [(HEADER_PREFIX + k, v.encode()) for k, v in pairs.items()]


def dead_letter(
    record: Record,
    *,
    topic: str,
    reason: str,
    error: BaseException,
    app: str,
    handler: str | None,
    attempts: int,
    now: datetime,
) -> OutgoingRecord:
    """The dead-letter record for ``record``: same key, value and headers, plus reasons."""
    extra = reason_headers(
        record, reason=reason, error=error, app=app, handler=handler, attempts=attempts, now=now
    )
    headers = record.headers
    if not all(name.isascii() for name, _ in headers):
        headers, raw_names = _writable(headers)
        if raw_names:
            extra.append((RAW_NAMES_HEADER, raw_names))
    return OutgoingRecord(
        topic=topic, key=record.key, value=record.value, headers=(*headers, *extra)
    )


def _writable(headers: Headers) -> tuple[list[tuple[str, bytes]], bytes]:
    """``headers`` with every name that was not UTF-8 on the wire (escaped by the
    transport, see :mod:`bus.transports.kafka_raw`) written as text, its bytes as
    ``\\xNN``; and the original names of those, as ``index:hex`` pairs (b"" if none)."""
    out: list[tuple[str, bytes]] = []
    raw_names: list[str] = []
    for i, (name, value) in enumerate(headers):
        try:
            name.encode()
        except UnicodeEncodeError:
            raw = name.encode("utf-8", "surrogateescape")
            raw_names.append(f"{i}:{raw.hex()}")
            name = raw.decode("utf-8", "backslashreplace")
        out.append((name, value))
    return out, " ".join(raw_names).encode()


def without_original(out: OutgoingRecord, *, headers_too: bool = False) -> OutgoingRecord:
    """``out`` without the original value (and, with ``headers_too``, key and headers).

    For a record too large to dead-letter whole (the reason headers pushed it over the
    size limit): the dead letter still says what failed, where the record is in its
    original topic, and, in ``bus_dlq_dropped``, what was left out and its size. A
    dead letter without its value cannot be replayed.
    """
    dropped = [f"value={len(out.value or b'')}"]
    headers = out.headers
    key = out.key
    if headers_too:
        original = [h for h in out.headers if not h[0].startswith(HEADER_PREFIX)]
        dropped.append(f"key={len(out.key or b'')}")
        dropped.append(f"headers={sum(len(k) + len(v) for k, v in original)}")
        headers = tuple(h for h in out.headers if h[0].startswith(HEADER_PREFIX))
        key = None
    note = (DROPPED_HEADER, " ".join(dropped).encode())
    return OutgoingRecord(topic=out.topic, key=key, value=None, headers=(*headers, note))
