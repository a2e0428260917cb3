"""Time-sortable unique ids (UUIDv7, RFC 9562) for CloudEvents ``id``.

Ids sort by creation time to the millisecond, so logs, dead letters and traces list in
order without a separate timestamp column.

Example::

    >>> len(new_id())
    36
"""

from __future__ import annotations

import random
import time

__all__ = ["new_id", "uuid7_from"]

_random_bits = random.getrandbits
_time_ns = time.time_ns
# the variant nibble (0b10xx) from a random hex digit, keeping its two low bits
_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_prefix_ms = -1
_prefix = ""


def uuid7_from(unix_ms: int, random_bits: bytes) -> str:
    """Build a UUIDv7 string from a millisecond timestamp and 10 random bytes (pure)."""
    rand = int.from_bytes(random_bits[:10], "big")
    rand_a = (rand >> 68) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (
        ((unix_ms & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    """A new UUIDv7 from the wall clock and 74 random bits.

    The bits come from ``random`` (seeded from the OS, re-seeded in forked children): ids
    must be unique, not unpredictable, and one ``os.urandom`` call per id costs more than
    the rest of the id. 80 random bits as 20 hex digits, 19 used: 3 for rand_a (12 bits),
    then rand_b (62 bits): the variant digit keeping 2 of its bits, 3 + 12 digits. Hex of
    bytes costs less than formatting an int.
    """
    global _prefix_ms, _prefix
    ms = _time_ns() // 1_000_000 & 0xFFFFFFFFFFFF
    if ms != _prefix_ms:  # the time part is formatted once per millisecond
        h = f"{ms:012x}"
        _prefix_ms, _prefix = ms, f"{h[:8]}-{h[8:12]}-7"
    h = _random_bits(80).to_bytes(10, "big").hex()
    return f"{_prefix}{h[:3]}-{_VARIANT_DIGIT[h[3]]}{h[4:7]}-{h[7:19]}"
