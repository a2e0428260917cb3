"""Tasks through the coordinator and the test kit: completed once, refused before they
exist and after their saga stopped, and the timeline tells how long the person took."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bus import ConfigError
from sagas import SagaStatus
from sagas.effects import task_id
from sagas.stores import MemorySagaStore, SagaStore, store_from_url
from sagas.testing import SagaTestKit
from tests.integration.test_tasks_cli import FLOW, SAGA, T0, Badge, Badged, Hired


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SagaStore:
    if request.param == "memory":
        return MemorySagaStore()
    if request.param == "sqlite":
        return store_from_url(f"sqlite:{tmp_path / 'sagas.db'}")
    return store_from_url(request.getfixturevalue("postgres_dsn"))


async def test_a_task_completed_through_the_kit_moves_the_saga_on_once(store: SagaStore) -> None:
    async with SagaTestKit(FLOW, store=store, start=T0) as kit:
        with pytest.raises(ConfigError, match="no task"):  # not reached: no row yet
            await kit.complete_task(SAGA, "assign_desk", {"desk": "A", "floor": 1})
        await kit.publish(Hired(who="ada", manager="bo@example.com"))
        await kit.drain()
        assert [t.step for t in await kit.tasks("bo@example.com")] == ["assign_desk"]
        await kit.advance(timedelta(hours=3))
        done = await kit.complete_task(SAGA, "assign_desk", {"desk": "A", "floor": 1}, "bo")
        assert (done.status, done.completed_by) == ("completed", "bo")
        with pytest.raises(ConfigError, match="already completed by bo"):
            await kit.complete_task(SAGA, "assign_desk", {"desk": "B", "floor": 2}, "cy")
        await kit.drain()
        assert kit.commands() == [Badge(who="ada")]
        await kit.reply(Badged(), saga_id=SAGA)
        await kit.drain()
        state = await kit.state(SAGA)
        assert state.status == SagaStatus.COMPLETED
        assert state.data["desk"] == "A@1"
        assert await kit.tasks() == []


async def test_a_cancelled_saga_cancels_its_open_task_and_refuses_its_completion() -> None:
    async with SagaTestKit(FLOW, start=T0) as kit:
        await kit.publish(Hired(who="ada", manager="bo@example.com"))
        await kit.drain()
        await kit.cancel(SAGA, "hire withdrawn")
        await kit.drain()
        assert await kit.status(SAGA) == SagaStatus.CANCELLED
        assert await kit.tasks() == []
        with pytest.raises(ConfigError, match="was cancelled"):
            await kit.complete_task(SAGA, "assign_desk", {"desk": "A", "floor": 1})


async def test_a_completion_for_a_quarantined_saga_is_kept_and_applied_after_the_retry() -> None:
    store = MemorySagaStore()
    async with SagaTestKit(FLOW, store=store, start=T0) as kit:
        await kit.publish(Hired(who="ada", manager="bo@example.com"))
        await kit.drain()
        row = store._sagas[SAGA]
        good, row.json = row.json, "{not json"  # the row cannot be read: quarantined
        await kit.complete_task(SAGA, "assign_desk", {"desk": "A", "floor": 1}, "bo")
        await kit.drain()
        kept = await store.set_aside_inputs(saga_id=SAGA, limit=10)
        assert [i.timer_id for i in kept] == [f"task:{task_id(SAGA, 'assign_desk')}"]
        assert kit.commands() == []
        row.json = good  # fixed by hand
        await kit.retry(SAGA, "row fixed")
        await kit.drain()
        assert kit.commands() == [Badge(who="ada")]
        assert (await kit.state(SAGA)).data["desk"] == "A@1"
