"""Typed messages from untrusted JSON input (CLI, files, and later HTTP), validated whole.

Input is checked completely before anything is sent: every problem is reported with its
line and field, and nothing is published unless every message is valid.

An NDJSON line is ``{"type": "hr.employee.hired.v1", "data": {...}}`` with optional
``id``, ``source``, ``time``, ``correlationid`` and ``subject``. A given ``id``,
``source`` and ``time`` are kept (checked by the CloudEvents rules of
:mod:`bus.cloudevents`: non-empty strings, an RFC 3339 time), so sending a file twice
sends the same events twice, which consumers deduplicate by (source, id); absent ones
are generated when the message is published.

Example::

    message = parse_message("hr.employee.hired.v1", b'{"employee_id": "e-1"}', registry)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from bus.cloudevents import parse_time
from bus.errors import DecodeError, PayloadInvalidError, RecordError
from bus.message import Message
from bus.registry import Registry

__all__ = ["Inbound", "parse_message", "parse_ndjson"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """A validated message with the envelope attributes its input asked for (None: the
    publisher's default: a new id, its source, the time it is sent).

    Example::

        Inbound(message, correlationid="c-1", id="hire-e-1", time=datetime(2026, 1, 31, tzinfo=UTC))
    """

    message: Message
    correlationid: str | None = None
    subject: str | None = None
    #: CloudEvents ``id``: kept, so a re-sent line is the same event (deduplicated).
    id: str | None = None
    #: CloudEvents ``source`` (URI-reference), e.g. ``bus://hr-import``.
    source: str | None = None
    #: CloudEvents ``time`` (aware).
    time: datetime | None = None


def parse_message(type_name: str, data: bytes | str, registry: Registry) -> Message:
    """Validate ``data`` (JSON) as the registered model of ``type_name``."""
    model = registry.model_for(type_name)
    raw = data.encode() if isinstance(data, str) else data
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadInvalidError(f"data is not valid JSON: {exc}") from exc
    return model.from_json(raw)


def parse_ndjson(lines: Iterable[bytes | str], registry: Registry) -> list[Inbound]:
    """Every message of an NDJSON stream; :class:`PayloadInvalidError` lists each bad line."""
    found: list[Inbound] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            found.append(_parse_line(line, registry))
        except RecordError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise PayloadInvalidError(
            f"{len(problems)} invalid line(s), nothing was sent:\n" + "\n".join(problems)
        )
    return found


def _parse_line(line: bytes | str, registry: Registry) -> Inbound:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise PayloadInvalidError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str) or "data" not in doc:
        raise PayloadInvalidError('expected an object {"type": "<type name>", "data": {...}}')
    problems: list[str] = []
    try:
        attributes = _attributes(doc)
    except PayloadInvalidError as exc:
        problems.append(str(exc))
    try:
        message = parse_message(doc["type"], orjson.dumps(doc["data"]), registry)
    except RecordError as exc:
        problems.append(str(exc))
    if problems:
        raise PayloadInvalidError("; ".join(problems))
    return Inbound(message, **attributes)


_TEXTS = ("id", "source", "subject", "correlationid")


def _attributes(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope attributes of an NDJSON line, checked; every problem at once."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    for name in _TEXTS:
        value = doc.get(name)
        if value is None:
            continue
        if isinstance(value, str) and value:
            found[name] = value
        else:
            problems.append(f"field {name!r} must be a non-empty string, not {value!r}"[:200])
    time = doc.get("time")
    if time is not None:
        try:
            if not isinstance(time, str):
                raise DecodeError(f"field 'time' must be an RFC 3339 string, not {time!r}")
            found["time"] = parse_time(time, name="field 'time'")
        except DecodeError as exc:
            problems.append(str(exc))
    if problems:
        raise PayloadInvalidError("; ".join(problems))
    return found
