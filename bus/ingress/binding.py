"""HTTP request -> CloudEvents, per the CloudEvents HTTP Protocol Binding 1.0 (pure).

The ``Content-Type`` picks the mode (section 3): a value starting with
``application/cloudevents-batch`` is *batched* (a JSON array of events), one starting
with ``application/cloudevents`` is *structured* (one JSON event), anything else is
*binary* (attributes in ``ce-*`` headers, quoted and percent-encoded as
:mod:`bus.ingress.header_values` reads them; ``Content-Type`` is ``datacontenttype``; the
body is ``data``). Only the JSON event format is read: ``application/cloudevents+avro``
is refused with 415, as is a binary event whose data is not JSON, since bus's messages are
JSON.

Every event of a request is read before anything is decided, and every problem is
reported at once (:class:`~bus.ingress.problems.Refusal` with field errors): a batch is
accepted whole or not at all. The events themselves are built by :func:`bus.codec.decode`
(binary mode from ``ce_*`` headers, structured mode from the event's JSON), so an event
reaches Kafka exactly as the Kafka binding reads it.

Example::

    events = read_events("application/json", [("ce-id", "1"), ...], b'{"employee_id": "e-1"}')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import orjson

from bus.codec import STRUCTURED_CONTENT_TYPE, decode, decode_json_event
from bus.envelope import Envelope
from bus.errors import RecordError
from bus.ingress.header_values import HeaderValueError, decode_value
from bus.ingress.problems import FieldError, Refusal, RefusedError

__all__ = [
    "BATCH_CONTENT_TYPE",
    "ContentMode",
    "Read",
    "content_mode",
    "read_events",
    "read_request",
]

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
ContentMode = Literal["binary", "structured", "batch"]
_REQUIRED = ("specversion", "id", "source", "type")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")


def content_mode(content_type: str | None) -> ContentMode:
    """The content mode a request's ``Content-Type`` selects (binding section 3)."""
    media = media_type(content_type)
    if media.startswith("application/cloudevents-batch"):
        return "batch"
    if media.startswith("application/cloudevents"):
        return "structured"
    return "binary"


def media_type(content_type: str | None) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    media = media_type(content_type)
    return media in ("application/json", "text/json") or media.endswith("+json")


class Read(NamedTuple):
    """What a request holds: the events read, their indexes in the request, the problems
    of the others (the caller adds its own findings, then refuses with all of them)."""

    events: list[Envelope]
    indexes: list[int]
    errors: list[FieldError]


def read_events(
    content_type: str | None, headers: Iterable[tuple[str, str]], body: bytes
) -> list[Envelope]:
    """The events of one request; raises :class:`RefusedError` (400 or 415) with every
    problem found. ``headers`` are the request's, repeated ones included."""
    read = read_request(content_type, headers, body)
    if read.errors:
        raise _invalid(read.errors)
    return read.events


def read_request(content_type: str | None, headers: Iterable[tuple[str, str]], body: bytes) -> Read:
    """:func:`read_events` without refusing bad events of a batch: they are listed in
    ``errors`` beside the good ones. A request that is no CloudEvent at all raises."""
    mode = content_mode(content_type)
    if mode == "binary":
        return Read([_binary_event(content_type, headers, body)], [0], [])
    if media_type(content_type) not in (STRUCTURED_CONTENT_TYPE, BATCH_CONTENT_TYPE):
        raise _unsupported(f"event format {media_type(content_type)!r} is not supported")
    doc = _json_body(body)
    if mode == "structured":
        if not isinstance(doc, dict):
            raise _invalid([FieldError("(body)", "a structured event is a JSON object", 0)])
        return Read([_structured_event(doc, 0)], [0], [])
    if not isinstance(doc, list):
        raise _invalid([FieldError("(body)", "a batch is a JSON array of events")])
    return _batch(doc)


