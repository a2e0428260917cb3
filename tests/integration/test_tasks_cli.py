"""``bus tasks list/complete`` against a SQLite store a coordinator wrote: a saga reaches a
task, the CLI shows it, refuses bad data naming the field, takes good data once, and the
saga goes on; a task past its due time is escalated and listed overdue."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from bus import Command, Event, Registry
from bus.cli import main
from sagas import SagaDefinition, SagaStatus, Step, Task
from sagas.stores import SqliteSagaStore
from sagas.testing import SagaTestKit

REG = Registry()
# The CLI tells overdue by the wall clock: the saga's virtual time starts now.
T0 = datetime.now(UTC).replace(microsecond=0)
SAGA = "desk_task:ada"


class Hired(Event, type="test.tasks.hired.v1", topic="tasks.events", key="who", registry=REG):
    who: str
    manager: str


class DeskAssigned(Event, type="test.tasks.desk_assigned.v1", topic="tasks.events", registry=REG):
    desk: str
    floor: int


class NotifyOverdue(
    Command, type="test.tasks.notify_overdue.v1", topic="tasks.commands", key="who", registry=REG
):
    who: str


class Badge(Command, type="test.tasks.badge.v1", topic="tasks.commands", key="who", registry=REG):
    who: str


class Badged(Event, type="test.tasks.badged.v1", topic="tasks.events", registry=REG):
    pass


class Hire(BaseModel):
    who: str
    manager: str
    desk: str | None = None


def manager_of(data: Hire) -> str:
    return data.manager


def remember_desk(data: Hire, form: DeskAssigned) -> Hire:
    return data.model_copy(update={"desk": f"{form.desk}@{form.floor}"})


FLOW = SagaDefinition(
    name="desk_task",
    version=1,
    trigger=Hired,
    correlation_key="who",
    data=Hire,
    start=lambda e: Hire(who=e.who, manager=e.manager),
    stages=[
        Task("assign_desk", assignee=manager_of, form=DeskAssigned, deadline=timedelta(days=2),
             escalate=NotifyOverdue, update=remember_desk),
        Step("badge", command=Badge, success=Badged),
    ],
)  # fmt: skip


async def _reach_the_task(path: Path, *, then: timedelta = timedelta(0)) -> list[object]:
    async with SagaTestKit(FLOW, store=SqliteSagaStore(path), start=T0) as kit:
        await kit.publish(Hired(who="ada", manager="bo@example.com"))
        await kit.drain()
        if then:
            await kit.advance(then)
        return kit.commands()


async def _carry_on(path: Path) -> tuple[SagaStatus, dict[str, object], list[object]]:
    async with SagaTestKit(FLOW, store=SqliteSagaStore(path), start=T0) as kit:
        await kit.drain()  # the coordinator applies the completion queued in the store
        sent = kit.commands()
        await kit.reply(Badged(), saga_id=SAGA)
        await kit.drain()
        state = await kit.state(SAGA)
        return state.status, state.data, sent


def tasks(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tasks", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_task_is_listed_bad_data_refused_by_field_and_good_data_lets_the_saga_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI runs its own event loop (asyncio.run), so this test is synchronous.
    path = tmp_path / "sagas.db"
    assert asyncio.run(_reach_the_task(path)) == []
    url = f"sqlite:{path}"
    code, out, _ = tasks(capsys, "list", "--store", url, "--json")
    assert code == 0
    [task] = json.loads(out)
    assert (task["saga_id"], task["step"], task["assignee"]) == (
        SAGA,
        "assign_desk",
        "bo@example.com",
    )
    assert (task["form"], task["status"], task["overdue"]) == (DeskAssigned.bus_type, "open", False)
    code, out, _ = tasks(capsys, "list", "--store", url, "--assignee", "cy@example.com")
    assert "0 task(s)" in out

    code, _, err = tasks(
        capsys, "complete", task["id"], "--store", url, "--data", '{"floor": "high"}'
    )
    assert code == 2
    assert "desk: Field required" in err
    assert "floor: Input should be a valid integer" in err
    code, _, err = tasks(capsys, "complete", task["id"], "--store", url, "--data", "[1]")
    assert code == 2
    assert "JSON object" in err

    good = '{"desk": "B-204", "floor": 2}'
    code, out, _ = tasks(capsys, "complete", task["id"], "--store", url, "--data", good,
                         "--actor", "bo@example.com")  # fmt: skip
    assert code == 0
    assert f"task {task['id']} completed by bo@example.com" in out
    code, _, err = tasks(capsys, "complete", task["id"], "--store", url, "--data", good)
    assert code == 2
    assert "already completed by bo@example.com" in err

    status, data, sent = asyncio.run(_carry_on(path))
    assert sent == [Badge(who="ada")]
    assert status == SagaStatus.COMPLETED
    assert data["desk"] == "B-204@2"
    code, out, _ = tasks(capsys, "list", "--store", url, "--all", "--json")
    [done] = json.loads(out)
    assert (done["status"], done["completed_by"], done["data"]) == (
        "completed", "bo@example.com", {"desk": "B-204", "floor": 2},
    )  # fmt: skip


def test_a_task_past_its_deadline_is_escalated_once_and_listed_overdue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sagas.db"
    sent = asyncio.run(_reach_the_task(path, then=timedelta(days=2, minutes=1)))
    assert sent == [NotifyOverdue(who="ada")]
    code, out, _ = tasks(capsys, "list", "--store", f"sqlite:{path}")
    assert code == 0
    assert "OVERDUE" in out
    assert "1 task(s); 1 overdue" in out


def test_listing_tasks_of_a_store_that_does_not_exist_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = tasks(capsys, "list", "--store", f"sqlite:{tmp_path / 'nope.db'}")
    assert code == 2
    assert "no saga store at" in err
    assert not (tmp_path / "nope.db").exists()
