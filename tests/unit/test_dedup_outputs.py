"""bus.dedup.outputs: a handler's records survive the dedup row byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import OutgoingRecord, StoreError
from bus.dedup.outputs import decode_outputs, encode_outputs

records = st.builds(
    OutgoingRecord,
    topic=st.text(min_size=1, max_size=30),
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=200),
    headers=st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=30)), max_size=6).map(
        tuple
    ),
    partition=st.none() | st.integers(min_value=0, max_value=2**31 - 1),
)


# Timing is not under test: a loaded CI machine must not fail these on a deadline.
@settings(deadline=None)
@given(st.lists(records, max_size=8))
def test_outputs_round_trip_exactly(outputs: list[OutgoingRecord]) -> None:
    assert decode_outputs(encode_outputs(outputs)) == tuple(outputs)


def test_no_outputs_round_trip() -> None:
    assert decode_outputs(encode_outputs([])) == ()


def test_headers_given_as_a_list_come_back_as_a_tuple() -> None:
    record = OutgoingRecord("t", b"k", b"v", [("a", b"1"), ("a", b"2")])
    (back,) = decode_outputs(encode_outputs([record]))
    assert back.headers == (("a", b"1"), ("a", b"2"))


# Timing is not under test: a loaded CI machine must not fail these on a deadline.
@settings(deadline=None)
@given(st.lists(records, min_size=1, max_size=3), st.data())
def test_a_truncated_or_padded_blob_is_a_store_error(
    outputs: list[OutgoingRecord], data: st.DataObject
) -> None:
    blob = encode_outputs(outputs)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(StoreError):
        decode_outputs(blob[:cut])
    with pytest.raises(StoreError, match="trailing"):
        decode_outputs(blob + b"\x00")


def test_an_unknown_format_names_the_fix() -> None:
    with pytest.raises(StoreError, match="newer version"):
        decode_outputs(b"\x07" + encode_outputs([])[1:])
