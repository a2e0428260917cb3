"""The early inputs' contract on every SagaStore: memory, SQLite and PostgreSQL.

An input for a saga that does not exist is kept (once per message id, in arrival order),
handed to the change that starts the saga and deleted with its write; it cannot be kept for
a saga that exists (a conflict: it is decided on the saga); it outlives a restart; the
purge deletes those older than the retention; two replicas keeping and starting at once
never leave an input behind a started saga.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from sagas.early import EarlyInput
from sagas.stores import RevisionConflictError, SagaStore, SagaWrite
from sagas.stores.base import KeepEarly, Loaded, Unstarted, Write
from tests.contract.test_saga_store import T0, Backend, backend, durable_backend, state

__all__ = ["backend", "durable_backend"]  # the fixtures, shared with test_saga_store


def early(message_id: str, saga_id: str = "demo:1", minutes: int = 0) -> EarlyInput:
    return EarlyInput(
        saga_id, "demo.approved.v1", message_id, {"by": "grace", "n": minutes},
        T0 + timedelta(minutes=minutes), causation_id="c-1",
    )  # fmt: skip


def starting(seen: list[Loaded], saga_id: str = "demo:1") -> object:
    """A change that starts ``saga_id`` with every input it is given (and notes what it
    got)."""

    def change(stored: Loaded) -> Write | None:
        seen.append(stored)
        if stored is not None and not isinstance(stored, Unstarted):
            return None
        done = tuple(e.message_id for e in stored.early) if stored else ()
        return SagaWrite(state(saga_id), 0, early_done=done)

    return change


async def test_an_input_for_a_saga_not_there_is_kept_once_in_arrival_order(
    backend: Backend,
) -> None:
    store = await backend.store()
    for e in (early("a-1", minutes=1), early("a-2", minutes=2), early("a-1", minutes=3)):
        await store.save(KeepEarly(e))
    await store.save(KeepEarly(early("b-1", "demo:2")))
    assert await store.early_inputs("demo:1") == [early("a-1", minutes=1), early("a-2", minutes=2)]
    assert [e.message_id for e in await store.early_inputs()] == ["a-1", "a-2", "b-1"]
    assert await store.load("demo:1") is None  # no saga for it


async def test_the_start_gets_the_kept_inputs_and_its_write_deletes_them(backend: Backend) -> None:
    store = await backend.store()
    await store.save(KeepEarly(early("a-1", minutes=1)))
    await store.save(KeepEarly(early("a-2", minutes=2)))
    seen: list[Loaded] = []
    write = await store.update("demo:1", starting(seen))  # type: ignore[arg-type]
    assert seen == [Unstarted("demo:1", (early("a-1", minutes=1), early("a-2", minutes=2)))]
    assert isinstance(write, SagaWrite)
    assert await store.early_inputs("demo:1") == []
    assert await store.load("demo:1") is not None
    [written] = await store.update_many([("demo:2", starting([], "demo:2"))])  # type: ignore[list-item]
    assert isinstance(written, SagaWrite)  # nothing kept: the change gets None


async def test_a_batch_that_keeps_then_starts_applies_the_input_kept_in_it(
    backend: Backend,
) -> None:
    store = await backend.store()
    seen: list[Loaded] = []

    def keep(stored: Loaded) -> Write | None:
        return KeepEarly(early("a-1")) if stored is None else None

    writes = await store.update_many([("demo:1", keep), ("demo:1", starting(seen))])  # type: ignore[list-item]
    assert isinstance(writes[0], KeepEarly)
    assert seen == [Unstarted("demo:1", (early("a-1"),))]
    assert await store.early_inputs("demo:1") == []
    assert await store.load("demo:1") is not None


async def test_an_input_cannot_be_kept_for_a_saga_that_exists(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))
    with pytest.raises(RevisionConflictError):
        await store.save(KeepEarly(early("a-1")))
    assert await store.early_inputs("demo:1") == []


async def test_kept_inputs_outlive_a_restart(durable_backend: Backend) -> None:
    store = await durable_backend.store()
    await store.save(KeepEarly(early("a-1")))
    await store.close()
    again = await durable_backend.store()
    assert await again.early_inputs("demo:1") == [early("a-1")]


async def test_the_purge_deletes_inputs_kept_since_before_the_retention(backend: Backend) -> None:
    store = await backend.store()
    await store.save(KeepEarly(early("old", minutes=0)))
    await store.save(KeepEarly(early("new", minutes=10)))
    assert await store.purge_early(T0 + timedelta(minutes=5)) == 1
    assert [e.message_id for e in await store.early_inputs()] == ["new"]


@pytest.mark.parametrize("batched", [False, True])
async def test_replicas_keeping_and_starting_at_once_leave_no_input_behind(
    backend: Backend, batched: bool
) -> None:
    first, second = await backend.store(), await backend.store()
    seen: list[Loaded] = []

    def keep(n: int) -> object:
        def change(stored: Loaded) -> Write | None:
            if stored is None or isinstance(stored, Unstarted):
                return KeepEarly(early(f"a-{n}", minutes=n))
            return None  # the saga exists: the input would be decided on it

        return change

    async def run(store: SagaStore, change: object) -> Write | None:
        if batched:  # the coordinator's path: a batch in one transaction
            [write] = await store.update_many([("demo:1", change)])  # type: ignore[list-item]
            return write
        return await store.update("demo:1", change)  # type: ignore[arg-type]

    results = await asyncio.gather(
        *(run(first if n % 2 else second, keep(n)) for n in range(6)),
        run(second, starting(seen)),
        *(run(second if n % 2 else first, keep(n)) for n in range(6, 12)),
    )
    kept = {w.input.message_id for w in results if isinstance(w, KeepEarly)}
    applied = {e.message_id for s in seen[-1:] if isinstance(s, Unstarted) for e in s.early}
    # every input kept before the start was applied by it; none is left behind the saga
    assert kept == applied | {e.message_id for e in await first.early_inputs("demo:1")}
    assert await first.early_inputs("demo:1") == []
