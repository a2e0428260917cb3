"""Typed messages from untrusted JSON input (CLI, files, and later HTTP), validated whole.

Input is checked completely before anything is sent: every problem is reported with its
line and field, and nothing is published unless every message is valid.

An NDJSON line is ``{"type": "hr.employee.hired.v1", "data": {...}}`` with optional
``correlationid`` and ``subject``.

Example::

    message = parse_message("hr.employee.hired.v1", b'{"employee_id": "e-1"}', registry)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from bus.errors import PayloadInvalidError, RecordError
from bus.message import Message
from bus.registry import Registry

__all__ = ["Inbound", "parse_message", "parse_ndjson"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """A validated message with the envelope attributes its input asked for."""

    message: Message
    correlationid: str | None = None
    subject: str | None = None


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
    message = parse_message(doc["type"], orjson.dumps(doc["data"]), registry)
    return Inbound(message, doc.get("correlationid"), doc.get("subject"))
