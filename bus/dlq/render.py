"""Dead letters as text: the cells of the ``bus dlq list`` table, the ``show`` detail and
``--json``. Pure: strings and dicts from :class:`~bus.dlq.letters.DeadLetter`.

Example::

    for row in table_rows(letters):
        print("  ".join(row))
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from bus.dlq.letters import DeadLetter, newest_first


def _short(text: str | None, width: int) -> str:
    text = (text or "-").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _time_text(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


#: The columns of ``bus dlq list``.
TABLE_HEADERS = ("ID", "TIME", "TOPIC", "TYPE", "REASON", "HANDLER", "REPLAYS", "ERROR")


def table_rows(letters: Sequence[DeadLetter], *, error_width: int = 80) -> list[tuple[str, ...]]:
    """The cells of ``bus dlq list`` (under :data:`TABLE_HEADERS`), one row per dead
    letter, oldest first; the CLI draws them (a Rich table on a terminal)."""
    return [
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


def format_summary(letters: Sequence[DeadLetter]) -> str:
    """The line under ``bus dlq list``'s table: how many, in how many dead-letter topics
    (those holding one of ``letters``, not every topic read)."""
    topics = {d.record.topic for d in letters}
    return f"{len(letters)} dead letter(s) in {len(topics)} topic(s)"


def format_nothing_matched(topics: Sequence[str]) -> str:
    """What ``bus dlq replay`` says when its IDs or filters matched no dead letter (it then
    exits 1: nothing was done, which a script should notice)."""
    where = ", ".join(topics) if topics else "no dead-letter topic (none exists)"
    return (
        f"nothing matched: no dead letter in {where} matches the filter; nothing was "
        "replayed (list them with 'bus dlq list')"
    )


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


def format_copies(letters: Sequence[DeadLetter]) -> str:
    """``bus dlq show``: for each ID among ``letters``, the detail of its newest copy (a
    replayed event that failed again is dead-lettered again under the same ID), saying how
    many copies there are and where the older ones are."""
    by_id: dict[str, list[DeadLetter]] = {}
    for d in letters:
        by_id.setdefault(d.id, []).append(d)
    return "\n\n".join(
        format_detail(copies[0], older=copies[1:])
        for copies in (newest_first(group) for group in by_id.values())
    )


def format_detail(d: DeadLetter, *, older: Sequence[DeadLetter] = ()) -> str:
    """``bus dlq show``: where it is, why it failed, every header, the payload indented;
    ``older``: the other copies of its ID, named by location."""
    r = d.record
    copies = []
    if older:
        copies = [
            f"copies:    {len(older) + 1} with this ID; this is the newest, older: "
            + ", ".join(o.location for o in older)
        ]
    lines = [
        f"id:        {d.id}",
        f"location:  {d.location}",
        *copies,
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
