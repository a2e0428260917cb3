"""CloudEvents attribute values in HTTP headers: the binding's quoting and percent-encoding.

HTTP Protocol Binding 1.0, section 3.1.3.2: a header value is first unescaped as an
RFC 7230 quoted-string (older senders quoted values with spaces), then percent-decoded
once; a decoded byte sequence that is not valid UTF-8 (an overlong ``%C0%A0``) is refused.
Encoding percent-encodes space, ``"``, ``%`` and everything outside printable ASCII, in
upper-case hex.

Example::

    encode_value("Euro € 😀")            # 'Euro%20%E2%82%AC%20%F0%9F%98%80'
    decode_value('"a \\"b\\""')          # 'a "b"'
"""

from __future__ import annotations

__all__ = ["HeaderValueError", "decode_value", "encode_value"]

_HEX = "0123456789ABCDEF"


class HeaderValueError(ValueError):
    """A header value that is not a valid encoding of an attribute value."""


def encode_value(value: str) -> str:
    """``value`` as the binding writes it into a header."""
    out: list[str] = []
    for char in value:
        if "!" <= char <= "~" and char not in '"%':
            out.append(char)
        else:
            out.extend(f"%{_HEX[b >> 4]}{_HEX[b & 15]}" for b in char.encode())
    return "".join(out)


def decode_value(raw: str) -> str:
    """The attribute value a header carries; :class:`HeaderValueError` if it is malformed."""
    text = raw.strip(" \t")
    if text.startswith('"'):
        text = _unquote(text)
    if "%" not in text:
        return text
    return _percent_decode(text)


def _unquote(text: str) -> str:
    """An RFC 7230 quoted-string (section 3.2.6) without its quotes and backslashes."""
    if len(text) < 2 or not text.endswith('"'):
        raise HeaderValueError("a quoted value has no closing double quote")
    out: list[str] = []
    inner = text[1:-1]
    i = 0
    while i < len(inner):
        char = inner[i]
        if char == "\\":
            if i + 1 == len(inner):
                raise HeaderValueError("a quoted value ends in a lone backslash")
            out.append(inner[i + 1])
            i += 2
            continue
        if char == '"':
            raise HeaderValueError("a double quote inside a quoted value is not escaped")
        out.append(char)
        i += 1
    return "".join(out)


def _percent_decode(text: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                raise HeaderValueError(f"'%{pair}' is not a percent-encoded byte")
            raw.append(int(pair, 16))
            i += 3
            continue
        raw.extend(char.encode())
        i += 1
    try:
        # strict UTF-8 refuses overlong forms and lone surrogates, as the binding requires
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderValueError("percent-encoded bytes are not valid UTF-8") from exc
