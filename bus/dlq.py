"""Dead-letter tooling: read, filter, show and replay the records in ``*.dlq`` topics.

The pure part turns a dead-letter :class:`~bus.record.Record` into a :class:`DeadLetter`,
filters (:class:`DeadLetterFilter`), formats (table, detail, JSON) and builds the replayed
record (:func:`replay_record`). The I/O part (:func:`read_dead_letters`,
:func:`replay_dead_letters`) reads a snapshot of the dead-letter topics through a
:class:`~bus.transports.base.Transport` and sends replays; ``bus dlq`` is its shell.

Decisions (see docs/dlq.md):

- **ID**: the CloudEvents ``ce_id`` header when present, else ``<dlq-topic>:<partition>:
  <offset>``. The location form always names exactly one dead letter.
- **Replay count**: a replayed record carries ``bus_dlq_replays`` (1 after the first
  replay). Dead-lettered again, it keeps that header, so the new dead letter knows how
  often it went round; a replay of it above ``max_replays`` is refused.
- **Superseded copies**: a replayed event that fails again is a second dead letter with the
  same ID and a higher replay count; a replay by ID or filter takes only the newest copy
  of each ID, so one run never sends the same event twice.
- **Snapshot**: a read stops at the end of each partition as first seen by the consumer
  (its high watermark; not ``end_offsets()``, which Tansu gets wrong), so a replay into a
  scanned topic is never read back by the same run.

Example::

    letters = await read_dead_letters(transport, ["hr.events.dlq"])
    wanted = [d for d in letters if DeadLetterFilter(reason="invalid").matches(d)]
    print(format_table(wanted))
"""

from __future__ import annotations

import base64
import fnmatch
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from bus.codec import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE, decode
from bus.dead_letters import DROPPED_HEADER, HEADER_PREFIX
from bus.errors import ConfigError, RecordError, TransportError
from bus.record import OutgoingRecord, Record, TopicPartition
from bus.retry_topics import HEADER_PREFIX as RETRY_HEADER_PREFIX
from bus.transports.base import Delivery, Transport

