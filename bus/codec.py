"""Kafka record bytes -> Envelope, per the CloudEvents Kafka protocol binding.

Decoding accepts *binary mode* (attributes as ``ce_<name>`` headers, ``content-type``
from ``datacontenttype``, the record value = ``data``) and *structured mode*
(``content-type: application/cloudevents+json`` with the whole event as a JSON object in
the value), so any CloudEvents producer can feed the bus. Encoding, always binary mode,
is :mod:`bus.encoding`'s (``encode`` is re-exported here: ``bus.codec.encode`` is public
API). Both are pure functions: the clock and the header tuples shared per millisecond
and per (source, type) are :mod:`bus.stamping`'s. What a valid attribute is (an RFC 3339
``time``, an RFC 2046 ``datacontenttype``, a URI ``dataschema``, a non-empty ``subject``,
attribute names) is :mod:`bus.cloudevents`'s; an event that breaks a rule is a
:class:`DecodeError` naming every problem (dead-lettered with reason ``decode``). The one
memo kept here is the last valid ``ce_time`` bytes (records stamped in one millisecond
share them), because :func:`plain_headers` checks it on every consumed record.

Example::

    headers, value = encode(envelope)
    assert decode(headers, value) == envelope
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from bus.cloudevents import (
    MAX_JSON_DEPTH,
    attribute_problems,
    json_event_parts,
    parse_time,
    read_json_event,
)
from bus.encoding import CONTENT_TYPE_HEADER, encode
from bus.envelope import Envelope
from bus.errors import DecodeError
from bus.types import Headers

__all__ = [
    "CONTENT_TYPE_HEADER",
    "MAX_JSON_DEPTH",
    "STRUCTURED_CONTENT_TYPE",
    "decode",
    "decode_json_event",
    "encode",
    "plain_envelope",
    "plain_headers",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_PREFIX = "ce_"
_REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL = ("time", "subject", "dataschema", "correlationid", "causationid", "traceparent")
_KNOWN = frozenset((*_REQUIRED, *_OPTIONAL))
_OPTIONAL_HEADERS = tuple((_PREFIX + name, name) for name in _OPTIONAL)
#: Every header name of an event with no extensions, as the codec writes them.
_PLAIN_NAMES = frozenset((*(_PREFIX + name for name in _KNOWN), "content-type"))
_EMPTY: Mapping[str, str] = MappingProxyType({})
# tuple.__new__ skips the NamedTuple's Python-level __new__ (argument binding, defaults)
_make_envelope = functools.partial(tuple.__new__, Envelope)


def _parse_time(text: str) -> datetime:
    """``ce_time`` text as an aware datetime (``parse_time`` remembers its last result)."""
    return parse_time(text, name="ce_time")


def _binary_named(headers: Headers) -> dict[str, bytes] | None:
    """The headers by name if they look like a binary-mode event with no header repeated;
    None for anything else (structured mode, odd casing, errors, a repeated header), which
    ``_decode_slowly`` sorts out. The one test both :func:`decode` and
    :func:`plain_headers` start from, so the fast path accepts nothing decode would not."""
    named = dict(headers)  # C-level
    get = named.get
    if (
        not (get("ce_id") and get("ce_source") and get("ce_type"))
        or get("ce_specversion") != b"1.0"
        or len(named) < len(headers)
    ):
        return None
    return named


def decode(headers: Headers, value: bytes | None) -> Envelope:
    """The envelope in a record, binary or structured mode; :class:`DecodeError` if none."""
    named = _binary_named(headers)
    if named is None:
        return _decode_slowly(headers, value)
    if not named.keys() <= _PLAIN_NAMES:
        return _decode_with_extensions(named, headers, value)  # other headers too
    get = named.get
    try:
        if get(CONTENT_TYPE_HEADER, _JSON) != _JSON or get("ce_subject") == b"" or _SCHEMA in named:
            _check_attributes(named)  # what bus does not write (plain_envelope checks the time)
        return plain_envelope(named, value)
    except UnicodeDecodeError:
        return _decode_slowly(headers, value)  # raises, naming the header


def plain_headers(headers: Headers) -> dict[str, bytes] | None:
    """The headers by name when they are a binary-mode event :func:`decode` accepts, with
    nothing but the attributes bus knows, in ASCII; None otherwise (then call ``decode``).

    What a bus producer writes takes this path: the worker routes and emits from these
    bytes and builds the :class:`Envelope` (:func:`plain_envelope`) only when something
    asks for it (a Context, a span, dedup, a failure). Decoding the eight headers to text
    and building the envelope cost as much as the rest of what the worker does per
    record. Raises :class:`DecodeError` where ``decode`` would: a bad ``ce_time``, an
    empty ``ce_subject``, a ``ce_dataschema`` that is no URI, a ``content-type`` that is
    no media type.
    """
    named = _binary_named(headers)
    if (
        named is None
        or not named.keys() <= _PLAIN_NAMES
        # ASCII: every value decodes, now or when the envelope is built (one C call)
        or not b"".join(named.values()).isascii()
    ):
        return None
    get = named.get
    raw_time = get("ce_time")
    # what bus writes: JSON, a non-empty subject (the key), no schema; the rest is checked
    if get(CONTENT_TYPE_HEADER, _JSON) != _JSON or get("ce_subject") == b"" or _SCHEMA in named:
        _check_attributes(named)
    elif raw_time is not None and raw_time != _last_parsed_raw:
        _check_time(raw_time)
    return named


_JSON = b"application/json"
_SCHEMA = "ce_dataschema"
_last_parsed_raw: bytes | None = None  # not b"": an empty ce_time is checked too


def _check_time(raw: bytes) -> None:
    """Parse ``raw`` (ASCII) or raise :class:`DecodeError`; remembered by its bytes, as
    records stamped in one millisecond share one text."""
    global _last_parsed_raw
    _parse_time(raw.decode())
    _last_parsed_raw = raw


def _check_attributes(named: Mapping[str, bytes]) -> None:
    """:class:`DecodeError` naming every invalid optional attribute of headers by name
    that hold only known attributes; ``UnicodeDecodeError`` if one is not UTF-8."""
    attrs = {name[3:]: named[name].decode() for name in _CHECKED_HEADERS if name in named}
    raw_type = named.get(CONTENT_TYPE_HEADER)
    _, problems = attribute_problems(attrs, None if raw_type is None else raw_type.decode())
    if problems:
        raise _invalid(problems)


_CHECKED_HEADERS = ("ce_time", "ce_subject", "ce_dataschema")


def _invalid(problems: list[str]) -> DecodeError:
    return DecodeError("invalid CloudEvent: " + "; ".join(problems))


def plain_envelope(named: Mapping[str, bytes], value: bytes | None) -> Envelope:
    """The envelope of headers by name that hold only known attributes (such as
    :func:`plain_headers` returns); ``UnicodeDecodeError`` if one is not UTF-8."""
    get = named.get
    time_raw, subject, schema = get("ce_time"), get("ce_subject"), get("ce_dataschema")
    correlation, causation, trace = (
        get("ce_correlationid"),
        get("ce_causationid"),
        get("ce_traceparent"),
    )
    content_type = get(CONTENT_TYPE_HEADER)
    return _make_envelope(
        (
            named["ce_id"].decode(),
            named["ce_source"].decode(),
            named["ce_type"].decode(),
            value or b"",
            None if time_raw is None else _parse_time(time_raw.decode()),
            None if subject is None else subject.decode(),
            None if content_type is None else content_type.decode(),
            None if schema is None else schema.decode(),
            None if correlation is None else correlation.decode(),
            None if causation is None else causation.decode(),
            None if trace is None else trace.decode(),
            _EMPTY,
            "1.0",
        )
    )


def _decode_with_extensions(
    named: dict[str, bytes], headers: Headers, value: bytes | None
) -> Envelope:
    """Binary mode with extension attributes or headers that are not attributes."""
    get = named.get
    try:
        attrs = {
            "id": named["ce_id"].decode(),
            "source": named["ce_source"].decode(),
            "type": named["ce_type"].decode(),
            "specversion": named["ce_specversion"].decode(),
        }
        for header, attr in _OPTIONAL_HEADERS:
            raw = get(header)
            if raw is not None:
                attrs[attr] = raw.decode()
        raw_type = get(CONTENT_TYPE_HEADER)
        content_type = None if raw_type is None else raw_type.decode()
        for name, raw in named.items():
            if not name.isascii():
                _check_name(name)
            if name.startswith(_PREFIX) and name == name.lower():
                if name[3:] not in attrs:
                    attrs[name[3:]] = raw.decode()
            elif name[:3].lower() == _PREFIX or (
                name != CONTENT_TYPE_HEADER and name.lower() == CONTENT_TYPE_HEADER
            ):
                return _decode_slowly(headers, value)  # odd casing: read case-insensitively
    except UnicodeDecodeError:
        return _decode_slowly(headers, value)  # raises, naming the header
    return _from_attributes(attrs, content_type, value or b"")


def _decode_slowly(headers: Headers, value: bytes | None) -> Envelope:
    """Case-insensitive header names, structured mode, and the errors."""
    attrs: dict[str, str] = {}
    content_type: str | None = None
    name = ""
    try:
        for name, raw in headers:
            if not name.isascii():
                _check_name(name)
            lower = name.lower()
            if lower.startswith(_PREFIX):
                if lower[3:] in attrs:
                    raise _repeated(name)
                attrs[lower[3:]] = raw.decode()
            elif lower == CONTENT_TYPE_HEADER:
                if content_type is not None:
                    raise _repeated(name)
                content_type = raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"header {name!r} is not UTF-8") from exc
    if not attrs and content_type and content_type.lower().startswith("application/cloudevents"):
        return _decode_structured(content_type, value)
    return _from_attributes(attrs, content_type, value or b"")


def _check_name(name: str) -> None:
    """DecodeError if header ``name`` was not UTF-8 on the wire: a transport hands such a
    name on with its bytes escaped (``surrogateescape``), which no UTF-8 text contains."""
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        raw = name.encode("utf-8", "surrogateescape")
        raise DecodeError(f"header name {raw[:100]!r} is not UTF-8") from exc


def _repeated(name: str) -> DecodeError:
    # the Kafka binding maps each attribute to one header: a second one is ambiguous
    return DecodeError(
        f"header {name!r} appears more than once; a CloudEvent attribute has one value"
    )


def _from_attributes(attrs: dict[str, str], content_type: str | None, data: bytes) -> Envelope:
    get = attrs.get
    specversion, id_, source, type_ = get("specversion"), get("id"), get("source"), get("type")
    if not (specversion and id_ and source and type_):
        missing = [f"ce_{n}" for n in _REQUIRED if not attrs.get(n)]
        raise DecodeError(
            f"not a CloudEvent: missing header(s) {', '.join(missing)} "
            "(binary mode needs ce_specversion, ce_id, ce_source, ce_type)"
        )
    if specversion != "1.0":
        raise DecodeError(f"unsupported CloudEvents specversion {specversion!r} (need 1.0)")
    time, problems = attribute_problems(attrs, content_type)
    if problems:
        raise _invalid(problems)
    extensions = _EMPTY
    if len(attrs) > len(_KNOWN.intersection(attrs)):
        extensions = MappingProxyType({k: v for k, v in attrs.items() if k not in _KNOWN})
    return _make_envelope(
        (
            id_,
            source,
            type_,
            data,
            time,
            get("subject"),
            content_type,
            get("dataschema"),
            get("correlationid"),
            get("causationid"),
            get("traceparent"),
            extensions,
            specversion,
        )
    )


def decode_json_event(event: dict[str, Any]) -> Envelope:
    """The envelope of a structured-mode event already parsed from JSON (the HTTP
    ingress's), as :func:`decode` reads it from its bytes; ``event`` is emptied of its data.

    Example::

        envelope = decode_json_event(dict(orjson.loads(body)))
    """
    return _from_attributes(*json_event_parts(event))


def _decode_structured(content_type: str, value: bytes | None) -> Envelope:
    if not content_type.lower().startswith(STRUCTURED_CONTENT_TYPE):
        raise DecodeError(f"structured mode {content_type!r} is not supported (only JSON)")
    attrs, data_content_type, data = read_json_event(value)
    return _from_attributes(attrs, data_content_type, data)
