"""CloudEvents attribute values in HTTP headers (HTTP binding 1.0, section 3.1.3.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.ingress.header_values import HeaderValueError, decode_value, encode_value


def test_the_specs_example_is_encoded_with_upper_case_hex() -> None:
    assert encode_value("Euro \u20ac \U0001f600") == "Euro%20%E2%82%AC%20%F0%9F%98%80"


def test_space_double_quote_and_percent_are_encoded_and_printable_ascii_is_not() -> None:
    assert encode_value('a b"c%d') == "a%20b%22c%25d"
    assert encode_value("/hr/systems?x=1&y=~") == "/hr/systems?x=1&y=~"


def test_decoding_accepts_lower_case_hex_and_needlessly_encoded_characters() -> None:
    assert decode_value("Euro%20%e2%82%ac") == "Euro \u20ac"
    assert decode_value("%41%42C") == "ABC"


def test_a_quoted_value_is_unescaped_before_percent_decoding() -> None:
    assert decode_value('"a \\"quoted\\" value"') == 'a "quoted" value'
    assert decode_value('"100%25"') == "100%"


@pytest.mark.parametrize(
    "raw",
    ["%C0%A0", "%ED%A0%80", "%FF", "abc%2", "abc%zz", '"unterminated', '"lone\\', '"a"b"'],
)
def test_malformed_values_are_refused(raw: str) -> None:
    """%C0%A0 is the spec's overlong example; %ED%A0%80 a lone surrogate."""
    with pytest.raises(HeaderValueError):
        decode_value(raw)


@given(st.text())
def test_every_text_survives_encoding_and_decoding(text: str) -> None:
    encoded = encode_value(text)
    assert encoded.isascii()
    assert all("!" <= c <= "~" for c in encoded)
    try:
        text.encode()
    except UnicodeEncodeError:
        return  # lone surrogates are not text an attribute can hold
    assert decode_value(encoded) == text
