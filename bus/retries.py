"""How often a failing handler is tried again, and how long to wait between tries.

Two kinds of retry, declared together on one :class:`RetryPolicy`:

immediate
    ``max_attempts`` tries in the process, with short exponential backoff and jitter.
    The partition waits meanwhile, so order per key is kept.
delayed
    then one more try after each delay in ``tiers_s`` (say 10 s, 1 min, 10 min). By
    default the record is re-published to a retry topic per tier and re-consumed when
    due (:mod:`bus.retry_topics`), so one slow failure does not hold up its partition;
    later records of the same key may then be handled before it. ``blocking=True`` waits
    in the process instead, keeping per-key order at the cost of a stalled partition.

An error is retried when it is an instance of ``retry_on`` and not of ``permanent``
(nor a :class:`~bus.errors.BusError` with ``retryable=False``, such as
:class:`~bus.errors.PermanentError`). The decisions are pure
(:meth:`RetryPolicy.should_retry`, :meth:`RetryPolicy.wait_s`); :func:`call_with_retries`
is the thin async shell, on tenacity. A handler's first try is a plain call: the retry
machinery costs nothing until something fails.

Example::

    policy = RetryPolicy(max_attempts=3, tiers_s=(10, 60, 600), permanent=(ValueError,))
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bus.errors import BusError, ConfigError

__all__ = ["RetriesExhaustedError", "RetryPolicy", "call_with_retries"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded in-process retries with exponential backoff and jitter."""

    #: Tries in all, the first included (1 = no retry).
    max_attempts: int = 3
    #: Wait before the second try, in seconds.
    initial_delay_s: float = 0.05
    #: Each wait is the previous one times this.
    multiplier: float = 2.0
    #: No wait is longer than this, in seconds.
    max_delay_s: float = 2.0
    #: Up to this many seconds of random extra wait, so retries do not stampede.
    jitter_s: float = 0.05
    #: Exception types that are never retried (a bus error with ``retryable=False`` neither).
    permanent: tuple[type[BaseException], ...] = ()
    #: Exception types that are retried (default: every exception not permanent).
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    #: Delayed tries after the immediate ones: one more try after each of these seconds.
    tiers_s: tuple[float, ...] = ()
    #: Wait for the delayed tries in the process (keeps per-key order, stalls the
    #: partition) instead of through retry topics.
    blocking: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append("max_attempts must be at least 1")
        delays = (self.initial_delay_s, self.max_delay_s, self.jitter_s)
        if not all(0 <= d < math.inf for d in delays):
            problems.append("delays must be finite and not negative")
        if self.multiplier < 1:
            problems.append("multiplier must be at least 1")
        if not all(0 < t < math.inf for t in self.tiers_s):
            problems.append("tiers_s must be positive, finite seconds, e.g. (10, 60, 600)")
        if list(self.tiers_s) != sorted(set(self.tiers_s)):
            problems.append("tiers_s must be increasing and without repeats (one topic per tier)")
        if not self.retry_on:
            problems.append("retry_on must name at least one exception type (use max_attempts=1)")
        if problems:
            raise ConfigError("RetryPolicy: " + "; ".join(problems))

    def is_permanent(self, error: BaseException) -> bool:
        """True when trying again cannot help."""
        if isinstance(error, self.permanent) or not isinstance(error, self.retry_on):
            return True
        return isinstance(error, BusError) and not error.retryable

    @property
    def in_process_attempts(self) -> int:
        """Tries made in the process: the immediate ones, plus the tiers when blocking."""
        return self.max_attempts + (len(self.tiers_s) if self.blocking else 0)

    @property
    def total_attempts(self) -> int:
        """Every try a record gets before it is dead-lettered."""
        return self.max_attempts + len(self.tiers_s)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether to try again in the process after try ``attempt`` (1-based) failed."""
        return attempt < self.in_process_attempts and not self.is_permanent(error)

    def next_tier(self, error: BaseException, tier: int | None) -> int | None:
        """The retry-topic tier for a record whose in-process tries all failed, or None.

        ``tier`` is the tier the record came from (None: its original topic). None means
        the record is done trying: dead-letter it.
        """
        if self.blocking or self.is_permanent(error):
            return None
        following = 0 if tier is None else tier + 1
        return following if following < len(self.tiers_s) else None

    def wait_s(self, attempt: int, random_fraction: float) -> float:
        """Seconds to wait in the process after try ``attempt`` failed (tiers included)."""
        tier = attempt - self.max_attempts
        if tier >= 0 and self.blocking and self.tiers_s:
            # tenacity also asks for the wait after the very last try: clamp to the last tier
            return self.tiers_s[min(tier, len(self.tiers_s) - 1)]
        return self.delay_s(attempt, random_fraction)

    def delay_s(self, attempt: int, random_fraction: float) -> float:
        """Seconds to wait after try ``attempt`` failed; ``random_fraction`` in [0, 1)."""
        try:
            base = self.initial_delay_s * self.multiplier ** (attempt - 1)
        except OverflowError:  # a very late attempt: the cap applies
            base = self.max_delay_s
        return min(base, self.max_delay_s) + self.jitter_s * random_fraction


class RetriesExhaustedError(Exception):
    """The handler failed on its last try; ``__cause__`` is its error."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(f"{type(error).__name__}: {error} (after {attempts} attempt(s))")
        self.error = error
        self.attempts = attempts


async def call_with_retries(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    *,
    on_failure: Callable[[int, BaseException], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    first_error: Exception | None = None,
) -> tuple[T, int]:
    """``(result, attempts)`` of ``call`` under ``policy``; :class:`RetriesExhaustedError` at the end.

    ``on_failure(attempt, error)`` hears every failed try that will be retried. A caller
    that made the first try itself passes its error as ``first_error``: tries go on from 2.
    """
    if first_error is None:
        try:
            return await call(), 1
        except Exception as exc:
            first_error = exc
    if not policy.should_retry(first_error, 1):
        raise RetriesExhaustedError(first_error, 1) from first_error
    if on_failure is not None:
        on_failure(1, first_error)

    def notify(state: RetryCallState) -> None:
        if on_failure is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                on_failure(state.attempt_number + 1, error)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.in_process_attempts - 1),
        wait=lambda state: policy.wait_s(state.attempt_number + 1, random.random()),
        retry=retry_if_exception(lambda e: not policy.is_permanent(e)),
        before_sleep=notify,
        sleep=sleep,
        reraise=True,
    )
    attempts = 1
    await sleep(policy.wait_s(1, random.random()))
    try:
        async for attempt in retrying:
            with attempt:
                attempts += 1
                return await call(), attempts
    except Exception as last:
        raise RetriesExhaustedError(last, attempts) from last
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover
