"""The offboarding end to end with the real handler apps, on SQLite and PostgreSQL: a
leaver loses access and licenses, their account is removed (or kept under a legal hold),
the manager's equipment task is completed in a child saga, the final payroll runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import App
from sagas import SagaStatus
from sagas.definitions.equipment import equipment_recovery
from sagas.definitions.offboarding import LEGAL_ADDRESS, offboarding
from sagas.demo import Systems
from sagas.stores import SagaStore, store_from_url
from sagas.story import story
from sagas.testing import SagaTestKit
from tests.unit.sagas.test_offboarding import T0, World, left


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SagaStore:
    if request.param == "sqlite":
        return store_from_url(f"sqlite:{tmp_path / 'sagas.db'}")
    return store_from_url(request.getfixturevalue("postgres_dsn"))


def apps(world: World) -> list[App]:
    """The handler apps the demo runs, on ``world``'s systems."""
    return Systems(world.directory, world.licenses, world.mailer, world.payroll, world.host).apps()


async def test_two_leavers_are_offboarded_end_to_end_one_under_a_legal_hold(
    store: SagaStore,
) -> None:
    world = World()
    world.directory.create_account("e-2", "Ida Rhodes")
    async with SagaTestKit(
        offboarding, equipment_recovery, apps=apps(world), store=store, start=T0
    ) as kit:
        await kit.publish(left())
        await kit.publish(left(employee_id="e-2", full_name="Ida Rhodes", legal_hold=True))
        await kit.drain()
        open_tasks = {t.saga_id: t.step for t in await kit.tasks("charles@example.com")}
        children = [f"equipment_recovery:offboarding:{e}/recover_equipment" for e in ("e-1", "e-2")]
        assert open_tasks == dict.fromkeys(children, "recover_equipment")
        for child in children:
            await kit.complete_task(child, "recover_equipment", {"items": ["laptop"]}, "ch")
        await kit.drain()
        ada, ida = await kit.state("offboarding:e-1"), await kit.state("offboarding:e-2")
    assert (ada.status, ida.status) == (SagaStatus.COMPLETED, SagaStatus.COMPLETED)
    assert set(world.directory.accounts) == {"e-2"}  # Ida's kept for legal
    assert world.payroll.closed == {"e-1", "e-2"}
    assert [to for to, _ in world.mailer.sent] == [LEGAL_ADDRESS]
    assert "account ada.lovelace removed" in story(offboarding, ada)
    assert "account kept for legal (hold)" in story(offboarding, ida)
