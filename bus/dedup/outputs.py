"""A handler's outputs as one byte string, for a dedup row (pure).

The records must come back byte for byte - key and value bytes (either may be None),
headers with repeated names and binary values in order, the chosen partition - so a
redelivery re-sends exactly what the first run emitted. JSON would need base64 for every
byte field; a length-prefixed binary layout is exact, compact and fast::

    u8 format (1) | u32 count | count x record
    record  = str topic | opt key | opt value | u32 n | n x (str name | bytes value)
              | i32 partition (-1: None)
    str     = u32 length | UTF-8;  bytes = u32 length | data;  opt = i32 length (-1: None) | data

Example::

    blob = encode_outputs([OutgoingRecord("hr", b"u-1", b"{}", (("ce_id", b"1"),))])
    decode_outputs(blob)[0].key     # b"u-1"
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from bus.errors import StoreError
from bus.record import OutgoingRecord

__all__ = ["decode_outputs", "encode_outputs"]

_FORMAT = 1
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_NONE = _I32.pack(-1)
_HEAD = _U8.pack(_FORMAT)
#: Topic and header names as encoded (a handful in any process).
_NAMED: dict[str, bytes] = {}


_NO_RECORDS = _HEAD + _U32.pack(0)


def encode_outputs(outputs: Iterable[OutgoingRecord]) -> bytes:
    """The records as one byte string (see the module docstring for the layout)."""
    records = outputs if type(outputs) is tuple else tuple(outputs)
    if not records:  # the ingress's rows: its keys only
        return _NO_RECORDS
    # no helper call per field, and parts added three at a time: the ingress encodes one
    # row per event it accepts, and this was the largest part of its CPU on batches
    u32, i32, named = _U32.pack, _I32.pack, _named
    parts: list[bytes] = [_HEAD, u32(len(records))]
    for topic, key, value, headers, partition in records:
        parts += (
            named(topic),
            _NONE if key is None else i32(len(key)),
            key or b"",
            _NONE if value is None else i32(len(value)),
            value or b"",
            u32(len(headers)),
        )
        for name, header in headers:
            parts += (named(name), u32(len(header)), header)
        parts.append(_NONE if partition is None else i32(partition))
    return b"".join(parts)


def _named(text: str) -> bytes:
    """``str`` in the layout (length and UTF-8); topics and header names repeat, so kept."""
    encoded = _NAMED.get(text)
    if encoded is None:
        data = text.encode()
        encoded = _U32.pack(len(data)) + data
        if len(_NAMED) < 4096:
            _NAMED[text] = encoded
    return encoded


def decode_outputs(blob: bytes) -> tuple[OutgoingRecord, ...]:
    """The records :func:`encode_outputs` wrote; headers come back as a tuple of tuples."""
    try:
        return _decode(memoryview(blob))
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise StoreError(
            f"a dedup row's outputs are unreadable ({exc}); the row was written by other code "
            "or damaged: delete it to let the handler run again"
        ) from exc


def _decode(view: memoryview) -> tuple[OutgoingRecord, ...]:
    (fmt,) = _U8.unpack_from(view, 0)
    if fmt != _FORMAT:
        raise StoreError(
            f"dedup outputs are in format {fmt}, this code reads format {_FORMAT}: run the "
            "newer version of the code"
        )
    (count,) = _U32.unpack_from(view, 1)
    pos = 5
    records: list[OutgoingRecord] = []
    for _ in range(count):
        topic, pos = _get_str(view, pos)
        key, pos = _get_optional(view, pos)
        value, pos = _get_optional(view, pos)
        (n,) = _U32.unpack_from(view, pos)
        pos += 4
        headers: list[tuple[str, bytes]] = []
        for _ in range(n):
            name, pos = _get_str(view, pos)
            data, pos = _get_bytes(view, pos)
            headers.append((name, data))
        (partition,) = _I32.unpack_from(view, pos)
        pos += 4
        records.append(
            OutgoingRecord(topic, key, value, tuple(headers), None if partition < 0 else partition)
        )
    if pos != len(view):
        raise StoreError(f"dedup outputs have {len(view) - pos} unexpected trailing bytes")
    return tuple(records)


def _get_bytes(view: memoryview, pos: int) -> tuple[bytes, int]:
    (length,) = _U32.unpack_from(view, pos)
    pos += 4
    return _take(view, pos, length)


def _get_str(view: memoryview, pos: int) -> tuple[str, int]:
    data, pos = _get_bytes(view, pos)
    return data.decode(), pos


def _get_optional(view: memoryview, pos: int) -> tuple[bytes | None, int]:
    (length,) = _I32.unpack_from(view, pos)
    pos += 4
    if length < 0:
        return None, pos
    return _take(view, pos, length)


def _take(view: memoryview, pos: int, length: int) -> tuple[bytes, int]:
    end = pos + length
    if end > len(view):
        raise StoreError("dedup outputs are truncated; delete the row to let the handler run again")
    return bytes(view[pos:end]), end
