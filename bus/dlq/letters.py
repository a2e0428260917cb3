"""The dead-letter domain: a dead-letter record read as a :class:`DeadLetter`, which ones a
command means (:class:`DeadLetterFilter`, :func:`parse_since`) and what a replay sends
(:func:`plan_replay`: the newest copy of each ID, the loop guard, the record to send).

Pure: no transport, no clock (``parse_since`` takes ``now``). Reading the topics and
sending replays is :mod:`bus.dlq.io`'s; tables and text are :mod:`bus.dlq.render`'s.

Example::

    d = DeadLetter.from_record(record)
    plan = plan_replay([d], max_replays=DEFAULT_MAX_REPLAYS)
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bus.codec import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE, decode
from bus.dead_letters import DROPPED_HEADER, HEADER_PREFIX
from bus.errors import ConfigError, RecordError
from bus.record import OutgoingRecord, Record
from bus.retry_topics import HEADER_PREFIX as RETRY_HEADER_PREFIX

__all__ = [
    "DEFAULT_MAX_REPLAYS",
    "DLQ_SUFFIX",
    "REPLAYS_HEADER",
    "DeadLetter",
    "DeadLetterFilter",
    "ReplayPlan",
    "newest_copies",
    "newest_first",
    "parse_since",
    "plan_replay",
    "replay_record",
]

DLQ_SUFFIX = ".dlq"
#: How often a record has been replayed from a dead-letter topic (decimal text).
REPLAYS_HEADER = HEADER_PREFIX + "replays"
DEFAULT_MAX_REPLAYS = 3


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8", errors="replace")


def _int(raw: bytes | None) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def _time(raw: bytes | None) -> datetime | None:
    text = _text(raw)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, with its ``bus_dlq_*`` headers read.

    Every field but ``id``, ``location`` and ``record`` is None when its header is
    missing (a record someone else wrote to the topic).

    Example::

        d = DeadLetter.from_record(record)
        d.id, d.reason, d.error_message, d.original_topic
    """

    #: The CloudEvents id (``ce_id``, or ``id`` of a structured-mode event), else ``location``.
    id: str
    #: ``<dlq-topic>:<partition>:<offset>``: where this dead letter is (unique).
    location: str
    #: The dead-letter record itself (original key, value and headers plus reasons).
    record: Record
    reason: str | None
    error_type: str | None
    error_message: str | None
    app: str | None
    handler: str | None
    attempts: int | None
    #: Where the record was consumed from: the replay target unless ``--to`` is given.
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    #: When it was dead-lettered (aware datetime).
    time: datetime | None
    #: The CloudEvents type (``ce_type``, or ``type`` of a structured-mode event), if any.
    type: str | None
    #: Times the record was replayed before it was dead-lettered this time.
    replays: int = 0
    #: What was left out to fit the size limit (``value=1048000``), or None: all kept.
    dropped: str | None = None

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        """Read the ``bus_dlq_*`` and ``ce_*`` headers of a dead-letter ``record``."""

        def h(name: str) -> bytes | None:
            return record.header(HEADER_PREFIX + name)

        location = f"{record.topic}:{record.partition}:{record.offset}"
        ce_id, ce_type = _event_id_and_type(record)
        return cls(
            id=ce_id or location,
            location=location,
            record=record,
            reason=_text(h("reason")),
            error_type=_text(h("error_type")),
            error_message=_text(h("error_message")),
            app=_text(h("app")),
            handler=_text(h("handler")) or None,
            attempts=_int(h("attempts")),
            original_topic=_text(h("topic")),
            original_partition=_int(h("partition")),
            original_offset=_int(h("offset")),
            time=_time(h("time")),
            type=ce_type,
            replays=_int(record.header(REPLAYS_HEADER)) or 0,
            dropped=_text(record.header(DROPPED_HEADER)),
        )

    def has_id(self, wanted: str) -> bool:
        """True if ``wanted`` is this dead letter's ID or its location."""
        return wanted in (self.id, self.location)


