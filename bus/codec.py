"""Envelope <-> Kafka record bytes, per the CloudEvents Kafka protocol binding.

Encoding always uses *binary mode*: attributes as ``ce_<name>`` headers (UTF-8),
``content-type`` from ``datacontenttype``, the record value = ``data``. Decoding accepts
binary mode and *structured mode* (``content-type: application/cloudevents+json`` with
the whole event as a JSON object in the value), so any CloudEvents producer can feed
the bus. Both are pure functions.

Example::

    headers, value = encode(envelope)
    assert decode(headers, value) == envelope
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from bus.envelope import Envelope
from bus.errors import DecodeError
from bus.types import Headers

__all__ = ["CONTENT_TYPE_HEADER", "STRUCTURED_CONTENT_TYPE", "decode", "encode", "format_time"]

CONTENT_TYPE_HEADER = "content-type"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_PREFIX = "ce_"
_KNOWN = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "dataschema",
    "correlationid",
    "causationid",
    "traceparent",
)
_REQUIRED = ("specversion", "id", "source", "type")
_EMPTY: Mapping[str, str] = MappingProxyType({})


def format_time(t: datetime) -> str:
    """RFC 3339 with ``Z`` for UTC, microsecond precision when there is one."""
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DecodeError(f"ce_time {text!r} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise DecodeError(f"ce_time {text!r} has no UTC offset (RFC 3339 requires one)")
    return parsed


def encode(env: Envelope) -> tuple[list[tuple[str, bytes]], bytes]:
    """Binary-mode headers and value for ``env``."""
    headers: list[tuple[str, bytes]] = [
        ("ce_specversion", env.specversion.encode()),
        ("ce_id", env.id.encode()),
        ("ce_source", env.source.encode()),
        ("ce_type", env.type.encode()),
    ]
    if env.time is not None:
        headers.append(("ce_time", format_time(env.time).encode()))
    for name in ("subject", "dataschema", "correlationid", "causationid", "traceparent"):
        value = getattr(env, name)
        if value is not None:
            headers.append((_PREFIX + name, value.encode()))
    for name, value in env.extensions.items():
        headers.append((_PREFIX + name, value.encode()))
    if env.datacontenttype is not None:
        headers.append((CONTENT_TYPE_HEADER, env.datacontenttype.encode()))
    return headers, env.data


def decode(headers: Headers, value: bytes | None) -> Envelope:
    """The envelope in a record, binary or structured mode; :class:`DecodeError` if none."""
    attrs: dict[str, str] = {}
    content_type: str | None = None
    try:
        for name, raw in headers:
            lower = name.lower()
            if lower.startswith(_PREFIX):
                attrs[lower[3:]] = raw.decode()
            elif lower == CONTENT_TYPE_HEADER:
                content_type = raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"header {name!r} is not UTF-8") from exc
    if not attrs and content_type and content_type.lower().startswith("application/cloudevents"):
        return _decode_structured(content_type, value)
    return _from_attributes(attrs, content_type, value or b"")


def _from_attributes(attrs: dict[str, str], content_type: str | None, data: bytes) -> Envelope:
    missing = [f"ce_{n}" for n in _REQUIRED if not attrs.get(n)]
    if missing:
        raise DecodeError(
            f"not a CloudEvent: missing header(s) {', '.join(missing)} "
            "(binary mode needs ce_specversion, ce_id, ce_source, ce_type)"
        )
    if attrs["specversion"] != "1.0":
        raise DecodeError(
            f"unsupported CloudEvents specversion {attrs['specversion']!r} (need 1.0)"
        )
    time_text = attrs.get("time")
    extensions = {k: v for k, v in attrs.items() if k not in _KNOWN}
    return Envelope(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        data=data,
        time=_parse_time(time_text) if time_text is not None else None,
        subject=attrs.get("subject"),
        datacontenttype=content_type,
        dataschema=attrs.get("dataschema"),
        correlationid=attrs.get("correlationid"),
        causationid=attrs.get("causationid"),
        traceparent=attrs.get("traceparent"),
        extensions=MappingProxyType(extensions) if extensions else _EMPTY,
        specversion=attrs["specversion"],
    )


def _decode_structured(content_type: str, value: bytes | None) -> Envelope:
    if not content_type.lower().startswith(STRUCTURED_CONTENT_TYPE):
        raise DecodeError(f"structured mode {content_type!r} is not supported (only JSON)")
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"structured CloudEvent is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise DecodeError("structured CloudEvent must be a JSON object")
    data_content_type = event.pop("datacontenttype", None)
    data = _structured_data(
        event.pop("data", None), event.pop("data_base64", None), data_content_type
    )
    # JSON format 1.0.2 section 2.2: a null attribute is the same as an absent one
    attrs = {str(k): _attribute_text(k, v) for k, v in event.items() if v is not None}
    return _from_attributes(attrs, data_content_type, data)


def _structured_data(data: Any, data_base64: Any, content_type: Any) -> bytes:
    if data_base64 is not None:
        try:
            return base64.b64decode(str(data_base64), validate=True)
        except ValueError as exc:
            raise DecodeError("structured CloudEvent has invalid data_base64") from exc
    if data is None:
        return b""
    if isinstance(data, str) and not _is_json(content_type):
        return data.encode()  # JSON format 3.1.2: non-JSON data is the string itself
    return orjson.dumps(data)


def _is_json(content_type: Any) -> bool:
    if content_type is None:
        return True  # JSON format: data without a content type is JSON
    media = str(content_type).split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media.startswith("text/json")


def _attribute_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise DecodeError(f"structured CloudEvent attribute {name!r} must be a string or number")
