"""bus.publisher: an emitted record is the record of its envelope, however it is built."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bus import Event, utc_now
from bus.codec import decode, plain_headers
from bus.encoding import encode
from bus.envelope import event_envelope
from bus.publisher import child_record, emitted_record, envelope_for, record_for
from bus.stamping import time_header


class Shipped(Event, type="test.publisher.shipped.v1", topic="test.publisher", key="order_id"):
    order_id: str
    items: int


ascii_text = st.text(alphabet=st.characters(max_codepoint=127), max_size=30)
ids = ascii_text.filter(bool)


@given(ids, ids, st.none() | ascii_text, st.none() | ascii_text, ascii_text)
def test_an_emitted_record_is_the_record_of_its_envelope(
    parent_id: str, new: str, correlationid: str | None, traceparent: str | None, key: str
) -> None:
    now = utc_now()
    parent = event_envelope(
        parent_id, "bus://up", "test.up.v1", b"{}", now, None, correlationid, None, traceparent
    )
    message = Shipped(order_id=key, items=2)
    expected = record_for(
        message,
        envelope_for(
            message,
            source="bus://shop",
            id=new,
            time=now,
            correlationid=correlationid or parent_id,
            causationid=parent_id,
            traceparent=traceparent,
        ),
    )
    got = emitted_record(message, parent, source="bus://shop", id=new, time=now)
    assert got._replace(headers=tuple(got.headers)) == expected


@given(ids, ids, st.none() | ascii_text, st.none() | ascii_text)
def test_a_child_record_from_a_plain_records_header_bytes_is_its_emitted_record(
    parent_id: str, new: str, correlationid: str | None, traceparent: str | None
) -> None:
    now = utc_now()
    parent = event_envelope(
        parent_id, "bus://up", "test.up.v1", b"{}", now, "k", correlationid, None, traceparent
    )
    headers, value = encode(parent)
    named = plain_headers(headers)
    assert named is not None
    message = Shipped(order_id="o-1", items=1)
    child = child_record(
        message,
        "bus://shop",
        (("ce_id", new.encode()), time_header(now)),
        named.get("ce_correlationid") or named["ce_id"],
        named["ce_id"],
        named.get("ce_traceparent"),
    )
    assert child == emitted_record(
        message, decode(headers, value), source="bus://shop", id=new, time=now
    )


def test_the_key_and_the_subject_are_the_key_fields_text() -> None:
    class Counted(Event, type="test.publisher.counted.v1", topic="test.publisher", key="n"):
        n: int

    parent = event_envelope("p", "bus://up", "test.up.v1", b"{}", None, None, None, None, None)
    record = emitted_record(Counted(n=7), parent, source="bus://s", id="i", time=utc_now())
    assert record.key == b"7"
    assert ("ce_subject", b"7") in record.headers
    assert ("ce_correlationid", b"p") in record.headers
    assert ("ce_causationid", b"p") in record.headers
