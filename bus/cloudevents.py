"""The CloudEvents 1.0 rules for context attributes, as the spec and the RFCs it cites
state them: what :mod:`bus.codec` checks before an event becomes an
:class:`~bus.envelope.Envelope`, and what ``bus publish`` checks in NDJSON input.

- ``id``, ``source``, ``type``: non-empty strings; ``specversion``: ``1.0``;
- ``time``: an RFC 3339 ``date-time`` (section 5.6): ``T`` between date and time (``t``
  too), seconds, an optional fraction, and ``Z`` or a ``+HH:MM``/``-HH:MM`` offset of at
  most 23:59. ``2024-01-01T10:00Z`` (no seconds), ``2024-01-01 10:00:00Z`` (a space),
  ``20240101T100000Z`` (ISO 8601 basic format) and ``+0100`` are ISO 8601 that
  ``datetime.fromisoformat`` accepts and RFC 3339 does not. A leap second (``:60``) has
  no ``datetime``: it is refused too;
- ``datacontenttype``: an RFC 2046 media type, ``type/subtype`` with optional
  ``; name=value`` parameters (RFC 2045 section 5.1 tokens, values tokens or quoted);
- ``dataschema``: a non-empty URI with a scheme (RFC 3986; a fragment is allowed, as
  the spec's JSON schema ``format: uri`` allows it);
- ``subject``: non-empty when present;
- attribute names: lower-case ASCII letters and digits, at most
  :data:`MAX_NAME_LENGTH` characters, never ``data``. (The spec says names "SHOULD NOT
  exceed 20 characters"; bus refuses longer ones, so what it accepts any SDK accepts.)

:func:`read_json_event` reads an event in the JSON event format (structured mode) into
attribute texts and data bytes, which the codec checks as it checks binary mode's.

Pure: no clock. The one memo is :func:`parse_time`'s last result (the same text gives an
equal datetime), because the codec calls it on every consumed record and records stamped
in one millisecond share one text.

Example::

    parse_time("2018-04-05T17:31:00Z")          # datetime(2018, 4, 5, 17, 31, tzinfo=UTC)
    media_type_problem("application/json")       # None: fine
    attribute_problems({"subject": ""}, None)      # (None, ["ce_subject is empty ..."])
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from bus.errors import DecodeError, PayloadInvalidError

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_NAME_LENGTH",
    "attribute_problems",
    "format_time",
    "json_event_parts",
    "media_type_problem",
    "name_problem",
    "parse_time",
    "read_json_event",
    "uri_problem",
]

#: Deepest JSON nesting a payload may have (the top-level object is level 1): the limit
#: of pydantic-core's JSON parser, which every payload goes through, read or not. A deeper
#: record is dead-lettered as ``invalid`` (tests/fuzz/test_deep_nesting.py pins it).
MAX_JSON_DEPTH = 200

#: Longest attribute name accepted (the spec's "SHOULD NOT exceed 20 characters").
MAX_NAME_LENGTH = 20

# RFC 3339 section 5.6, ASCII digits only ("\d" would take any Unicode digit). Month,
# day, hour, minute and second ranges are left to datetime.fromisoformat; the offset's
# are checked here, as fromisoformat reads "+01:60" as +02:00.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_TIME_FORMAT = "YYYY-MM-DDTHH:MM:SS[.fraction] and Z or +HH:MM"

# RFC 2045 section 5.1: token := 1*<any CHAR except SPACE, CTLs, or tspecials>
_TOKEN = r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*[ \t]*"
)
# RFC 3986: scheme ":" then URI characters (unreserved, sub-delims, gen-delims) or %XX
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?#\[\]-]|%[0-9A-Fa-f]{2})*"
)
_NAME = re.compile(rf"[a-z0-9]{{1,{MAX_NAME_LENGTH}}}")

_last_parsed: tuple[str, datetime | None] = ("", None)


def format_time(t: datetime) -> str:
    """RFC 3339 with ``Z`` for UTC, microsecond precision when there is one.

    Example::

        format_time(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))  # "2026-01-31T12:00:00Z"
    """
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_time(text: str, *, name: str = "time") -> datetime:
    """``text`` as an aware datetime if it is an RFC 3339 ``date-time``, else
    :class:`~bus.errors.DecodeError` naming ``name``; the last result is remembered.

    Example::

        parse_time("2018-04-05T17:31:00Z")
        parse_time("2024-01-01T10:00Z")  # DecodeError: no seconds
    """
    global _last_parsed
    last, parsed = _last_parsed
    if text == last and parsed is not None:
        return parsed
    parsed = _parse_time_text(text, name)
    _last_parsed = (text, parsed)
    return parsed


def _parse_time_text(text: str, name: str) -> datetime:
    if _DATE_TIME.fullmatch(text) is None:
        raise DecodeError(
            f"{name} {text[:100]!r} is not an RFC 3339 timestamp ({_TIME_FORMAT}): "
            f"{_time_hint(text)}"
        )
    try:  # fromisoformat takes an upper-case T and Z only, and any fraction length
        return datetime.fromisoformat(text if text[10] == "T" and text[-1] != "z" else text.upper())
    except ValueError as exc:
        leap = " (a leap second has no Python datetime)" if text[17:19] == "60" else ""
        raise DecodeError(
            f"{name} {text[:100]!r} is not an RFC 3339 timestamp: {exc}{leap}"
        ) from exc


def _time_hint(text: str) -> str:
    """What is most likely wrong with a timestamp that does not have RFC 3339's shape."""
    if not re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return "it does not start with a date, YYYY-MM-DD"
    if len(text) > 10 and text[10] == " ":
        return "date and time are separated by 'T', not a space"
    if len(text) == 10:
        return "it has no time of day (THH:MM:SS)"
    if not re.search(r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$", text):
        return "it has no UTC offset (Z or +HH:MM)"
    if re.fullmatch(r"[^T]*T[0-9]{2}:[0-9]{2}([Zz]|[+-].*)", text):
        return "it has no seconds"
    if re.search(r"[+-]([0-9]{4}|[0-9]{2})$", text):
        return "the offset needs a colon, +HH:MM"
    if re.search(r"[+-][0-9]{2}:[0-9]{2}$", text):
        return "the offset is out of range (at most 23:59)"
    return "not of that shape"


def media_type_problem(text: str) -> str | None:
    """What makes ``text`` no RFC 2046 media type (``type/subtype; name=value``), or None."""
    if _MEDIA_TYPE.fullmatch(text) is not None:
        return None
    return f"{text[:100]!r} is not a media type (RFC 2046: type/subtype[; name=value])"


def uri_problem(text: str) -> str | None:
    """What makes ``text`` no absolute URI (``scheme:...``, RFC 3986), or None."""
    if _URI.fullmatch(text) is not None:
        return None
    if not text:
        return "is empty (a URI is required when the attribute is present)"
    return f"{text[:100]!r} is not an absolute URI (RFC 3986: scheme:rest, no spaces)"


def name_problem(name: str) -> str | None:
    """What makes ``name`` no CloudEvents attribute name, or None."""
    if _NAME.fullmatch(name) is not None and name != "data":
        return None
    if name == "data":
        return "attribute name 'data' is reserved (the payload)"
    if len(name) > MAX_NAME_LENGTH and _NAME.fullmatch(name[:MAX_NAME_LENGTH]):
        return f"attribute name {name[:100]!r} is longer than {MAX_NAME_LENGTH} characters"
    return (
        f"attribute name {name[:100]!r} is invalid "
        f"(lower-case letters and digits only, 1 to {MAX_NAME_LENGTH})"
    )


def attribute_problems(
    attrs: Mapping[str, str], content_type: str | None, *, prefix: str = "ce_"
) -> tuple[datetime | None, list[str]]:
    """(the parsed ``time`` if valid, every problem of the optional attributes and the
    attribute names); the required ones are the caller's (its message names its format).

    ``prefix`` goes before each attribute's name in a problem (``ce_`` for the Kafka
    binding's headers).
    """
    problems: list[str] = []
    time: datetime | None = None
    text = attrs.get("time")
    if text is not None:
        try:
            time = parse_time(text, name=prefix + "time")
        except DecodeError as exc:
            problems.append(str(exc))
    if attrs.get("subject") == "":
        problems.append(f"{prefix}subject is empty (present, it must be a non-empty string)")
    schema = attrs.get("dataschema")
    if schema is not None:
        problem = uri_problem(schema)
        if problem is not None:
            problems.append(f"{prefix}dataschema {problem}")
    if content_type is not None:
        problem = media_type_problem(content_type)
        if problem is not None:
            problems.append(f"datacontenttype {problem}")
    for name in attrs:
        if name in _STRINGS:
            continue  # a known name is a valid one
        problem = name_problem(name)
        if problem is not None:
            problems.append(f"{prefix}{name[:100]}: {problem}")
    return time, problems


#: Attributes whose JSON value must be a string: the spec's, and bus's extensions (text
#: fields of the Envelope). Other extensions may be JSON numbers or booleans too.
_STRINGS = frozenset(
    (
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
)


def read_json_event(value: bytes | None) -> tuple[dict[str, str], str | None, bytes]:
    """(attribute texts but ``datacontenttype``, ``datacontenttype``, data bytes) of an
    event in the JSON event format; :class:`~bus.errors.DecodeError` if it is none.

    Example::

        attrs, content_type, data = read_json_event(b'{"specversion": "1.0", ...}')
    """
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"structured CloudEvent is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise DecodeError("structured CloudEvent must be a JSON object")
    return json_event_parts(event)


def json_event_parts(event: dict[str, Any]) -> tuple[dict[str, str], str | None, bytes]:
    """:func:`read_json_event` of an event already parsed (``event`` is emptied of
    ``datacontenttype``, ``data`` and ``data_base64``: pass a copy to keep it).

    Example::

        attrs, content_type, data = json_event_parts(dict(doc))
    """
    data_content_type = event.pop("datacontenttype", None)
    if data_content_type is not None and not isinstance(data_content_type, str):
        raise DecodeError("structured CloudEvent attribute 'datacontenttype' must be a string")
    if event.get("data") is not None and event.get("data_base64") is not None:
        raise DecodeError("structured CloudEvent has both data and data_base64 (JSON format 3.1)")
    data = _json_data(event.pop("data", None), event.pop("data_base64", None), data_content_type)
    # JSON format 1.0.2 section 2.2: a null attribute is the same as an absent one
    attrs = {str(k): _attribute_text(k, v) for k, v in event.items() if v is not None}
    return attrs, data_content_type, data


def _json_data(data: Any, data_base64: Any, content_type: Any) -> bytes:
    if data_base64 is not None:
        try:
            return base64.b64decode(str(data_base64), validate=True)
        except ValueError as exc:
            raise DecodeError("structured CloudEvent has invalid data_base64") from exc
    if data is None:
        return b""
    if isinstance(data, str) and not _is_json(content_type):
        return data.encode()  # JSON format 3.1.2: non-JSON data is the string itself
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        # orjson re-encodes at most 254 levels: deeper data could never validate anyway
        raise PayloadInvalidError(
            f"structured CloudEvent data is JSON nested more than {MAX_JSON_DEPTH} levels "
            f"deep, the limit of payload validation ({exc})"
        ) from exc


def _is_json(content_type: Any) -> bool:
    if content_type is None:
        return True  # JSON format: data without a content type is JSON
    media = str(content_type).split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media.startswith("text/json")


def _attribute_text(name: str, value: Any) -> str:
    if type(value) is str and name in _STRINGS:
        return value  # the common case: a valid name (no regex), a string
    problem = name_problem(name)
    if problem is not None:
        raise DecodeError(f"structured CloudEvent {problem}")
    if isinstance(value, str):
        return value
    if name in _STRINGS:  # the spec's attributes are strings (URI, timestamp) in JSON
        raise DecodeError(f"structured CloudEvent attribute {name!r} must be a string")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -(2**31) <= value < 2**31:  # the spec's Integer: signed 32 bits
            raise DecodeError(
                f"structured CloudEvent attribute {name!r}: {value} is outside the "
                "CloudEvents Integer range (-2147483648 to 2147483647)"
            )
        return str(value)
    raise DecodeError(f"structured CloudEvent attribute {name!r} must be a string or number")
