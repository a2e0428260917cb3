"""The tests' one waiting helper: what it returns, and what its timeout says."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import wait_until, wait_until_blocking


async def test_wait_until_returns_the_first_value_that_holds_sync_or_async() -> None:
    counter = itertools.count()
    assert (
        await wait_until(lambda: next(counter), until=lambda n: n >= 3, timeout_s=5, what="3") == 3
    )

    async def observe() -> list[int]:
        return [next(counter)]

    assert await wait_until(observe, timeout_s=5, what="a list") == [4]


async def test_a_timeout_names_what_was_awaited_and_the_last_value_seen() -> None:
    with pytest.raises(AssertionError, match=r"waiting for 10 effects; last observed: 7$"):
        await wait_until(
            lambda: 7, until=lambda n: n >= 10, timeout_s=0.05, what="10 effects", interval_s=0.01
        )


async def test_an_error_of_the_observation_ends_the_wait_at_once() -> None:
    def crashed() -> bool:
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="exited"):
        await wait_until(crashed, timeout_s=60, what="never")


def test_the_blocking_variant_behaves_the_same() -> None:
    counter = itertools.count()
    assert (
        wait_until_blocking(lambda: next(counter), until=lambda n: n == 2, timeout_s=5, what="2")
        == 2
    )
    with pytest.raises(AssertionError, match=r"waiting for x; last observed: ''"):
        wait_until_blocking(lambda: "", timeout_s=0.02, what="x", interval_s=0.01)
