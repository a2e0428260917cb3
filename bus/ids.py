"""Time-sortable unique ids (UUIDv7, RFC 9562) for CloudEvents ``id``.

Ids sort by creation time to the millisecond, so logs, dead letters and traces list in
order without a separate timestamp column.

Example::

    >>> len(new_id())
    36
"""

from __future__ import annotations

import os
import random
import time

__all__ = ["new_id", "new_id_at", "uuid7_from"]

_time_ns = time.time_ns
_HEX3 = tuple(f"{i:03x}" for i in range(4096))
_VARIANT = "89ab"
_prefix_ms = -1
_prefix = ""
#: new_id's counter and random tail, per process (drawn again in a forked child).
_count = 0
_tail = ""


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


def _draw() -> None:
    """A random counter start and a random 48-bit tail for this process."""
    global _count, _tail
    rng = random.SystemRandom()
    _count = rng.getrandbits(26)
    _tail = f"{rng.getrandbits(48):012x}"


_draw()
os.register_at_fork(after_in_child=_draw)


def new_id() -> str:
    """A new UUIDv7: the wall-clock millisecond, a 26-bit counter and a 48-bit tail.

    RFC 9562's "fixed bit-length dedicated counter" (section 6.2, method 1) with the rest
    random per process instead of per id: ids must be unique, not unpredictable, and
    drawing and formatting random bits per id cost three times the rest of the id. Unique
    within a process (the counter wraps after 2^26 ids, never within one millisecond);
    across processes the counter start and the tail are drawn from the OS at import and
    again in a forked child. The counter's two lowest bits fill the variant digit's free
    bits, then rand_a (12 bits), then the 12 bits after the variant digit.
    """
    return new_id_at(_time_ns() // 1_000_000)


def new_id_at(unix_ms: int) -> str:
    """:func:`new_id` for the millisecond ``unix_ms`` (now, read by the caller): for
    ``stamping.stamp``, which stamps a record's id and time from one clock read."""
    global _prefix_ms, _prefix, _count
    ms = unix_ms & 0xFFFFFFFFFFFF
    if ms != _prefix_ms:  # the time part is formatted once per millisecond
        h = f"{ms:012x}"
        _prefix_ms, _prefix = ms, f"{h[:8]}-{h[8:12]}-7"
    n = _count = (_count + 1) & 0x3FFFFFF
    return f"{_prefix}{_HEX3[n >> 14]}-{_VARIANT[n & 3]}{_HEX3[(n >> 2) & 0xFFF]}-{_tail}"