def _event_id_and_type(record: Record) -> tuple[str | None, str | None]:
    """The CloudEvents id and type: from the ``ce_*`` headers (binary mode, even when the
    event is otherwise unreadable), else from the value (a structured-mode event)."""
    ce_id, ce_type = _text(record.header("ce_id")), _text(record.header("ce_type"))
    content_type = (record.header(CONTENT_TYPE_HEADER) or b"").lower()
    if ce_id is None and content_type.startswith(STRUCTURED_CONTENT_TYPE.encode()):
        try:
            env = decode(record.headers, record.value)
        except RecordError:
            return None, ce_type
        return env.id, env.type
    return ce_id, ce_type


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an RFC 3339 time, or a duration back from ``now`` (``30m``, ``2h``, ``7d``)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ConfigError(
            f"--since {text!r} is neither a duration (30m, 2h, 7d) nor an RFC 3339 time "
            "with an offset (2026-01-31T12:00:00Z)"
        )
    return parsed


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters a command acts on; an unset field matches everything.

    ``type``, ``handler`` and ``topic`` are shell-style patterns (``hr.*``); ``error`` is a
    case-insensitive substring of the error type or message; ``reason`` is exact.

    Example::

        DeadLetterFilter(type="hr.*", error="ValidationError").matches(dead_letter)
    """

    #: Original topic (the one the record was consumed from).
    topic: str | None = None
    type: str | None = None
    handler: str | None = None
    error: str | None = None
    reason: str | None = None
    #: Only dead letters written at or after this time.
    since: datetime | None = None
    #: Only these IDs or locations (empty: any).
    ids: frozenset[str] = field(default_factory=frozenset)

    def matches(self, d: DeadLetter) -> bool:
        if self.ids and d.id not in self.ids and d.location not in self.ids:
            return False
        if self.topic is not None and not fnmatch.fnmatchcase(d.original_topic or "", self.topic):
            return False
        if self.type is not None and not fnmatch.fnmatchcase(d.type or "", self.type):
            return False
        if self.handler is not None and not fnmatch.fnmatchcase(d.handler or "", self.handler):
            return False
        if self.reason is not None and d.reason != self.reason:
            return False
        if self.error is not None:
            text = f"{d.error_type or ''}\n{d.error_message or ''}".lower()
            if self.error.lower() not in text:
                return False
        return self.since is None or (d.time is not None and d.time >= self.since)


def replay_record(d: DeadLetter, *, to: str | None = None) -> OutgoingRecord:
    """The record a replay sends: original key, value and headers, ``bus_dlq_*`` (and any
    ``bus_retry_*``) removed except ``bus_dlq_replays`` (one more than before), to ``to``
    or the original topic: a fresh start, retries included."""
    target = to or d.original_topic
    if not target:
        raise ConfigError(
            f"dead letter {d.location} has no {HEADER_PREFIX}topic header, so its original "
            "topic is unknown; name the target with --to TOPIC"
        )
    kept = tuple(
        (k, v)
        for k, v in d.record.headers
        if not k.startswith(HEADER_PREFIX) and not k.startswith(RETRY_HEADER_PREFIX)
    )
    headers = (*kept, (REPLAYS_HEADER, str(d.replays + 1).encode()))
    return OutgoingRecord(topic=target, key=d.record.key, value=d.record.value, headers=headers)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay will do: the records to send, and what it refuses and why."""

    #: (dead letter, record to send), in the order read.
    send: tuple[tuple[DeadLetter, OutgoingRecord], ...]
    #: (dead letter, reason for refusing).
    refused: tuple[tuple[DeadLetter, str], ...]
    #: Older copies of an ID that also has a newer dead letter (not replayed).
    superseded: tuple[DeadLetter, ...] = ()


def newest_copies(letters: Iterable[DeadLetter]) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(newest copy of each ID, older copies): the newest has the highest replay count,
    then the latest dead-letter time; order of first appearance is kept."""
    best: dict[str, DeadLetter] = {}
    older: list[DeadLetter] = []
    for d in letters:
        seen = best.get(d.id)
        if seen is None:
            best[d.id] = d
            continue
        if _newer(d, seen):
            best[d.id] = d
            older.append(seen)
        else:
            older.append(d)
    return list(best.values()), older


def newest_first(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """``letters`` from the newest copy to the oldest, by the order :func:`newest_copies`
    uses (replay count, then dead-letter time, then location)."""
    return sorted(letters, key=functools.cmp_to_key(_newest_first))


def _newest_first(a: DeadLetter, b: DeadLetter) -> int:
    return -1 if _newer(a, b) else 1 if _newer(b, a) else 0


def _newer(a: DeadLetter, b: DeadLetter) -> bool:
    at, bt = a.time, b.time
    if a.replays != b.replays:
        return a.replays > b.replays
    if at is not None and bt is not None and at != bt:
        return at > bt
    return (a.record.topic, a.record.partition, a.record.offset) > (
        b.record.topic,
        b.record.partition,
        b.record.offset,
    )


def plan_replay(
    letters: Iterable[DeadLetter], *, max_replays: int, to: str | None = None
) -> ReplayPlan:
    """Decide, for already-filtered dead letters, what to send and what to refuse.

    A dead letter replayed ``max_replays`` times already is refused: the record keeps
    failing, and replaying it forever would loop. The refusal names ``--max-replays``.
    """
    newest, older = newest_copies(letters)
    send: list[tuple[DeadLetter, OutgoingRecord]] = []
    refused: list[tuple[DeadLetter, str]] = []
    for d in newest:
        if d.replays >= max_replays:
            refused.append(
                (
                    d,
                    f"replayed {d.replays} time(s) already (limit {max_replays}); it keeps "
                    "failing: fix the cause, or raise the limit with --max-replays N",
                )
            )
            continue
        if d.dropped is not None:
            refused.append(
                (
                    d,
                    f"the original was too large to keep in the dead letter ({d.dropped}); "
                    f"replay it from {d.original_topic}[{_dash(d.original_partition)}]@"
                    f"{_dash(d.original_offset)} while the topic retains it",
                )
            )
            continue
        target = to or d.original_topic
        if not target:
            refused.append(
                (d, f"no {HEADER_PREFIX}topic header: the original topic is unknown; use --to")
            )
            continue
        send.append((d, replay_record(d, to=target)))
    return ReplayPlan(tuple(send), tuple(refused), tuple(older))


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)
