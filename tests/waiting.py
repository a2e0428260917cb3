"""The one way tests wait for a condition: poll it until true or fail naming what."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], object | Awaitable[object]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.01,
) -> float:
    """Wait until ``condition()`` (sync or async) is truthy; seconds waited.

    Fails with ``what`` and the last value seen when ``timeout_s`` passes first.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what} (last: {value!r})"
            )
        await asyncio.sleep(interval_s)
