"""Token buckets: how many events a caller may publish now (pure; time is an input).

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; an event costs one.
A request of ``cost`` events is allowed when the bucket holds ``min(cost, burst)``: a batch
larger than the burst is allowed from a full bucket and leaves it in debt, so the caller
waits it off before the next request instead of never getting through.

Example::

    bucket, wait_s = take(None, rate_per_s=10, burst=20, cost=5, now_s=0.0)   # wait_s == 0
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Bucket", "take"]


class Bucket(NamedTuple):
    """A bucket's tokens at a moment (seconds on a monotonic clock)."""

    tokens: float
    at_s: float


def take(
    bucket: Bucket | None, *, rate_per_s: float, burst: float, cost: int, now_s: float
) -> tuple[Bucket, float]:
    """The bucket after a request of ``cost`` events at ``now_s``, and 0.0 when it is
    allowed, else the seconds until it would be (the bucket is then unchanged but refilled)."""
    if bucket is None:
        tokens = burst
    else:
        tokens = min(burst, bucket.tokens + max(0.0, now_s - bucket.at_s) * rate_per_s)
    needed = min(float(cost), burst)
    if tokens >= needed:
        return Bucket(tokens - cost, now_s), 0.0
    if rate_per_s <= 0:
        return Bucket(tokens, now_s), float("inf")
    return Bucket(tokens, now_s), (needed - tokens) / rate_per_s
