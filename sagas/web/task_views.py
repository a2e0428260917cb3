"""Human tasks in the console: the list (by assignee, by due time), a task's page, its form.

A task's form is generated from its pydantic model (:mod:`sagas.web.task_forms`), the
posted values validated by the model (each problem shown next to its field) and the task
completed through :func:`sagas.tasks.complete_task` as the logged-in operator, with an
audit record on the saga like every other action.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel

from bus import ConfigError
from sagas.effects import task_id
from sagas.state import SagaState, StepStatus
from sagas.stores.base import SagaStore
from sagas.stores.task_rows import OPEN, TaskRow, TaskStatus
from sagas.tasks import complete_task, form_class, list_tasks
from sagas.web.context import CONSOLE, Console
from sagas.web.pages import operator_session, render, viewer_session
from sagas.web.task_forms import FormField, field_errors, form_fields, parsed_form

__all__ = ["PAGE_SIZE", "STATUSES", "add_routes", "saga_tasks"]

PAGE_SIZE = 100
#: The status filter's choices: which stored statuses each lists.
STATUSES: dict[str, tuple[TaskStatus, ...]] = {
    "open": OPEN,
    "overdue": OPEN,  # open past due, marked or not yet: filtered by time below
    "completed": ("completed",),
    "cancelled": ("cancelled",),
    "any": (),
}
#: The list's orders (within a page: the store pages by creation).
ORDERS = {"due": "due first", "assignee": "by assignee"}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/tasks", tasks_list)
    router.add_get("/tasks/{task_id}", task_page)
    router.add_post("/tasks/{task_id}/complete", task_complete)


async def saga_tasks(store: SagaStore, state: SagaState) -> list[TaskRow]:
    """The tasks of ``state``'s running steps (a step that is no task has no row)."""
    running = [n for n, s in state.steps.items() if s.status == StepStatus.RUNNING]
    rows = [await store.get_task(task_id(state.saga_id, name)) for name in running]
    return [r for r in rows if r is not None]


async def tasks_list(request: web.Request) -> web.StreamResponse:
    """Tasks filtered by assignee and status, a page at a time, ordered by due time."""
    viewer_session(request)
    console = request.app[CONSOLE]
    q = request.query
    status = q.get("status", "open")
    status = status if status in STATUSES else "open"
    order = q.get("order", "due")
    order = order if order in ORDERS else "due"
    assignee = q.get("assignee", "").strip() or None
    rows = await list_tasks(
        console.store, assignee, status=STATUSES[status], limit=PAGE_SIZE, after=q.get("after")
    )
    now = console.now()
    shown = [r for r in rows if status != "overdue" or r.overdue(now)]
    if order == "assignee":
        shown.sort(key=lambda r: (r.assignee, r.due_at))
    else:
        shown.sort(key=lambda r: r.due_at)
    kept = {"assignee": assignee or "", "status": status, "order": order}
    next_query = None
    if len(rows) == PAGE_SIZE:
        next_query = urlencode({**{k: v for k, v in kept.items() if v}, "after": rows[-1].id})
    return render(
        request, "tasks.html", tasks=[_row(r, console) for r in shown], query=kept,
        statuses=list(STATUSES), orders=ORDERS, next_query=next_query,
    )  # fmt: skip


def _row(task: TaskRow, console: Console) -> dict[str, Any]:
    now = console.now()
    return {
        "id": task.id, "saga_id": task.saga_id, "step": task.step, "assignee": task.assignee,
        "form": task.form, "status": task.status, "overdue": task.overdue(now),
        "due": f"{task.due_at:%Y-%m-%d %H:%M}", "created": f"{task.created_at:%Y-%m-%d %H:%M}",
    }  # fmt: skip


async def task_page(request: web.Request) -> web.StreamResponse:
    viewer_session(request)
    task = await _task(request)
    return _render_task(request, task, values=None, errors={})


async def task_complete(request: web.Request) -> web.StreamResponse:
    """Validate the posted form against the task's model and complete the task."""
    session = operator_session(request)
    console = request.app[CONSOLE]
    task = await _task(request)
    back = f"/tasks/{task.id}"
    try:
        form = form_class(task)
    except ConfigError as exc:
        return render(request, "error.html", status=409, message=str(exc), back=back)
    posted = {k: str(v) for k, v in (await request.post()).items()}
    fields = form_fields(form)
    data, unparsable = parsed_form(fields, posted)
    errors = {**field_errors(form, data), **unparsable}
    if errors:
        return _render_task(request, task, values=posted, errors=errors, status=400)
    actor = session.principal.subject
    try:
        done = await complete_task(console.store, task.id, data, actor, now=console.now())
    except ConfigError as exc:
        return render(request, "error.html", status=409, message=str(exc), back=back)
    note = posted.get("note", "").strip() or f"completed task {task.step}"
    await console.audit(
        session, "complete_task", task.saga_id, note, task=task.id, step=task.step, data=done.data
    )
    raise web.HTTPSeeOther(f"{back}?done=complete")


async def _task(request: web.Request) -> TaskRow:
    wanted = request.match_info["task_id"]
    task = await request.app[CONSOLE].store.get_task(wanted)
    if task is None:
        raise web.HTTPNotFound(text=f"no task {wanted!r}")
    return task


def _render_task(
    request: web.Request,
    task: TaskRow,
    *,
    values: dict[str, str] | None,
    errors: dict[str, str],
    status: int = 200,
) -> web.Response:
    console = request.app[CONSOLE]
    fields: list[FormField] = []
    problem = None
    form: type[BaseModel] | None = None
    if task.status in OPEN:
        try:
            form = form_class(task)
            fields = form_fields(form)
        except ConfigError as exc:
            problem = str(exc)
    return render(
        request, "task.html", status=status, task=_row(task, console), row=task,
        fields=fields, values=values, errors=errors, problem=problem,
        done=request.query.get("done") == "complete",
        form_schema=form.__name__ if form else task.form,
    )  # fmt: skip
