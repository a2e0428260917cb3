"""bus.codec + bus.envelope + bus.stamping: CloudEvents Kafka binding, binary and structured
mode, and what records are stamped with."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.cloudevents import format_time
from bus.codec import (
    CONTENT_TYPE_HEADER,
    STRUCTURED_CONTENT_TYPE,
    decode,
    plain_envelope,
    plain_headers,
)
from bus.encoding import encode
from bus.envelope import SPEC_VERSION, Envelope, event_envelope
from bus.errors import DecodeError, RecordError
from bus.stamping import event_headers, stamp, time_header, utc_now

STRUCTURED = b"application/cloudevents+json; charset=utf-8"

# Attribute names the codec treats specially; an extension may not reuse one.
RESERVED = {
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "dataschema",
    "datacontenttype",
    "correlationid",
    "causationid",
    "traceparent",
    "data",
}

# Any text that UTF-8 can encode (no lone surrogates).
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
nonempty_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
)
optional_text = st.none() | text

fixed_offsets = st.one_of(
    st.just(UTC),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
aware_times = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(9000, 12, 31),
    timezones=fixed_offsets,
)

extension_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20
).filter(lambda n: n not in RESERVED)
extensions = st.dictionaries(extension_names, text, max_size=5)

# Valid optional attributes (bus.cloudevents): RFC 2046 media types, absolute URIs.
_TOKEN_CHARS = "!#$%&'*+-.^_`{|}~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
tokens = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=12)
media_types = st.builds(
    lambda kind, sub, params: f"{kind}/{sub}" + "".join(f"; {k}={v}" for k, v in params),
    tokens,
    tokens,
    st.lists(st.tuples(tokens, tokens), max_size=2),
)
uris = st.builds(
    lambda scheme, rest: f"{scheme}:{rest}",
    st.from_regex(r"[A-Za-z][A-Za-z0-9+.-]{0,8}", fullmatch=True),
    st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@/?#[]", max_size=30),
)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    return Envelope(
        id=draw(nonempty_text),
        source=draw(nonempty_text),
        type=draw(nonempty_text),
        data=draw(st.binary(max_size=200)),
        time=draw(st.none() | aware_times),
        subject=draw(st.none() | nonempty_text),
        datacontenttype=draw(st.none() | media_types),
        dataschema=draw(st.none() | uris),
        correlationid=draw(optional_text),
        causationid=draw(optional_text),
        traceparent=draw(optional_text),
        extensions=draw(extensions),
    )


def binary_headers(**overrides: bytes | None) -> list[tuple[str, bytes]]:
    """Minimal valid binary-mode headers; an override of None drops the header."""
    values: dict[str, bytes | None] = {
        "ce_specversion": b"1.0",
        "ce_id": b"id-1",
        "ce_source": b"bus://test",
        "ce_type": b"unit.test_codec.thing.v1",
    }
    values.update(overrides)
    return [(k, v) for k, v in values.items() if v is not None]


def structured(event: object) -> tuple[list[tuple[str, bytes]], bytes]:
    return [(CONTENT_TYPE_HEADER, STRUCTURED)], orjson.dumps(event)


MINIMAL_EVENT = {
    "specversion": "1.0",
    "id": "id-1",
    "source": "bus://test",
    "type": "unit.test_codec.thing.v1",
}


# --- round trip -------------------------------------------------------------------


@given(envelopes())
def test_any_envelope_survives_encode_then_decode(env: Envelope) -> None:
    headers, value = encode(env)
    assert decode(headers, value) == env


@given(envelopes(), st.lists(st.tuples(st.sampled_from(["x-app", "bus_note"]), st.binary())))
def test_headers_that_are_not_attributes_do_not_change_the_decoded_envelope(
    env: Envelope, other: list[tuple[str, bytes]]
) -> None:
    headers, value = encode(env)
    assert decode([*headers, *other], value) == env


@given(
    nonempty_text,
    nonempty_text,
    nonempty_text,
    st.none() | aware_times,
    optional_text,  # an empty subject is left out by both
    optional_text,
    optional_text,
    optional_text,
)
def test_event_headers_are_the_headers_encode_makes_of_the_event_envelope(
    id_: str,
    source: str,
    type_: str,
    time: datetime | None,
    subject: str | None,
    correlationid: str | None,
    causationid: str | None,
    traceparent: str | None,
) -> None:
    args = (id_, source, type_, time, subject, correlationid, causationid, traceparent)
    env = event_envelope(
        id_, source, type_, b"{}", time, subject, correlationid, causationid, traceparent
    )
    assert event_headers(*args) == encode(env)[0]
    assert event_headers(*args) == encode(env)[0]  # again: the remembered time text


# --- plain headers: what the worker routes and emits from without decoding -------------


@given(envelopes(), st.lists(st.tuples(st.sampled_from(["x-app", "ce_tenant"]), st.binary())))
def test_plain_headers_are_accepted_only_where_decode_gives_their_plain_envelope(
    env: Envelope, other: list[tuple[str, bytes]]
) -> None:
    headers, value = encode(env)
    headers += other
    named = plain_headers(headers)
    if named is not None:
        assert plain_envelope(named, value) == decode(headers, value)
        assert named == dict(headers)


ascii_text = st.text(alphabet=st.characters(max_codepoint=127), max_size=40)


@given(
    ascii_text.filter(bool),
    ascii_text.filter(bool),
    ascii_text.filter(bool),
    st.none() | aware_times,
    st.none() | ascii_text.filter(bool),  # bus writes no empty subject
    st.none() | ascii_text,
    st.none() | ascii_text,
    st.none() | ascii_text,
)
def test_events_bus_writes_are_plain(
    id_: str,
    source: str,
    type_: str,
    time: datetime | None,
    subject: str | None,
    correlationid: str | None,
    causationid: str | None,
    traceparent: str | None,
) -> None:
    env = event_envelope(
        id_, source, type_, b"{}", time, subject, correlationid, causationid, traceparent
    )
    headers, value = encode(env)
    named = plain_headers(headers)
    assert named is not None
    assert plain_envelope(named, value) == env


@pytest.mark.parametrize(
    "headers",
    [
        binary_headers(ce_subject="é".encode()),  # UTF-8 but not ASCII: decode's business
        binary_headers(ce_subject=b"\xff"),
        binary_headers(ce_specversion=b"0.3"),
        binary_headers(ce_id=b""),
        binary_headers(ce_type=None),
        [*binary_headers(), ("ce_tenant", b"acme")],  # an extension
        [*binary_headers(), ("x-app", b"1")],  # not an attribute
        [*binary_headers(), ("ce_id", b"id-2")],  # repeated
        [("CE_ID", b"id-1"), *binary_headers(ce_id=None)],  # other casing
        [(CONTENT_TYPE_HEADER, STRUCTURED)],
    ],
)
def test_anything_but_known_ascii_attributes_is_not_plain(headers: list[tuple[str, bytes]]) -> None:
    assert plain_headers(headers) is None


@pytest.mark.parametrize("bad", [b"yesterday", b"2024-05-06T07:08:09", b""])
def test_a_plain_record_with_a_bad_time_is_a_decode_error_as_in_decode(bad: bytes) -> None:
    headers = binary_headers(ce_time=bad)
    with pytest.raises(DecodeError, match="ce_time"):
        decode(headers, b"")
    with pytest.raises(DecodeError, match="ce_time"):
        plain_headers(headers)
    with pytest.raises(DecodeError, match="ce_time"):
        plain_headers(headers)  # again: a bad time is not remembered as checked


@given(envelopes())
def test_encoded_headers_are_ce_prefixed_or_content_type(env: Envelope) -> None:
    headers, value = encode(env)
    assert value == env.data
    for name, raw in headers:
        assert name.startswith("ce_") or name == CONTENT_TYPE_HEADER
        assert isinstance(raw, bytes)


@given(envelopes())
def test_decoded_time_keeps_its_utc_offset_and_microseconds(env: Envelope) -> None:
    decoded = decode(*encode(env))
    if env.time is None:
        assert decoded.time is None
    else:
        assert decoded.time is not None
        assert decoded.time.utcoffset() == env.time.utcoffset()
        assert decoded.time.microsecond == env.time.microsecond


def test_minimal_envelope_encodes_to_required_headers_and_default_content_type() -> None:
    env = Envelope(id="i", source="s", type="t", data=b"{}")
    headers, value = encode(env)
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"i",
        "ce_source": b"s",
        "ce_type": b"t",
        "content-type": b"application/json",
    }
    assert value == b"{}"


def test_envelope_without_datacontenttype_has_no_content_type_header() -> None:
    env = Envelope(id="i", source="s", type="t", datacontenttype=None)
    headers, _ = encode(env)
    assert CONTENT_TYPE_HEADER not in dict(headers)
    assert decode(headers, b"").datacontenttype is None


def test_extensions_are_encoded_as_ce_headers() -> None:
    env = Envelope(id="i", source="s", type="t", extensions={"tenant": "acme"})
    headers, _ = encode(env)
    assert ("ce_tenant", b"acme") in headers


def test_missing_value_decodes_as_empty_data() -> None:
    assert decode(binary_headers(), None).data == b""


def test_header_names_are_matched_case_insensitively() -> None:
    headers = [(k.upper(), v) for k, v in binary_headers()] + [("Content-Type", b"text/plain")]
    env = decode(headers, b"x")
    assert env.id == "id-1"
    assert env.datacontenttype == "text/plain"
    assert env.extensions == {}


def test_envelope_defaults() -> None:
    env = Envelope(id="i", source="s", type="t")
    assert env.specversion == SPEC_VERSION == "1.0"
    assert env.data == b""
    assert env.datacontenttype == "application/json"
    assert env.time is None
    assert dict(env.extensions) == {}


def test_envelope_is_frozen() -> None:
    env = Envelope(id="i", source="s", type="t")
    with pytest.raises(AttributeError):
        env.id = "other"  # type: ignore[misc]


def test_utc_now_is_aware_utc() -> None:
    now = utc_now()
    assert now.utcoffset() == timedelta(0)


# --- format_time --------------------------------------------------------------------


def test_utc_time_is_formatted_with_z() -> None:
    t = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert format_time(t) == "2024-05-06T07:08:09.123456Z"


def test_utc_time_without_microseconds_has_no_fraction() -> None:
    assert format_time(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)) == "2024-05-06T07:08:09Z"


def test_non_utc_time_keeps_its_offset() -> None:
    t = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert format_time(t) == "2024-05-06T07:08:09+05:30"


def test_z_time_header_decodes_to_utc() -> None:
    env = decode(binary_headers(ce_time=b"2024-05-06T07:08:09.5Z"), b"")
    assert env.time == datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)


# --- structured mode ----------------------------------------------------------------


def test_structured_event_with_json_object_data_becomes_its_json_bytes() -> None:
    payload = {"employee_id": "e-1", "n": 3, "nested": {"a": [1, 2]}}
    event = {
        **MINIMAL_EVENT,
        "time": "2024-05-06T07:08:09Z",
        "subject": "e-1",
        "datacontenttype": "application/json",
        "correlationid": "c-1",
        "data": payload,
    }
    env = decode(*structured(event))
    assert env.data == orjson.dumps(payload)
    assert orjson.loads(env.data) == payload
    assert env.id == "id-1"
    assert env.source == "bus://test"
    assert env.type == "unit.test_codec.thing.v1"
    assert env.specversion == "1.0"
    assert env.time == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert env.subject == "e-1"
    assert env.datacontenttype == "application/json"
    assert env.correlationid == "c-1"


def test_structured_event_with_data_base64_becomes_the_decoded_bytes() -> None:
    raw = bytes(range(256))
    event = {**MINIMAL_EVENT, "data_base64": base64.b64encode(raw).decode()}
    env = decode(*structured(event))
    assert env.data == raw


def test_structured_event_without_data_has_empty_data() -> None:
    env = decode(*structured(MINIMAL_EVENT))
    assert env.data == b""
    assert env.datacontenttype is None


def test_structured_event_keeps_extensions() -> None:
    event = {**MINIMAL_EVENT, "tenant": "acme", "priority": 5, "urgent": True}
    env = decode(*structured(event))
    assert env.extensions == {"tenant": "acme", "priority": "5", "urgent": "true"}


def test_structured_null_attribute_is_treated_as_unset() -> None:
    # JSON format 1.0.2 section 2.2: "When decoding attributes and a null value is
    # encountered, it MUST be treated as the equivalent of unset or omitted."
    event = {**MINIMAL_EVENT, "subject": None, "time": None, "unsetextension": None}
    env = decode(*structured(event))
    assert env.subject is None
    assert env.time is None
    assert "unsetextension" not in env.extensions


def test_structured_string_data_with_non_json_content_type_is_the_string_itself() -> None:
    # JSON format 1.0.2 section 3.2, second example: "data": "<much wow=\"xml\"/>" with
    # datacontenttype application/xml is the content <much wow="xml"/> (not a JSON string).
    event = {**MINIMAL_EVENT, "datacontenttype": "application/xml", "data": '<much wow="xml"/>'}
    env = decode(*structured(event))
    assert env.datacontenttype == "application/xml"
    assert env.data == b'<much wow="xml"/>'


def test_structured_string_data_with_json_content_type_stays_a_json_string() -> None:
    event = {**MINIMAL_EVENT, "datacontenttype": "application/json", "data": "I'm just a string"}
    assert decode(*structured(event)).data == b'"I\'m just a string"'


def test_structured_mode_is_detected_without_charset_parameter() -> None:
    headers = [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())]
    env = decode(headers, orjson.dumps({**MINIMAL_EVENT, "data": {"a": 1}}))
    assert env.data == b'{"a":1}'


@given(envelopes())
def test_binary_headers_win_over_structured_content_type(env: Envelope) -> None:
    # With ce_ headers present, the record is binary mode whatever its content-type says.
    env = Envelope(
        id=env.id,
        source=env.source,
        type=env.type,
        data=env.data,
        datacontenttype="application/cloudevents+json",
    )
    assert decode(*encode(env)) == env


def test_structured_invalid_data_base64_is_a_decode_error() -> None:
    event = {**MINIMAL_EVENT, "data_base64": "not base64!!"}
    with pytest.raises(DecodeError, match="data_base64"):
        decode(*structured(event))


def test_structured_mode_other_than_json_is_a_decode_error() -> None:
    headers = [(CONTENT_TYPE_HEADER, b"application/cloudevents+avro")]
    with pytest.raises(DecodeError, match="not supported"):
        decode(headers, b"\x00")


# --- every DecodeError --------------------------------------------------------------


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
def test_missing_required_header_is_a_decode_error_naming_it(header: str) -> None:
    with pytest.raises(DecodeError, match=header) as info:
        decode(binary_headers(**{header: None}), b"{}")
    assert info.value.reason == "decode"
    assert isinstance(info.value, RecordError)


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
def test_empty_required_header_is_a_decode_error_naming_it(header: str) -> None:
    with pytest.raises(DecodeError, match=header):
        decode(binary_headers(**{header: b""}), b"{}")


def test_all_missing_headers_are_named_together() -> None:
    with pytest.raises(DecodeError) as info:
        decode([(CONTENT_TYPE_HEADER, b"application/json")], b"{}")
    for header in ("ce_id", "ce_source", "ce_type", "ce_specversion"):
        assert header in str(info.value)


def test_no_headers_at_all_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not a CloudEvent"):
        decode([], b"{}")


@pytest.mark.parametrize("field", ["id", "source", "type", "specversion"])
def test_structured_event_missing_required_attribute_names_it(field: str) -> None:
    event = {k: v for k, v in MINIMAL_EVENT.items() if k != field}
    with pytest.raises(DecodeError, match=f"ce_{field}"):
        decode(*structured(event))


def test_specversion_0_3_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"0\.3"):
        decode(binary_headers(ce_specversion=b"0.3"), b"")


def test_structured_specversion_0_3_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="specversion"):
        decode(*structured({**MINIMAL_EVENT, "specversion": "0.3"}))


@pytest.mark.parametrize(
    "bad", [b"yesterday", b"2024-13-01T00:00:00Z", b"2024-05-06T25:00:00Z", b""]
)
def test_unparseable_time_is_a_decode_error(bad: bytes) -> None:
    with pytest.raises(DecodeError, match="ce_time"):
        decode(binary_headers(ce_time=bad), b"")


def test_naive_time_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no UTC offset"):
        decode(binary_headers(ce_time=b"2024-05-06T07:08:09"), b"")


def test_structured_naive_time_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="ce_time"):
        decode(*structured({**MINIMAL_EVENT, "time": "2024-05-06T07:08:09"}))


def test_non_utf8_ce_header_is_a_decode_error_naming_it() -> None:
    with pytest.raises(DecodeError, match="ce_subject"):
        decode(binary_headers(ce_subject=b"\xff\xfe"), b"")


def test_non_utf8_content_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="content-type"):
        decode([*binary_headers(), (CONTENT_TYPE_HEADER, b"\xc3\x28")], b"")


def test_unrelated_non_utf8_header_is_ignored() -> None:
    env = decode([*binary_headers(), ("traceid-bin", b"\xff")], b"")
    assert env.id == "id-1"


@pytest.mark.parametrize("value", [b"{not json", b"", None, b"\xff"])
def test_invalid_structured_json_is_a_decode_error(value: bytes | None) -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode([(CONTENT_TYPE_HEADER, STRUCTURED)], value)


@pytest.mark.parametrize("event", [[1, 2], "text", 42, None])
def test_structured_event_that_is_not_an_object_is_a_decode_error(event: object) -> None:
    with pytest.raises(DecodeError, match="JSON object"):
        decode(*structured(event))


@pytest.mark.parametrize("value", [1.5, ["x"], {"a": 1}])
def test_structured_attribute_of_wrong_json_type_is_a_decode_error(value: object) -> None:
    with pytest.raises(DecodeError, match="subject"):
        decode(*structured({**MINIMAL_EVENT, "subject": value}))


# --- ambiguous or invalid per the spec (found by tests/fuzz) --------------------------
@pytest.mark.parametrize(
    "name", ["ce_id", "ce_type", "ce_specversion", "ce_source", "ce_time", "content-type"]
)
@pytest.mark.parametrize("same_value", [True, False])
def test_a_repeated_attribute_header_is_a_decode_error_naming_it(
    name: str, same_value: bool
) -> None:
    headers = [*binary_headers(), ("ce_time", b"2026-01-01T00:00:00Z"), ("content-type", b"a/b")]
    first = dict(headers)[name]
    headers.append((name, first if same_value else b"other"))
    with pytest.raises(DecodeError, match=f"header '{name}' appears more than once"):
        decode(headers, b"{}")


def test_a_repeated_header_in_other_casing_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="CE_TYPE"):
        decode([*binary_headers(), ("CE_TYPE", b"unit.test_codec.thing.v1")], b"{}")


def test_repeated_headers_that_are_not_attributes_are_fine() -> None:
    env = decode([*binary_headers(), ("x-trace", b"1"), ("x-trace", b"\xff")], b"{}")
    assert env.id == "id-1"
    assert env.extensions == {}


@pytest.mark.parametrize(
    "attribute", ["specversion", "id", "source", "type", "time", "subject", "datacontenttype"]
)
@pytest.mark.parametrize("value", [42, True])
def test_structured_spec_attributes_must_be_json_strings(attribute: str, value: object) -> None:
    with pytest.raises(DecodeError, match=f"'{attribute}' must be a string"):
        decode(*structured({**MINIMAL_EVENT, attribute: value}))


def test_structured_extensions_may_be_numbers_or_booleans() -> None:
    env = decode(*structured({**MINIMAL_EVENT, "count": 3, "flag": True}))
    assert env.extensions == {"count": "3", "flag": "true"}


def test_structured_event_with_both_data_and_data_base64_is_a_decode_error() -> None:
    event = {**MINIMAL_EVENT, "data": {"a": 1}, "data_base64": base64.b64encode(b"x").decode()}
    with pytest.raises(DecodeError, match="both data and data_base64"):
        decode(*structured(event))


@pytest.mark.parametrize("name", ["my_ext", "Ext", "my-ext", "", "ext é"])
def test_structured_attribute_names_are_lower_case_letters_and_digits(name: str) -> None:
    with pytest.raises(DecodeError, match="attribute name"):
        decode(*structured({**MINIMAL_EVENT, name: "x"}))


def test_stamp_is_a_new_id_and_the_time_of_its_millisecond() -> None:
    before = utc_now()
    stamps = [stamp() for _ in range(2000)]
    after = utc_now()
    ids = [id_header[1].decode() for id_header, _ in stamps]
    assert len(set(ids)) == len(ids)
    for (id_name, raw_id), (time_name, raw_time) in stamps:
        assert (id_name, time_name) == ("ce_id", "ce_time")
        ms = uuid.UUID(raw_id.decode()).int >> 80
        stamped = datetime.fromisoformat(raw_time.decode())
        # both from one clock read: the id's millisecond is the time's
        assert stamped == datetime.fromtimestamp(ms / 1000, UTC)
        assert before <= stamped <= after
        # the same header utc_now and format_time give for that instant
        assert (time_name, raw_time) == time_header(datetime.fromtimestamp(ms / 1000, UTC))
