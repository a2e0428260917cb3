"""The console's human tasks over HTTP (no browser): the list and its filters, a task's
generated form, bad data shown by field, a completion as the logged-in operator (audited,
applied by the coordinator), a viewer refused, a second completion refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import SagaDefinition, SagaStatus, Step, Task
from sagas.stores import SqliteSagaStore
from sagas.testing import SagaTestKit
from tests.console_client import console_client, log_in, page_text

REG = Registry()
T0 = datetime.now(UTC).replace(microsecond=0)


class Hired(Event, type="test.ctasks.hired.v1", topic="ctasks.events", key="who", registry=REG):
    who: str
    manager: str


class Wing(StrEnum):
    NORTH = "north"
    SOUTH = "south"


class DeskAssigned(Event, type="test.ctasks.desk_assigned.v1", topic="ctasks.events", registry=REG):
    desk: str
    floor: int
    wing: Wing = Wing.NORTH
    window: bool = False


class Badge(Command, type="test.ctasks.badge.v1", topic="ctasks.commands", key="who", registry=REG):
    who: str


class Badged(Event, type="test.ctasks.badged.v1", topic="ctasks.events", registry=REG):
    pass


class Hire(BaseModel):
    who: str
    manager: str
    desk: str | None = None


def manager_of(data: Hire) -> str:
    return data.manager


def remember_desk(data: Hire, form: DeskAssigned) -> Hire:
    return data.model_copy(update={"desk": f"{form.desk}@{form.floor}/{form.wing}"})


FLOW = SagaDefinition(
    name="console_desk",
    version=1,
    trigger=Hired,
    correlation_key="who",
    data=Hire,
    start=lambda e: Hire(who=e.who, manager=e.manager),
    stages=[
        Task("assign_desk", assignee=manager_of, form=DeskAssigned, deadline=timedelta(days=2),
             update=remember_desk),
        Step("badge", command=Badge, success=Badged),
    ],
)  # fmt: skip


async def _hire(path: Path, who: str, manager: str, *, start: datetime) -> None:
    async with SagaTestKit(FLOW, store=SqliteSagaStore(path), start=start) as kit:
        await kit.publish(Hired(who=who, manager=manager))
        await kit.drain()


def _task_ids(body: str) -> list[str]:
    return re.findall(r'href="/tasks/([0-9a-f-]+)"', body)


async def test_tasks_are_listed_by_assignee_and_status_with_overdue_ones_marked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sagas.db"
    await _hire(path, "ada", "bo@example.com", start=T0 - timedelta(days=3))  # due a day ago
    await _hire(path, "cy", "dee@example.com", start=T0)
    async with SqliteSagaStore(path) as store:
        client = await console_client(store, definitions=[FLOW], now=T0)
        try:
            await log_in(client, "viewer-token-1234", next="/tasks")
            everyone = await page_text(client, "/tasks")
            assert len(_task_ids(everyone)) == 2
            assert everyone.index("bo@example.com") < everyone.index("dee@example.com")  # by due
            assert everyone.count('class="overdue"') == 1
            dee = await page_text(client, "/tasks?assignee=dee%40example.com")
            assert "dee@example.com" in dee
            assert "bo@example.com" not in dee
            overdue = await page_text(client, "/tasks?status=overdue")
            assert "bo@example.com" in overdue
            assert "dee@example.com" not in overdue
            assert len(_task_ids(await page_text(client, "/tasks?status=completed"))) == 0
            saga = await page_text(client, "/sagas/console_desk:cy")
            assert 'id="task-assign_desk"' in saga  # the saga's page links its open task
            [task_id] = _task_ids(dee)
            page = await page_text(client, f"/tasks/{task_id}")
            assert 'href="/sagas/console_desk%3Acy"' in page
            assert "dee@example.com" in page
            assert 'id="viewer-note"' in page
            assert 'id="task-form"' not in page
        finally:
            await client.close()


async def test_an_operator_completes_a_task_through_its_form_once_and_the_saga_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sagas.db"
    await _hire(path, "ada", "bo@example.com", start=T0)
    async with SqliteSagaStore(path) as store:
        client = await console_client(store, definitions=[FLOW], now=T0)
        try:
            csrf = await log_in(client, "operator-token-123", next="/tasks")
            [task_id] = _task_ids(await page_text(client, "/tasks"))
            form = await page_text(client, f"/tasks/{task_id}")
            assert 'type="number"' in form
            assert 'type="checkbox"' in form
            assert "<option selected>north</option>" in form
            assert "<option >south</option>" in form
            url = f"/tasks/{task_id}/complete"

            no_csrf = await client.post(url, data={"desk": "B-1", "floor": "2"})
            assert no_csrf.status == 403
            bad = await client.post(url, data={"csrf": csrf, "desk": "", "floor": "high"})
            body = await bad.text()
            assert bad.status == 400
            assert re.search(r'id="error-floor">[^<]*valid integer', body)
            assert 'id="error-desk">Field required<' in body
            assert 'value="high"' in body  # what was typed stays
            assert (await store.get_task(task_id)).status == "open"  # type: ignore[union-attr]

            good = {"csrf": csrf, "desk": "B-204", "floor": "2", "wing": "south", "note": "ok"}
            done = await client.post(url, data=good)
            assert done.status == 200
            assert 'id="done"' in await done.text()
            row = await store.get_task(task_id)
            assert row is not None
            assert (row.status, row.completed_by) == ("completed", "alice")
            assert row.data == {"desk": "B-204", "floor": 2, "wing": "south", "window": False}
            again = await client.post(url, data=good)
            assert again.status == 409
            assert "already completed by alice" in await again.text()
            saga = await page_text(client, "/sagas/console_desk:ada")
            assert "complete_task" in saga
            assert "ok" in saga
        finally:
            await client.close()
    async with SagaTestKit(FLOW, store=SqliteSagaStore(path), start=T0) as kit:
        await kit.drain()  # a coordinator applies the completion
        assert [c.who for c in kit.commands(Badge)] == ["ada"]
        await kit.reply(Badged(), saga_id="console_desk:ada")
        await kit.drain()
        state = await kit.state("console_desk:ada")
        assert state.status == SagaStatus.COMPLETED
        assert state.data["desk"] == "B-204@2/south"


async def test_a_viewer_may_not_complete_a_task(tmp_path: Path) -> None:
    path = tmp_path / "sagas.db"
    await _hire(path, "ada", "bo@example.com", start=T0)
    async with SqliteSagaStore(path) as store:
        client = await console_client(store, definitions=[FLOW], now=T0)
        try:
            csrf = await log_in(client, "viewer-token-1234", next="/tasks")
            [task_id] = _task_ids(await page_text(client, "/tasks"))
            refused = await client.post(
                f"/tasks/{task_id}/complete", data={"csrf": csrf, "desk": "B-1", "floor": "1"}
            )
            assert refused.status == 403
            assert "only an operator may act" in await refused.text()
            assert (await store.get_task(task_id)).status == "open"  # type: ignore[union-attr]
        finally:
            await client.close()
