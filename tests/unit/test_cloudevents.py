"""bus.cloudevents and what the codec does with it: the CloudEvents 1.0 rules for context
attributes, in binary mode (``ce_*`` headers, the plain fast path included) and in
structured mode (the JSON event format), with the spec's own examples."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from bus.cloudevents import MAX_NAME_LENGTH, parse_time
from bus.codec import CONTENT_TYPE_HEADER, decode, plain_headers
from bus.errors import DecodeError
from bus.types import Headers

STRUCTURED = b"application/cloudevents+json; charset=UTF-8"
REQUIRED = {"specversion": "1.0", "id": "id-1", "source": "/mycontext", "type": "t.v1"}


def binary(**attributes: str) -> list[tuple[str, bytes]]:
    """Binary-mode headers of the required attributes plus ``attributes`` (the key
    ``content_type`` is the ``content-type`` header)."""
    headers = [(f"ce_{k}", v.encode()) for k, v in REQUIRED.items()]
    for name, value in attributes.items():
        header = CONTENT_TYPE_HEADER if name == "content_type" else f"ce_{name}"
        headers.append((header, value.encode()))
    return headers


def structured(event: Mapping[str, object]) -> tuple[Headers, bytes]:
    return [(CONTENT_TYPE_HEADER, STRUCTURED)], orjson.dumps(event)


def assert_every_mode_refuses(match: str, **attributes: str) -> None:
    """Binary mode through ``decode`` and ``plain_headers`` (the worker's fast path) and
    structured mode all raise a DecodeError matching ``match`` (reason ``decode``)."""
    headers = binary(**attributes)
    with pytest.raises(DecodeError, match=match) as info:
        decode(headers, b"{}")
    assert info.value.reason == "decode"
    if all(name == CONTENT_TYPE_HEADER or name[3:] in _PLAIN for name, _ in headers):
        if b"".join(v for _, v in headers).isascii():
            with pytest.raises(DecodeError, match=match):
                plain_headers(headers)
        else:
            assert plain_headers(headers) is None  # not ASCII: decode's business
    event: dict[str, object] = {**REQUIRED}
    for name, value in attributes.items():
        event["datacontenttype" if name == "content_type" else name] = value
    with pytest.raises(DecodeError, match=match.replace("ce_", "")):
        decode(*structured(event))


_PLAIN = {*REQUIRED, "time", "subject", "dataschema", "correlationid", "causationid"}


# --- the spec's examples: accepted ------------------------------------------------------
# JSON format 1.0.2 section 3.2 (the "... base64 encoded string ..." placeholder of the
# first example is replaced by real base64), spec.md "Example", the Kafka binding's
# binary-mode example (section 3.2.5).


def test_json_format_example_with_binary_data_decodes() -> None:
    raw = b"\x00\x01thrift"
    env = decode(
        *structured(
            {
                "specversion": "1.0",
                "type": "com.example.someevent",
                "source": "/mycontext",
                "id": "A234-1234-1234",
                "time": "2018-04-05T17:31:00Z",
                "comexampleextension1": "value",
                "comexampleothervalue": 5,
                "datacontenttype": "application/vnd.apache.thrift.binary",
                "data_base64": base64.b64encode(raw).decode(),
            }
        )
    )
    assert env.data == raw
    assert env.datacontenttype == "application/vnd.apache.thrift.binary"
    assert env.time == datetime(2018, 4, 5, 17, 31, tzinfo=UTC)
    # both names are exactly MAX_NAME_LENGTH (20) characters long
    assert env.extensions == {"comexampleextension1": "value", "comexampleothervalue": "5"}
    assert len("comexampleextension1") == MAX_NAME_LENGTH


def test_json_format_example_with_xml_data_decodes_as_its_http_binary_form_does() -> None:
    event = {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "id": "B234-1234-1234",
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        "unsetextension": None,
        "datacontenttype": "application/xml",
        "data": '<much wow="xml"/>',
    }
    binary_form = [
        ("ce_specversion", b"1.0"),
        ("ce_type", b"com.example.someevent"),
        ("ce_source", b"/mycontext"),
        ("ce_id", b"B234-1234-1234"),
        ("ce_time", b"2018-04-05T17:31:00Z"),
        ("ce_comexampleextension1", b"value"),
        ("ce_comexampleothervalue", b"5"),
        ("content-type", b"application/xml"),
    ]
    from_json = decode(*structured(event))
    assert from_json == decode(binary_form, b'<much wow="xml"/>')
    assert from_json.data == b'<much wow="xml"/>'


@pytest.mark.parametrize(
    ("example_id", "data", "content_type"),
    [
        ("C234-1234-1234", {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True}, True),
        ("D234-1234-1234", "I'm just a string", False),
    ],
)
def test_json_format_examples_with_json_data_decode(
    example_id: str, data: object, content_type: bool
) -> None:
    event = {
        "specversion": "1.0",
        "type": "com.example.someevent",
        "source": "/mycontext",
        "subject": None,
        "id": example_id,
        "time": "2018-04-05T17:31:00Z",
        "comexampleextension1": "value",
        "comexampleothervalue": 5,
        **({"datacontenttype": "application/json"} if content_type else {}),
        "data": data,
    }
    env = decode(*structured(event))
    assert orjson.loads(env.data) == data
    assert env.subject is None


def test_spec_example_event_decodes() -> None:
    env = decode(
        *structured(
            {
                "specversion": "1.0",
                "type": "com.github.pull_request.opened",
                "source": "https://github.com/cloudevents/spec/pull",
                "subject": "123",
                "id": "A234-1234-1234",
                "time": "2018-04-05T17:31:00Z",
                "comexampleextension1": "value",
                "comexampleothervalue": 5,
                "datacontenttype": "text/xml",
                "data": '<much wow="xml"/>',
            }
        )
    )
    assert (env.type, env.subject, env.datacontenttype) == (
        "com.github.pull_request.opened",
        "123",
        "text/xml",
    )


def test_kafka_binding_binary_mode_example_decodes() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_type", b"com.example.someevent"),
        ("ce_source", b"/mycontext/subcontext"),
        ("ce_id", b"1234-1234-1234"),
        ("ce_time", b"2018-04-05T03:56:24Z"),
        ("content-type", b"application/avro"),
    ]
    env = decode(headers, b"\x02avro")
    assert env.time == datetime(2018, 4, 5, 3, 56, 24, tzinfo=UTC)
    assert env.datacontenttype == "application/avro"
    assert plain_headers(headers) is not None


# --- time: RFC 3339 date-time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-04-05T17:31:00Z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05t17:31:00z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),  # RFC 3339 5.6
        ("2018-04-05T17:31:00.5Z", datetime(2018, 4, 5, 17, 31, 0, 500000, tzinfo=UTC)),
        ("2018-04-05T17:31:00.123456789Z", datetime(2018, 4, 5, 17, 31, 0, 123456, tzinfo=UTC)),
        ("1985-04-12T23:20:50.52Z", datetime(1985, 4, 12, 23, 20, 50, 520000, tzinfo=UTC)),
        (
            "1996-12-19T16:39:57-08:00",  # RFC 3339 section 5.8's examples
            datetime(1996, 12, 19, 16, 39, 57, tzinfo=timezone(timedelta(hours=-8))),
        ),
        (
            "1937-01-01T12:00:27.87+00:20",
            datetime(1937, 1, 1, 12, 0, 27, 870000, tzinfo=timezone(timedelta(minutes=20))),
        ),
        ("2018-04-05T17:31:00-00:00", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        (
            "2018-04-05T17:31:00+23:59",
            datetime(2018, 4, 5, 17, 31, tzinfo=timezone(timedelta(hours=23, minutes=59))),
        ),
    ],
)
def test_rfc_3339_times_are_accepted(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected
    assert decode(binary(time=text), b"").time == expected
    assert decode(*structured({**REQUIRED, "time": text})).time == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2024-01-01T10:00Z", "no seconds"),
        ("2024-01-01 10:00:00Z", "not a space"),
        ("2024-01-01 10:00:00", "not a space"),
        ("2024-01-01T10:00:00+25:00", "out of range"),
        ("2024-01-01T10:00:00+01:60", "out of range"),
        ("2024-01-01T10:00:00+0100", "colon"),
        ("2024-01-01T10:00:00+01", "colon"),
        ("2024-01-01T10:00:00", "no UTC offset"),
        ("20240101T100000Z", "YYYY-MM-DD"),  # ISO 8601's basic format
        ("2024-01-01", "no time of day"),
        ("2024-01-01T10:00:00,5Z", "not of that shape"),
        ("2024-02-30T10:00:00Z", "day is out of range"),
        ("2016-12-31T23:59:60Z", "leap second"),
        ("\uff12\uff10\uff12\uff14-01-01T10:00:00Z", "YYYY-MM-DD"),  # full-width digits
        ("yesterday", "YYYY-MM-DD"),
        ("", "YYYY-MM-DD"),
    ],
)
def test_times_rfc_3339_rejects_are_decode_errors_in_every_mode(text: str, why: str) -> None:
    assert_every_mode_refuses(f"ce_time .*{why}", time=text)


def test_a_bad_time_is_not_remembered_as_good_after_a_good_one() -> None:
    good, bad = binary(time="2024-01-01T10:00:00Z"), binary(time="2024-01-01T10:00Z")
    assert plain_headers(good) is not None
    with pytest.raises(DecodeError):
        plain_headers(bad)
    assert plain_headers(good) is not None


# --- datacontenttype, dataschema, subject ------------------------------------------------


@pytest.mark.parametrize(
    "media_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'text/plain;charset="us-ascii"',
        "application/vnd.apache.thrift.binary",
        "application/cloudevents+json; charset=UTF-8",
        "text/xml",
    ],
)
def test_rfc_2046_media_types_are_accepted(media_type: str) -> None:
    assert decode(binary(content_type=media_type), b"").datacontenttype == media_type
    event = {**REQUIRED, "datacontenttype": media_type}
    assert decode(*structured(event)).datacontenttype == media_type


@pytest.mark.parametrize(
    "media_type", ["json", "application/", "/json", "application json", "text/xml;", ""]
)
def test_a_datacontenttype_that_is_no_media_type_is_a_decode_error(media_type: str) -> None:
    assert_every_mode_refuses("datacontenttype .*not a media type", content_type=media_type)


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com/schemas/order.json",
        "https://example.com/schema.json#/definitions/order",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    ],
)
def test_a_uri_dataschema_is_accepted(uri: str) -> None:
    assert decode(binary(dataschema=uri), b"").dataschema == uri
    assert decode(*structured({**REQUIRED, "dataschema": uri})).dataschema == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("", "is empty"),
        ("/schemas/order.json", "not an absolute URI"),
        ("https://example.com/a schema", "not an absolute URI"),
        ("https://example.com/%zz", "not an absolute URI"),
    ],
)
def test_a_dataschema_that_is_no_uri_is_a_decode_error(uri: str, why: str) -> None:
    assert_every_mode_refuses(f"ce_dataschema .*{why}", dataschema=uri)


def test_an_empty_subject_is_a_decode_error() -> None:
    assert_every_mode_refuses("ce_subject is empty", subject="")


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_an_empty_required_attribute_is_a_decode_error_in_structured_mode(
    attribute: str,
) -> None:
    with pytest.raises(DecodeError, match=f"ce_{attribute}"):
        decode(*structured({**REQUIRED, attribute: ""}))


def test_every_problem_is_named_at_once() -> None:
    headers = binary(time="2024-01-01T10:00Z", subject="", dataschema="x", content_type="json")
    with pytest.raises(DecodeError) as info:
        decode(headers, b"")
    message = str(info.value)
    for part in ("ce_time", "ce_subject", "ce_dataschema", "datacontenttype"):
        assert part in message
    with pytest.raises(DecodeError) as fast:
        plain_headers(headers)
    assert str(fast.value) == message


# --- attribute names --------------------------------------------------------------------


def test_an_extension_name_of_21_characters_is_a_decode_error_in_both_modes() -> None:
    name = "a" * (MAX_NAME_LENGTH + 1)
    with pytest.raises(DecodeError, match="longer than 20"):
        decode([*binary(), (f"ce_{name}", b"x")], b"")
    with pytest.raises(DecodeError, match="longer than 20"):
        decode(*structured({**REQUIRED, name: "x"}))


@pytest.mark.parametrize("header", ["ce_my-ext", "ce_my_ext", "ce_", "ce_data", "ce_\u00e9t\u00e9"])
def test_a_ce_header_whose_name_is_no_attribute_name_is_a_decode_error(header: str) -> None:
    with pytest.raises(DecodeError, match="attribute name"):
        decode([*binary(), (header, b"x")], b"")


def test_ce_header_names_are_read_lower_case_so_any_casing_of_a_valid_name_is_fine() -> None:
    assert decode([*binary(), ("ce_Tenant", b"acme")], b"").extensions == {"tenant": "acme"}


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_a_structured_integer_extension_outside_32_bits_is_a_decode_error(value: int) -> None:
    with pytest.raises(DecodeError, match="Integer range"):
        decode(*structured({**REQUIRED, "count": value}))


@pytest.mark.parametrize("value", [2**31 - 1, -(2**31)])
def test_a_structured_integer_extension_within_32_bits_is_kept(value: int) -> None:
    assert decode(*structured({**REQUIRED, "count": value})).extensions == {"count": str(value)}
