"""Dead letters: the original record, byte for byte, plus headers saying why.

A record that cannot be handled (undecodable, unknown type, invalid payload, or a
handler that kept failing) is appended to a dead-letter topic with its key, value and
headers untouched and ``bus_dlq_*`` headers added, so it can be inspected and replayed.
Pure: the caller sends the returned record.

Example::

    record = dead_letter(consumed, topic="hr.events.dlq", reason="invalid",
                         error=exc, app="identity", handler="create_account",
                         attempts=1, now=utc_now())
"""

from __future__ import annotations

from datetime import datetime

from bus.codec import format_time
from bus.record import OutgoingRecord, Record

__all__ = ["HEADER_PREFIX", "REASONS", "dead_letter", "dead_letter_topic", "reason_headers"]

HEADER_PREFIX = "bus_dlq_"
#: Every ``bus_dlq_reason`` the runtime writes (README, "Dead letters").
REASONS = (
    "decode",
    "unknown_type",
    "invalid",
    "handler_failed",
    "permanent_error",
    "output_rejected",
)
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
    return OutgoingRecord(
        topic=topic, key=record.key, value=record.value, headers=(*record.headers, *extra)
    )
