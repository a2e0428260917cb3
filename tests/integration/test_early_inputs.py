"""Events that come before their saga exists, through the coordinator on SQLite and
PostgreSQL, across a restart: kept by the store (not dropped), applied when the trigger
comes, in arrival order, once - also when delivered again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bus import Event, MemoryBroker, MemoryTransport, Metrics
from sagas import Catalog, SagaStatus
from sagas.coordinator import Coordinator
from sagas.metrics import SagaMetrics
from sagas.stores import MemorySagaStore, SagaStore
from sagas.testing import SagaTestKit
from tests.integration.hiring import REG, T0, Hired, Open, Opened, hiring_flow, open_store
from tests.integration.test_adaptive_sagas import EARLY, Approved

__all__ = ["open_store"]  # the fixture, parametrized over SQLite and PostgreSQL


class Withdrawn(
    Event, type="test.adapt.withdrawn.v1", topic="adapt.events", key="who", registry=REG
):
    who: str


CANCELLABLE = hiring_flow(
    "adapt_cancellable", EARLY.data, EARLY.start, EARLY.stages, cancel_on=[Withdrawn]
)


async def test_an_approval_before_the_hire_is_kept_across_a_restart_and_applied(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_early:bo"
    metrics = Metrics()
    async with SagaTestKit(EARLY, store=open_store(), start=T0) as kit:
        await kit.publish(Approved(who="bo"), id="approval-1")
        await kit.publish(Approved(who="bo"), id="approval-1")  # delivered twice
        await kit.drain()
        [kept] = await kit.store.early_inputs(saga)
        assert (kept.type, kept.message_id) == (Approved.bus_type, "approval-1")
    observer = SagaMetrics(metrics)
    async with SagaTestKit(EARLY, store=open_store(), start=T0, observer=observer) as kit:
        await kit.publish(Hired(who="bo"))
        await kit.drain()
        assert await kit.store.early_inputs(saga) == []
        assert kit.commands() == [Open(who="bo")]
        await kit.reply(Opened(), saga_id=saga)
        await kit.publish(Approved(who="bo"), id="approval-1")  # a replay: changes nothing
        await kit.drain()
        state = await kit.state(saga)
        assert state.status == SagaStatus.COMPLETED
        assert state.steps["approval"].reply_ids == ["approval-1"]
        told = [h.detail for h in state.history if h.event == "kept_before_start"]
        assert len(told) == 1
        assert "kept before the saga started" in told[0]
    text = metrics.render().decode()
    assert 'bus_saga_early_inputs_total{outcome="applied",saga="adapt_early"} 1.0' in text


async def test_a_withdrawal_before_the_hire_cancels_it_before_anything_is_sent(
    open_store: Callable[[], SagaStore],
) -> None:
    saga = "adapt_cancellable:cy"
    async with SagaTestKit(CANCELLABLE, store=open_store(), start=T0) as kit:
        await kit.publish(Withdrawn(who="cy"))
        await kit.drain()
        await kit.publish(Hired(who="cy"))
        await kit.drain()
        assert await kit.status(saga) == SagaStatus.CANCELLED
        assert kit.commands() == []
        assert kit.coordinator.statistics().kept_early == 1


async def test_the_coordinators_purge_deletes_events_whose_saga_never_started() -> None:
    store = MemorySagaStore()
    async with SagaTestKit(EARLY, store=store, start=T0) as kit:
        await kit.publish(Approved(who="dee"))
        await kit.drain()
    c = Coordinator(
        Catalog([EARLY]), store, MemoryTransport(MemoryBroker()), clock=lambda: T0,
        early_retention_s=7 * 86400.0,
    )  # fmt: skip
    await c.tasks.purge()  # the same day: kept
    assert len(await store.early_inputs("adapt_early:dee")) == 1
    c.tasks.clock = lambda: T0 + timedelta(days=8)
    await c.tasks.purge()
    assert await store.early_inputs("adapt_early:dee") == []
