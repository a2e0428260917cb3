"""Bounded waits that never lose a cancellation: ``wait_for_event``.

Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that lands in the same
loop pass as the awaited thing completing; the task goes on as if never cancelled, and a
loop that ends only by cancellation runs on through a shutdown (the suspected reason an
ingress once ignored SIGTERM for two hours). ``asyncio.timeout`` does not (3.12 rebuilt
``wait_for`` on it).
Ruff bans ``asyncio.wait_for`` in bus/, handlers/ and sagas/ (``TID251``, pyproject.toml).

Example::

    while not stop.is_set():
        await publish_outbox()
        await wait_for_event(stop, 0.1)   # the next round in 0.1 s, or at once on stop
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["wait_for_event"]


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set, at most ``timeout_s`` seconds; True when it is set.

    A timeout is an answer (False), not an error; a cancellation propagates, always.

    Example::

        if not await wait_for_event(started, 5.0):
            log.warning("not started within 5 s; going on without it")
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()
