"""Waiting in tests: poll an observation until it holds, or fail saying what was awaited.

Every test that waits for something another task or process does uses :func:`wait_until`
(or, in a synchronous test, :func:`wait_until_blocking`), so a timeout always reads the
same way: what was awaited, for how long, and the last value seen::

    n = await wait_until(lambda: len(effects), until=lambda n: n >= 100,
                         timeout_s=30, what="100 effects")
    # AssertionError: timed out after 30s waiting for 100 effects; last observed: 87

A test that must show something did *not* happen waits for a later thing that did (a
marker record handled after it, a counter that moved) and then asserts; it never sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["wait_until", "wait_until_blocking"]

T = TypeVar("T")


@overload
async def wait_until(
    observe: Callable[[], Awaitable[T]],
    *,
    timeout_s: float,
    what: str,
    until: Callable[[T], object] = ...,
    interval_s: float = ...,
) -> T: ...


@overload
async def wait_until(
    observe: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    until: Callable[[T], object] = ...,
    interval_s: float = ...,
) -> T: ...


async def wait_until(
    observe: Callable[[], Any],
    *,
    timeout_s: float,
    what: str,
    until: Callable[[Any], object] = bool,
    interval_s: float = 0.05,
) -> Any:
    """Call ``observe`` (sync or async) every ``interval_s`` until ``until(value)`` holds;
    return that value. After ``timeout_s``: AssertionError naming ``what`` and the last
    value. An exception raised by ``observe`` ends the wait (a crashed process fails fast).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = observe()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(what, timeout_s, value))
        await asyncio.sleep(interval_s)


def wait_until_blocking(
    observe: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    until: Callable[[T], object] = bool,
    interval_s: float = 0.05,
) -> T:
    """:func:`wait_until` for synchronous tests (no event loop; blocks the thread)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = observe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(what, timeout_s, value))
        time.sleep(interval_s)


def _timed_out(what: str, timeout_s: float, last: object) -> str:
    shown = repr(last)
    if len(shown) > 500:
        shown = shown[:500] + "..."
    return f"timed out after {timeout_s}s waiting for {what}; last observed: {shown}"
