"""The task table's contract on every SagaStore: memory, SQLite and PostgreSQL.

Task rows are written with the saga's state (one transaction), completed once with the
request that carries the completion to the coordinator, marked overdue or cancelled only
while open, listed by assignee and status in pages, and purged with their saga.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

from sagas import SagaStatus
from sagas.effects import TaskToMark, TaskToOpen
from sagas.stores import ControlRequest, RevisionConflictError, SagaWrite
from sagas.stores.task_rows import TaskQuery
from tests.contract.test_saga_store import T0, Backend, backend, durable_backend, state

__all__ = ["backend", "durable_backend"]  # the fixtures, shared with test_saga_store


def opened(n: int, *, saga_id: str = "demo:1", assignee: str = "ana@example.com") -> TaskToOpen:
    return TaskToOpen(
        f"task-{n}", saga_id, f"step_{n}", assignee, "demo.form.v1", "demo.forms:Form",
        T0 + timedelta(minutes=n), T0 + timedelta(days=1),
    )  # fmt: skip


def request(task: str, saga_id: str = "demo:1") -> ControlRequest:
    return ControlRequest(f"r-{task}", saga_id, "complete_task", task, T0)


async def test_a_task_row_is_written_with_the_saga_state_and_reads_back(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, tasks_to_open=(opened(1),)))
    task = await store.get_task("task-1")
    assert task is not None
    assert (task.saga_id, task.step, task.assignee, task.form, task.form_path) == (
        "demo:1", "step_1", "ana@example.com", "demo.form.v1", "demo.forms:Form",
    )  # fmt: skip
    assert (task.status, task.created_at, task.due_at) == ("open", T0 + timedelta(minutes=1),
                                                           T0 + timedelta(days=1))  # fmt: skip
    assert (task.completed_at, task.completed_by, task.data) == (None, None, None)
    assert await store.get_task("task-404") is None


async def test_a_write_that_conflicts_writes_no_task_row(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0))
    with contextlib.suppress(RevisionConflictError):
        await store.save(SagaWrite(state(step=1), 0, tasks_to_open=(opened(1),)))
    assert await store.get_task("task-1") is None


async def test_completing_a_task_records_who_and_queues_its_request_once(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, tasks_to_open=(opened(1),)))
    at = T0 + timedelta(hours=2)
    data = {"desk": "B-204", "floor": 2, "note": "é"}
    assert await store.complete_task(
        "task-1", data=data, actor="bo", at=at, request=request("task-1")
    )
    task = await store.get_task("task-1")
    assert task is not None
    assert (task.status, task.completed_by, task.completed_at, task.data) == (
        "completed",
        "bo",
        at,
        data,
    )
    assert [(r.action, r.reason) for r in await store.pending_requests(limit=10)] == [
        ("complete_task", "task-1")
    ]
    again = replace(request("task-1"), id="r-again")
    assert not await store.complete_task("task-1", data={}, actor="cy", at=at, request=again)
    assert not await store.complete_task("task-404", data={}, actor="cy", at=at, request=again)
    assert len(await store.pending_requests(limit=10)) == 1
    task = await store.get_task("task-1")
    assert task is not None
    assert task.completed_by == "bo"


async def test_marks_change_open_tasks_only(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, tasks_to_open=(opened(1), opened(2))))
    await store.complete_task("task-2", data={}, actor="bo", at=T0, request=request("task-2"))
    marks = (TaskToMark("task-1", "overdue"), TaskToMark("task-2", "cancelled"))
    await store.save(SagaWrite(state(step=1), 1, tasks_to_mark=marks))
    one, two = await store.get_task("task-1"), await store.get_task("task-2")
    assert one is not None
    assert one.status == "overdue"
    assert one.overdue(T0)
    assert two is not None
    assert two.status == "completed"
    # an overdue task can still be completed
    assert await store.complete_task(
        "task-1", data={}, actor="bo", at=T0, request=request("task-1")
    )
    await store.save(
        SagaWrite(state(step=2), 2, tasks_to_mark=(TaskToMark("task-1", "cancelled"),))
    )
    one = await store.get_task("task-1")
    assert one is not None
    assert one.status == "completed"


async def test_a_cancelled_task_cannot_be_completed(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state(), 0, tasks_to_open=(opened(1),)))
    await store.save(
        SagaWrite(state(step=1), 1, tasks_to_mark=(TaskToMark("task-1", "cancelled"),))
    )
    assert not await store.complete_task(
        "task-1", data={}, actor="bo", at=T0, request=request("task-1")
    )
    assert await store.pending_requests(limit=10) == []


async def test_tasks_list_oldest_first_by_assignee_and_status_in_pages(backend: Backend) -> None:
    store = await backend.store()
    rows = (opened(3), opened(1), opened(2, assignee="bo@example.com"), opened(4))
    await store.save(SagaWrite(state(), 0, tasks_to_open=rows))
    await store.complete_task("task-4", data={}, actor="ana", at=T0, request=request("task-4"))

    async def ids(query: TaskQuery) -> list[str]:
        return [t.id for t in await store.list_tasks(query)]

    assert await ids(TaskQuery()) == ["task-1", "task-2", "task-3"]
    assert await ids(TaskQuery(assignee="ana@example.com")) == ["task-1", "task-3"]
    assert await ids(TaskQuery(statuses=("completed",))) == ["task-4"]
    assert await ids(TaskQuery(statuses=())) == ["task-1", "task-2", "task-3", "task-4"]
    assert await ids(TaskQuery(limit=2)) == ["task-1", "task-2"]
    assert await ids(TaskQuery(limit=2, after="task-2")) == ["task-3"]


async def test_purging_an_ended_saga_removes_its_tasks(backend: Backend) -> None:
    store = await backend.store()
    await store.save(SagaWrite(state("demo:1"), 0, tasks_to_open=(opened(1),)))
    await store.save(SagaWrite(state("demo:2"), 0, tasks_to_open=(opened(2, saga_id="demo:2"),)))
    await store.save(SagaWrite(state("demo:1", status=SagaStatus.COMPLETED, step=1), 1))
    assert await store.purge_finished(T0 + timedelta(days=1)) == 1
    assert await store.get_task("task-1") is None
    assert await store.get_task("task-2") is not None


async def test_tasks_survive_reopening_the_database(durable_backend: Backend) -> None:
    store = await durable_backend.store()
    await store.save(SagaWrite(state(), 0, tasks_to_open=(opened(1),)))
    await store.complete_task(
        "task-1", data={"a": [1]}, actor="bo", at=T0, request=request("task-1")
    )
    await store.close()
    again = await durable_backend.store()
    task = await again.get_task("task-1")
    assert task is not None
    assert (task.status, task.data) == ("completed", {"a": [1]})
