"""Bulk files for ``bus publish``: NDJSON and CSV lines as messages, each bad line a reject.

Unlike :func:`bus.ingest.parse_ndjson` (all or nothing), a bulk read keeps going: every
line is either an :class:`Item` (a valid message, with the ``id``, ``source``, ``time``,
``subject`` and ``correlationid`` the line gave) or a :class:`Reject` with its reason.
Keeping a line's id and source means a re-sent file is the same events: an ingress with a
dedup store answers them as duplicates.

A CSV file's columns become the message's fields through a mapping ``column=field``
(``field`` may be dotted, ``address.city``, for a nested object); without a mapping each
column is the field of its name. The columns ``ce_id``, ``ce_source``, ``ce_time``,
``ce_subject`` (or a mapping to them) are the event's attributes. An empty cell is left
out, so the field's default applies.

Example::

    items, rejects = read_csv(open("hires.csv"), "hr.employee.hired.v1",
                              parse_mapping("emp=employee_id,full_name=name"), registry)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bus.errors import BusError, ConfigError
from bus.ingest import parse_message
from bus.message import Message
from bus.registry import Registry

__all__ = ["ATTRIBUTES", "Item", "Reject", "parse_mapping", "read_csv", "read_ndjson"]

#: CloudEvent attributes a line may carry: NDJSON keys, CSV ``ce_<name>`` columns.
ATTRIBUTES = ("id", "source", "time", "subject", "correlationid")


@dataclass(frozen=True, slots=True)
class Item:
    """One valid line: its message and the attributes it gave (None: bus chooses)."""

    line: int
    message: Message
    id: str | None = None
    source: str | None = None
    time: datetime | None = None
    subject: str | None = None
    correlationid: str | None = None

    def cloudevent(self, default_source: str, *, id: str, time: datetime) -> dict[str, Any]:
        """As a structured CloudEvent; ``id`` and ``time`` where the line gave none."""
        from bus.client_events import cloudevent

        extensions = {"correlationid": self.correlationid} if self.correlationid else None
        return cloudevent(
            self.message,
            source=self.source or default_source,
            id=self.id or id,
            time=self.time or time,
            subject=self.subject,
            extensions=extensions,
        )


@dataclass(frozen=True, slots=True)
class Reject:
    """A line that is not a valid message: its number, why, and the line as read."""

    line: int
    reason: str
    raw: str

    def as_json(self) -> bytes:
        return orjson.dumps({"line": self.line, "reason": self.reason, "raw": self.raw})


def parse_mapping(text: str) -> dict[str, str]:
    """``col=field,col2=field2`` (or one pair per line, ``#`` comments) as a dict."""
    found: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        part = part.split("#", 1)[0].strip()
        if not part:
            continue
        column, eq, field = part.partition("=")
        if not eq or not column.strip() or not field.strip():
            raise ConfigError(f"bad mapping {part!r}: expected column=field")
        found[column.strip()] = field.strip()
    return found


def read_ndjson(
    lines: Iterable[bytes | str], registry: Registry
) -> tuple[list[Item], list[Reject]]:
    """Each line ``{"type", "data", "id"?, "source"?, "time"?, "subject"?, ...}``."""
    items: list[Item] = []
    rejects: list[Reject] = []
    for number, line in enumerate(lines, start=1):
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        if not text.strip():
            continue
        try:
            doc = orjson.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
                raise ValueError('expected an object {"type": "<type name>", "data": {...}}')
            message = parse_message(doc["type"], orjson.dumps(doc.get("data")), registry)
            items.append(_item(number, message, {k: doc.get(k) for k in ATTRIBUTES}))
        except (BusError, ValueError) as exc:
            rejects.append(Reject(number, _reason(exc), text.rstrip("\n")))
    return items, rejects


def read_csv(
    lines: Iterable[str], type_name: str, mapping: Mapping[str, str], registry: Registry
) -> tuple[list[Item], list[Reject]]:
    """Each CSV row (after the header) as a ``type_name`` message through ``mapping``."""
    model = registry.model_for(type_name)
    reader = csv.DictReader(iter(lines))
    columns = reader.fieldnames or []
    unknown = sorted(set(mapping) - set(columns))
    if unknown:
        raise ConfigError(f"mapped column(s) not in the CSV header: {', '.join(unknown)}")
    targets = dict(mapping) if mapping else {c: c for c in columns}
    items: list[Item] = []
    rejects: list[Reject] = []
    for row in reader:
        number = reader.line_num
        try:
            data, attributes = _fields(row, targets)
            message = model.from_json(orjson.dumps(data))
            items.append(_item(number, message, attributes))
        except (BusError, ValueError) as exc:
            raw = ",".join(str(v) for v in row.values())
            rejects.append(Reject(number, _reason(exc), raw))
    return items, rejects


def _fields(
    row: Mapping[str, Any], targets: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    data: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for column, target in targets.items():
        value = row.get(column)
        if value is None or value == "":
            continue
        if target.startswith("ce_") and target[3:] in ATTRIBUTES:
            attributes[target[3:]] = value
            continue
        *parents, leaf = target.split(".")
        node = data
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return data, attributes


def _item(number: int, message: Message, attributes: Mapping[str, Any]) -> Item:
    for name in ("id", "source", "subject", "correlationid"):
        value = attributes.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{name} must be a non-empty string")
    when = attributes.get("time")
    time = None
    if when is not None:
        if not isinstance(when, str):
            raise ValueError("time must be an RFC 3339 string")
        time = datetime.fromisoformat(when.replace("Z", "+00:00"))
        if time.tzinfo is None:
            raise ValueError("time must have a UTC offset (RFC 3339)")
    return Item(
        number,
        message,
        id=attributes.get("id"),
        source=attributes.get("source"),
        time=time,
        subject=attributes.get("subject"),
        correlationid=attributes.get("correlationid"),
    )


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split())
