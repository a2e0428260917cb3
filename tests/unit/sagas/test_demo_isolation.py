"""The demo on a shared log keeps to its own topics and consumer groups."""

from __future__ import annotations

import io
from datetime import date

from bus import MemoryBroker, MemoryTransport, NamespacedTransport, Publisher
from handlers.hr.contracts import EmployeeHired
from sagas.demo import DEFAULT_SCENARIO, isolated, load_scenario, run_demo
from sagas.stores import MemorySagaStore, SagaQuery


class FakeKafka(MemoryTransport):
    name = "kafka"


def test_the_demo_on_a_shared_log_gets_its_own_prefix_per_run() -> None:
    shared = FakeKafka(MemoryBroker())
    one, two = isolated(shared, "a1"), isolated(shared, "b2")
    assert isinstance(one, NamespacedTransport)
    assert isinstance(two, NamespacedTransport)
    assert (one.prefix, two.prefix) == ("demo-a1.", "demo-b2.")
    own = MemoryTransport(MemoryBroker())
    assert isolated(own, "a1") is own  # the memory log is the demo's own already


async def test_the_demo_ignores_hires_already_on_the_real_topic() -> None:
    broker = MemoryBroker(default_partitions=3)
    real = MemoryTransport(broker)
    await real.start()
    older = EmployeeHired(
        employee_id="e-0001",
        full_name="Someone Real",
        department="sales",
        manager_email="boss@example.com",
        start_date=date(2026, 1, 5),
    )
    await Publisher(real, source="bus://hr").publish(older)
    store = MemorySagaStore()
    out = io.StringIO()
    async with store:
        code = await run_demo(
            load_scenario(DEFAULT_SCENARIO),
            store=store,
            transport=NamespacedTransport(MemoryTransport(broker), prefix="demo-1."),
            out=out,
        )
        sagas = await store.list_sagas(SagaQuery(limit=100))
    await real.stop()
    assert code == 0, out.getvalue()
    assert "systems: 6 account(s)" in out.getvalue()  # 5 hires, 1 leaver under a hold
    assert "onboarding:e-0001" not in {s.saga_id for s in sagas}
    assert len(sagas) == 17  # 7 hires, 2 leavers, 8 equipment child sagas (all but e-2005)
    assert "demo-1.hr.events" in broker.topics()