def _binary_event(
    content_type: str | None, headers: Iterable[tuple[str, str]], body: bytes
) -> Envelope:
    attrs: dict[str, bytes] = {}
    errors: list[FieldError] = []
    for name, raw in headers:
        lower = name.lower()
        if not lower.startswith("ce-"):
            continue
        attr = lower[3:]
        if attr == "datacontenttype":
            errors.append(FieldError(lower, "not allowed in binary mode: use Content-Type", 0))
        elif not _ATTRIBUTE_NAME.fullmatch(attr):
            errors.append(
                FieldError(lower, "attribute names are lower-case letters and digits only", 0)
            )
        elif attr in attrs:
            errors.append(FieldError(lower, "header given more than once", 0))
        else:
            try:
                attrs[attr] = decode_value(raw).encode()
            except HeaderValueError as exc:
                errors.append(FieldError(lower, str(exc), 0))
    if not attrs and not errors:
        raise _unsupported(
            "not a CloudEvent: send binary mode (ce-* headers), "
            f"{STRUCTURED_CONTENT_TYPE} or {BATCH_CONTENT_TYPE}"
        )
    if content_type is not None and not is_json(content_type):
        raise _unsupported(f"data of type {media_type(content_type)!r}: bus reads JSON data")
    errors.extend(_missing(attrs, "ce-", 0))
    if errors:
        raise _invalid(errors)
    headers_out = [("ce_" + name, value) for name, value in attrs.items()]
    if content_type is not None:
        headers_out.append(("content-type", content_type.encode()))
    return _decoded(headers_out, body, 0, "ce-")


def _structured_event(doc: dict[str, Any], index: int) -> Envelope:
    errors = _missing(doc, "", index)
    data_type = doc.get("datacontenttype")
    if isinstance(data_type, str) and not is_json(data_type):
        errors.append(FieldError("datacontenttype", "bus reads JSON data only", index))
    if errors:
        raise _invalid(errors)
    # from the parsed object: encoding it back to JSON for decode() to parse again cost
    # a third of the binding's time
    try:
        return decode_json_event(dict(doc))
    except RecordError as exc:
        raise _invalid([FieldError(_field_of(str(exc), ""), str(exc), index)]) from exc


def _batch(docs: list[Any]) -> Read:
    read = Read([], [], [])
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            read.errors.append(FieldError("(event)", "a batch holds JSON objects", index))
            continue
        try:
            read.events.append(_structured_event(doc, index))
            read.indexes.append(index)
        except RefusedError as exc:
            read.errors.extend(exc.refusal.errors)
    return read


def _missing(attrs: dict[str, Any], prefix: str, index: int) -> list[FieldError]:
    errors = [
        FieldError(prefix + name, "required attribute is missing", index)
        for name in _REQUIRED
        if not attrs.get(name)
    ]
    version = attrs.get("specversion")
    if version and version not in ("1.0", b"1.0"):
        errors.append(FieldError(prefix + "specversion", "only CloudEvents 1.0 is read", index))
    return errors


def _decoded(headers: list[tuple[str, bytes]], value: bytes, index: int, prefix: str) -> Envelope:
    try:
        return decode(headers, value)
    except RecordError as exc:
        raise _invalid([FieldError(_field_of(str(exc), prefix), str(exc), index)]) from exc


def _field_of(message: str, prefix: str) -> str:
    """The attribute a codec error names (``ce_time ...``, ``attribute 'x' ...``), if any."""
    match = re.search(r"\bce_([a-z0-9]+)|attribute (?:name )?'([a-z0-9]+)'", message)
    if match is None:
        return "(event)"
    return prefix + (match[1] or match[2])


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid([FieldError("(body)", f"not valid JSON: {exc}")]) from exc


def _invalid(errors: list[FieldError]) -> RefusedError:
    return RefusedError(Refusal(400, "invalid CloudEvents", tuple(errors)))


def _unsupported(title: str) -> RefusedError:
    return RefusedError(Refusal(415, title))
