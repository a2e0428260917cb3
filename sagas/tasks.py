"""Tasks for people: list them, complete them (the API behind ``bus tasks`` and a console).

A :class:`~sagas.task_stage.Task` step leaves a task row in the saga store; a person completes
it by submitting data valid for its form. :func:`complete_task` validates the data (every
bad field named), then - in one store transaction - marks the row completed (who, when,
the data: the audit) and queues a ``complete_task`` request that a coordinator replica
applies to the saga, like an operator's cancel or retry. Nothing needs the broker, any
number of replicas may run, and a crash at any point leaves either nothing done or the
completion queued.

Example::

    for task in await list_tasks(store, assignee="ana@example.com"):
        print(task.id, task.step, task.due_at)
    await complete_task(store, task.id, {"desk": "B-204"}, actor="ana@example.com")
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from bus import ConfigError, new_id, utc_now
from sagas.stores.base import ControlRequest, SagaStore
from sagas.stores.task_rows import OPEN, TaskQuery, TaskRow, TaskStatus

__all__ = ["TaskQuery", "TaskRow", "complete_task", "form_class", "form_errors", "list_tasks"]


async def list_tasks(
    store: SagaStore,
    assignee: str | None = None,
    *,
    status: TaskStatus | tuple[TaskStatus, ...] | None = OPEN,
    limit: int = 100,
    after: str | None = None,
) -> list[TaskRow]:
    """Tasks oldest first: ``assignee``'s (None: everyone's), in ``status`` (default: open
    and overdue; None: any), at most ``limit``, after task id ``after`` (paging)."""
    statuses: tuple[TaskStatus, ...] = (
        () if status is None else (status,) if isinstance(status, str) else status
    )
    return await store.list_tasks(TaskQuery(assignee, statuses, limit, after))


async def complete_task(
    store: SagaStore,
    task_id: str,
    data: dict[str, Any],
    actor: str,
    *,
    now: datetime | None = None,
) -> TaskRow:
    """Complete task ``task_id`` with ``data`` as ``actor``; the completed row.

    Raises :class:`bus.ConfigError` - nothing written - for an unknown task, a task not
    open (completed already: by whom and when; cancelled), or data not valid for the form
    (each bad field named).
    """
    if not actor:
        raise ConfigError("complete_task needs the actor (who completes the task)")
    task = await store.get_task(task_id)
    if task is None:
        raise ConfigError(f"no task {task_id!r} in the store; 'bus tasks list' shows the ids")
    _refuse_closed(task)
    form = form_class(task)
    problems = form_errors(form, data)
    if problems:
        raise ConfigError(f"task {task_id}: data not valid for {task.form}: {'; '.join(problems)}")
    at = now or utc_now()
    clean = form.model_validate(data).model_dump(mode="json")
    request = ControlRequest(new_id(), task.saga_id, "complete_task", task.id, at)
    if not await store.complete_task(task.id, data=clean, actor=actor, at=at, request=request):
        again = await store.get_task(task_id)
        _refuse_closed(again or task)  # completed (or cancelled) meanwhile
        raise ConfigError(f"task {task_id} could not be completed; try again")
    done = await store.get_task(task_id)
    assert done is not None
    return done


def form_errors(form: type[BaseModel], data: Any) -> list[str]:
    """What is wrong with ``data`` for ``form``: one ``field: problem`` per bad field."""
    try:
        form.model_validate(data)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in e['loc']) or '(the data)'}: {e['msg']}"
            for e in exc.errors()
        ]
    return []


def _refuse_closed(task: TaskRow) -> None:
    if task.status == "completed":
        when = f"{task.completed_at:%Y-%m-%dT%H:%M:%SZ}" if task.completed_at else "?"
        raise ConfigError(
            f"task {task.id} was already completed by {task.completed_by} at {when}; "
            "a task is completed once"
        )
    if task.status == "cancelled":
        raise ConfigError(f"task {task.id} was cancelled: saga {task.saga_id} stopped before it")


def form_class(task: TaskRow) -> type[BaseModel]:
    """The pydantic model of ``task``'s form, imported from its ``module:qualname``.

    Raises :class:`bus.ConfigError` when it cannot be imported here.
    """
    module, _, name = task.form_path.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"task {task.id}: its form {task.form_path} cannot be imported here ({exc}); "
            "complete it where the saga's code is installed"
        ) from exc
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ConfigError(f"task {task.id}: {task.form_path} is not a pydantic model")
    return found
