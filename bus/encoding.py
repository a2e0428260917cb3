"""Envelope -> Kafka record bytes, per the CloudEvents Kafka protocol binding.

Encoding always uses *binary mode*: attributes as ``ce_<name>`` headers (UTF-8),
``content-type`` from ``datacontenttype``, the record value = ``data``. :func:`encode`
writes an :class:`~bus.envelope.Envelope`; :func:`binary_headers` writes the same headers
from attribute values encoded already (the emit hot path, fed by :mod:`bus.stamping`).
Pure: no clock. Reading records back, in binary or structured mode, is
:mod:`bus.codec`'s.

Example::

    headers, value = encode(envelope)
    assert decode(headers, value) == envelope  # bus.codec.decode
"""

from __future__ import annotations

from bus.cloudevents import format_time
from bus.envelope import Envelope

__all__ = ["CONTENT_TYPE_HEADER", "binary_headers", "encode"]

CONTENT_TYPE_HEADER = "content-type"
_PREFIX = "ce_"


def encode(env: Envelope) -> tuple[list[tuple[str, bytes]], bytes]:
    """Binary-mode headers and value for ``env``."""
    headers: list[tuple[str, bytes]] = [
        _SPEC_10 if env.specversion == "1.0" else ("ce_specversion", env.specversion.encode()),
        ("ce_id", env.id.encode()),
        ("ce_source", env.source.encode()),
        ("ce_type", env.type.encode()),
    ]
    append = headers.append
    if env.time is not None:
        append(("ce_time", format_time(env.time).encode()))
    if env.subject:  # an empty subject is no CloudEvent's: left out, as by binary_headers
        append(("ce_subject", env.subject.encode()))
    if env.dataschema is not None:
        append(("ce_dataschema", env.dataschema.encode()))
    if env.correlationid is not None:
        append(("ce_correlationid", env.correlationid.encode()))
    if env.causationid is not None:
        append(("ce_causationid", env.causationid.encode()))
    if env.traceparent is not None:
        append(("ce_traceparent", env.traceparent.encode()))
    if env.extensions:
        headers.extend((_PREFIX + k, v.encode()) for k, v in env.extensions.items())
    if env.datacontenttype is not None:
        if env.datacontenttype == "application/json":
            append(_JSON_CONTENT)
        else:
            append((CONTENT_TYPE_HEADER, env.datacontenttype.encode()))
    return headers, env.data


def binary_headers(
    id_header: tuple[str, bytes],
    source_type: tuple[tuple[str, bytes], tuple[str, bytes]],
    time_header: tuple[str, bytes] | None,
    subject: bytes | None,
    correlationid: bytes | None,
    causationid: bytes | None,
    traceparent: bytes | None,
) -> list[tuple[str, bytes]]:
    """:func:`event_headers` of attribute values encoded already (the emit hot path).

    ``id_header`` and ``time_header`` are ``ce_id`` and ``ce_time`` headers
    (:func:`bus.stamping.stamp` makes both); ``source_type`` is the ``ce_source`` and
    ``ce_type`` pair (:func:`bus.stamping.source_type_headers` shares one per pair). An
    emitted record's subject is its key's bytes (none if empty) and its correlation and
    causation ids are its parent's header values, passed on as they are.
    """
    pair = source_type
    if time_header is not None:
        if (
            subject  # not empty: a CloudEvent's subject is absent or non-empty
            and correlationid is not None
            and causationid is not None
            and traceparent is None
        ):  # every record a handler emits without tracing: one list, no appends
            return [
                _SPEC_10,
                id_header,
                pair[0],
                pair[1],
                time_header,
                ("ce_subject", subject),
                ("ce_correlationid", correlationid),
                ("ce_causationid", causationid),
                _JSON_CONTENT,
            ]
        headers = [_SPEC_10, id_header, *pair, time_header]
    else:
        headers = [_SPEC_10, id_header, *pair]
    append = headers.append
    if subject:
        append(("ce_subject", subject))
    if correlationid is not None:
        append(("ce_correlationid", correlationid))
    if causationid is not None:
        append(("ce_causationid", causationid))
    if traceparent is not None:
        append(("ce_traceparent", traceparent))
    append(_JSON_CONTENT)
    return headers


_SPEC_10 = ("ce_specversion", b"1.0")
_JSON_CONTENT = (CONTENT_TYPE_HEADER, b"application/json")