__all__ = [
    "DEFAULT_MAX_REPLAYS",
    "DLQ_SUFFIX",
    "REPLAYS_HEADER",
    "DeadLetter",
    "DeadLetterFilter",
    "ReplayPlan",
    "format_detail",
    "format_table",
    "list_dead_letter_topics",
    "newest_copies",
    "parse_since",
    "plan_replay",
    "progress_bar",
    "read_dead_letters",
    "replay_dead_letters",
    "replay_record",
    "to_json",
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


# -- replay: the pure decisions ---------------------------------------------------------
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


# -- formatting -------------------------------------------------------------------------
def _short(text: str | None, width: int) -> str:
    text = (text or "-").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _time_text(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_table(letters: Sequence[DeadLetter], *, error_width: int = 80) -> str:
    """A text table of ``letters``, one line each, oldest first, with a header line."""
    head = ("ID", "TIME", "TOPIC", "TYPE", "REASON", "HANDLER", "REPLAYS", "ERROR")
    rows = [
        (
            d.id,
            _time_text(d.time),
            d.original_topic or d.record.topic,
            d.type or "-",
            d.reason or "-",
            d.handler or "-",
            str(d.replays),
            _short(f"{_short_type(d.error_type)}: {d.error_message or ''}", error_width),
        )
        for d in sorted(letters, key=_age)
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head) - 1)]
    lines = []
    for row in (head, *rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _age(d: DeadLetter) -> tuple[float, str, int, int]:
    when = d.time.timestamp() if d.time is not None else float("inf")
    return (when, d.record.topic, d.record.partition, d.record.offset)


def _short_type(error_type: str | None) -> str:
    return (error_type or "-").rsplit(".", 1)[-1]


def _value_json(value: bytes | None) -> Any:
    """The payload for JSON output: parsed JSON, else text, else ``{"base64": ...}``."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}


def _bytes_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def to_json(d: DeadLetter) -> dict[str, Any]:
    """A JSON-ready dict of ``d`` (``--json``); bytes that are not UTF-8 become base64."""
    r = d.record
    return {
        "id": d.id,
        "location": d.location,
        "dlq": {"topic": r.topic, "partition": r.partition, "offset": r.offset},
        "reason": d.reason,
        "error_type": d.error_type,
        "error_message": d.error_message,
        "app": d.app,
        "handler": d.handler,
        "attempts": d.attempts,
        "topic": d.original_topic,
        "partition": d.original_partition,
        "offset": d.original_offset,
        "time": None if d.time is None else d.time.isoformat().replace("+00:00", "Z"),
        "type": d.type,
        "replays": d.replays,
        "dropped": d.dropped,
        "key": None if r.key is None else _bytes_text(r.key),
        "headers": [[k, _bytes_text(v)] for k, v in r.headers],
        "value": _value_json(r.value),
    }


def format_detail(d: DeadLetter) -> str:
    """``bus dlq show``: where it is, why it failed, every header, the payload indented."""
    r = d.record
    lines = [
        f"id:        {d.id}",
        f"location:  {d.location}",
        f"reason:    {d.reason or '-'}",
        f"error:     {d.error_type or '-'}",
        *(f"           {line}" for line in (d.error_message or "-").splitlines() or ["-"]),
        f"app:       {d.app or '-'}   handler: {d.handler or '-'}   attempts: "
        f"{'-' if d.attempts is None else d.attempts}   replays: {d.replays}",
        f"from:      {d.original_topic or '-'}[{_dash(d.original_partition)}]@"
        f"{_dash(d.original_offset)}",
        f"time:      {_time_text(d.time)}",
        *([f"dropped:   {d.dropped} (too large to keep whole)"] if d.dropped else []),
        f"key:       {'-' if r.key is None else _shown(r.key)}",
        "headers:",
        *(
            f"  {k!r}: {_shown(v)}" if not _printable(k) else f"  {k}: {_shown(v)}"
            for k, v in r.headers
        ),
        "payload:",
    ]
    value = _value_json(r.value)
    if value is None:
        body = "(none)"
    elif isinstance(value, str):
        body = value if _printable(value) else _base64_note(r.value or b"")
    elif isinstance(value, dict) and set(value) == {"base64"} and not _is_json(r.value):
        body = _base64_note(r.value or b"")
    else:
        body = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    lines.extend(f"  {line}" for line in body.splitlines() or [""])
    return "\n".join(lines)


def _printable(text: str) -> bool:
    return all(c.isprintable() or c in "\n\t" for c in text)


def _shown(raw: bytes) -> str:
    """Text for a terminal: UTF-8 without control characters as is, else base64."""
    text = _bytes_text(raw)
    return text if _printable(text) else "base64:" + base64.b64encode(raw).decode()


def _base64_note(raw: bytes) -> str:
    return f"({len(raw)} bytes, not printable text; base64)\n{base64.b64encode(raw).decode()}"


def _is_json(raw: bytes | None) -> bool:
    try:
        orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return False
    return True


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def progress_bar(done: int, total: int, *, width: int = 30) -> str:
    """``[#######.......]  120/500  24%``: one line, redrawn with ``\\r`` on a terminal."""
    total = max(total, 0)
    fraction = 1.0 if total == 0 else min(done / total, 1.0)
    filled = int(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {fraction:4.0%}"


# -- I/O: reading a snapshot, sending replays -------------------------------------------
async def list_dead_letter_topics(transport: Transport, wanted: Sequence[str] = ()) -> list[str]:
    """The dead-letter topics to scan: every ``*.dlq`` topic, or those named in ``wanted``.

    A wanted name not ending in ``.dlq`` means ``NAME.dlq`` when that exists (so
    ``--topic hr.events`` works as well as ``--topic hr.events.dlq``), else ``NAME`` itself
    (a dead-letter topic named by ``App(dead_letter_topic=...)``).
    """
    existing = set(await transport.list_topics())
    if not wanted:
        return sorted(t for t in existing if t.endswith(DLQ_SUFFIX))
    out: list[str] = []
    for name in wanted:
        if not name.endswith(DLQ_SUFFIX) and name + DLQ_SUFFIX in existing:
            out.append(name + DLQ_SUFFIX)
        elif name in existing:
            out.append(name)
        else:
            raise ConfigError(
                f"--topic {name!r}: neither {name!r} nor {name + DLQ_SUFFIX!r} exists "
                "(list them with 'bus dlq list' without --topic)"
            )
    return out


async def read_dead_letters(
    transport: Transport,
    topics: Sequence[str],
    *,
    keep: Callable[[DeadLetter], bool] | None = None,
    timeout_s: float = 60.0,
    quiet_s: float = 2.0,
) -> list[DeadLetter]:
    """Every record of ``topics`` up to the end of each partition as first seen (only
    those ``keep`` accepts, if given: the others are not held in memory).

    Reads with a group-less consumer (no offsets committed, nothing changes on the
    broker). The end of a partition is its high watermark as the consumer first sees it
    on a fetch (on Tansu ``end_offsets()`` is wrong, see README); records appended later
    are not read. ``quiet_s`` of empty fetches after every end is known also ends the
    read (a log whose last offsets are not records, e.g. transaction markers).
    ``timeout_s`` without progress is a :class:`~bus.errors.TransportError`.
    """
    if not topics:
        return []
    consumer = transport.consumer(list(topics), group=None)
    await consumer.start()
    out: list[DeadLetter] = []
    try:
        tps = consumer.assignment()
        ends: dict[TopicPartition, int] = {}
        next_offset: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()

        def note_ends() -> None:
            for tp in tps:
                if tp not in ends:
                    hw = consumer.highwater(tp)
                    if hw is not None:
                        ends[tp] = hw

        def finished() -> bool:
            return len(ends) == len(tps) and all(
                next_offset.get(tp, -1) >= end or end == 0 for tp, end in ends.items()
            )

        note_ends()
        while not finished():
            if time.monotonic() > deadline:
                missing = sorted(tp for tp in tps if tp not in ends)
                raise TransportError(
                    f"could not read {', '.join(topics)} to its end: no progress for "
                    f"{timeout_s:.0f}s (--read-timeout-s) "
                    f"(partitions without a known end: {missing or 'none'}); is the broker up?"
                )
            batches = await consumer.fetch(max_records=1000, timeout_s=0.2)
            note_ends()
            if not batches:
                if len(ends) == len(tps) and time.monotonic() - quiet_since > quiet_s:
                    break
                continue
            quiet_since = time.monotonic()
            deadline = quiet_since + timeout_s  # a deadline for progress, not for the read
            for tp, records in batches.items():
                end = ends.get(tp)
                for record in records:
                    if end is not None and record.offset >= end:
                        break
                    d = DeadLetter.from_record(record)
                    if keep is None or keep(d):
                        out.append(d)
                if records:
                    next_offset[tp] = records[-1].offset + 1
    finally:
        await consumer.stop()
    return out


async def replay_dead_letters(
    transport: Transport,
    plan: ReplayPlan,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Send the records of ``plan`` (waiting for every acknowledgement); the count sent."""
    total = len(plan.send)
    pending: list[Delivery] = []
    for done, (_, record) in enumerate(plan.send, start=1):
        pending.append(await transport.send(record))
        if len(pending) >= 500:  # bounded: wait for a window of acks before sending on
            await _acked(pending)
            pending.clear()
        if on_progress is not None:
            on_progress(done, total)
    await _acked(pending)
    return total


async def _acked(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        await delivery  # a failure is a BusError already (the transport translated it)
