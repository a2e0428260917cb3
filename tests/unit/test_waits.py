"""``wait_for_event``: True when set, False on timeout, and no cancellation lost.

The last two tests fail when the helper is built on ``asyncio.wait_for`` (Python 3.11):
a cancellation that lands as the event is set is swallowed and the waiter runs on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bus import wait_for_event


async def _let_block(waiter: asyncio.Task[Any]) -> None:
    """A few loop passes: the waiter (and any task it started) is now blocked on its event."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiter.done()


async def test_it_returns_true_once_the_event_is_set() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_for_event(event, 60))
    await _let_block(waiter)
    event.set()
    assert await waiter is True


async def test_an_event_already_set_returns_true_at_once() -> None:
    event = asyncio.Event()
    event.set()
    assert await wait_for_event(event, 0) is True


async def test_it_returns_false_when_the_timeout_passes_first() -> None:
    assert await wait_for_event(asyncio.Event(), 0.01) is False


async def test_an_enclosing_timeout_is_raised_not_read_as_false() -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await wait_for_event(asyncio.Event(), 60)


async def test_a_cancellation_in_the_pass_the_event_is_set_is_not_lost() -> None:
    async def wait_once(event: asyncio.Event) -> str:
        await wait_for_event(event, 60)
        return "survived the cancellation"

    event = asyncio.Event()
    waiter = asyncio.create_task(wait_once(event))
    await _let_block(waiter)
    event.set()
    waiter.cancel()  # the same pass: the waiter has not run since the event was set
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_loop_cancelled_as_its_event_is_set_ends() -> None:
    """The pattern of a background loop stopped at shutdown (3.11's wait_for: it runs on)."""

    async def wait_rounds(event: asyncio.Event) -> str:
        for _ in range(4):
            await wait_for_event(event, 60)
            event.clear()
        return "survived the cancellation"

    event = asyncio.Event()
    waiter = asyncio.create_task(wait_rounds(event))
    await _let_block(waiter)
    event.set()
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # a lost cancellation: TimeoutError, not a hang
            await waiter
