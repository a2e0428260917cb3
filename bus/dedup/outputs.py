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


def encode_outputs(outputs: Iterable[OutgoingRecord]) -> bytes:
    """The records as one byte string (see the module docstring for the layout)."""
    records = list(outputs)
    parts: list[bytes] = [_U8.pack(_FORMAT), _U32.pack(len(records))]
    for record in records:
        _put_str(parts, record.topic)
        _put_optional(parts, record.key)
        _put_optional(parts, record.value)
        headers = list(record.headers)
        parts.append(_U32.pack(len(headers)))
        for name, value in headers:
            _put_str(parts, name)
            parts.append(_U32.pack(len(value)))
            parts.append(bytes(value))
        parts.append(_I32.pack(-1 if record.partition is None else record.partition))
    return b"".join(parts)


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


def _put_str(parts: list[bytes], text: str) -> None:
    data = text.encode()
    parts.append(_U32.pack(len(data)))
    parts.append(data)


def _put_optional(parts: list[bytes], data: bytes | None) -> None:
    if data is None:
        parts.append(_I32.pack(-1))
    else:
        parts.append(_I32.pack(len(data)))
        parts.append(bytes(data))


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
