"""Delayed retries through retry topics: names, headers and the record that carries them (pure).

A record whose in-process tries failed, under a policy with ``tiers_s``, is appended to the
consuming app's retry topic for the next tier, ``<group>.retry.<delay>`` (for example
``identity.retry.10s``), with its key, value and headers untouched plus ``bus_retry_*``
headers: when it is due, how many tries it had, which tier it is in, where it came from and
the last error. The app consumes its retry topics like any other; a lane waits until the
head record is due (every record of a tier has the same delay, so a tier topic is in
due order), tries the handler once, and on failure moves it to the next tier or to the
dead-letter topic of its *original* topic, with its original coordinates.

Trade-off: while a record waits in a tier, later records of the same key are handled
first. A handler for which per-key order matters more declares ``blocking=True``.

Example::

    out = retry_record(record, topic=retry_topic("identity", 10.0), tier=0, attempts=3,
                       due_ms=now_ms + 10_000, error=exc)
    state = retry_state(consumed_from_tier)   # None for a record not from a retry topic
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.record import OutgoingRecord, Record
from bus.types import Headers

__all__ = [
    "HEADER_PREFIX",
    "RetryState",
    "origin_record",
    "retry_record",
    "retry_state",
    "retry_topic",
    "tier_label",
]

HEADER_PREFIX = "bus_retry_"
_MAX_ERROR_TEXT = 2000
_UNITS = ((3600.0, "h"), (60.0, "m"), (1.0, "s"))


def tier_label(delay_s: float) -> str:
    """A short stable label for a delay: ``10s``, ``1m``, ``10m``, ``1h``, ``250ms``."""
    for size, unit in _UNITS:
        count = delay_s / size
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{round(delay_s * 1000)}ms"


def retry_topic(group: str, delay_s: float) -> str:
    """The retry topic of consumer group ``group`` for the tier of ``delay_s`` seconds."""
    return f"{group}.retry.{tier_label(delay_s)}"


@dataclass(frozen=True, slots=True)
class RetryState:
    """What a record from a retry topic says about its retries."""

    #: Tier index (0-based) of the topic it was read from.
    tier: int
    #: Tries it had so far, in all.
    attempts: int
    #: When it may be tried, in milliseconds since the epoch.
    due_ms: int
    #: The topic, partition and offset it was first consumed at.
    topic: str
    partition: int
    offset: int


def retry_record(
    record: Record,
    *,
    topic: str,
    tier: int,
    attempts: int,
    due_ms: int,
    error: BaseException,
) -> OutgoingRecord:
    """``record`` (key, value and its own headers untouched) bound for retry ``topic``."""
    state = retry_state(record)
    origin = (
        (record.topic, record.partition, record.offset)
        if state is None
        else (state.topic, state.partition, state.offset)
    )
    text = (str(error) or type(error).__name__)[:_MAX_ERROR_TEXT]
    pairs = (
        ("tier", str(tier)),
        ("attempts", str(attempts)),
        ("due_ms", str(due_ms)),
        ("topic", origin[0]),
        ("partition", str(origin[1])),
        ("offset", str(origin[2])),
        ("error_type", f"{type(error).__module__}.{type(error).__qualname__}"),
        ("error_message", text),
    )
    headers = (*_own_headers(record.headers), *((HEADER_PREFIX + k, v.encode()) for k, v in pairs))
    return OutgoingRecord(topic=topic, key=record.key, value=record.value, headers=headers)


def retry_state(record: Record) -> RetryState | None:
    """The retry headers of ``record``, or None when it carries none (or unreadable ones)."""
    found: dict[str, str] = {}
    for key, value in record.headers:
        if key.startswith(HEADER_PREFIX):
            try:
                found[key[len(HEADER_PREFIX) :]] = value.decode()
            except UnicodeDecodeError:
                return None
    try:
        return RetryState(
            tier=int(found["tier"]),
            attempts=int(found["attempts"]),
            due_ms=int(found["due_ms"]),
            topic=found["topic"],
            partition=int(found["partition"]),
            offset=int(found["offset"]),
        )
    except (KeyError, ValueError):
        return None


def origin_record(record: Record, state: RetryState) -> Record:
    """``record`` as it was first consumed: original coordinates, retry headers removed.

    Dead letters of retried records are built from this, so their ``bus_dlq_topic``,
    ``_partition`` and ``_offset`` point at the original record, not at a retry topic.
    """
    return record._replace(
        topic=state.topic,
        partition=state.partition,
        offset=state.offset,
        headers=_own_headers(record.headers),
    )


def _own_headers(headers: Headers) -> Headers:
    return tuple((k, v) for k, v in headers if not k.startswith(HEADER_PREFIX))
