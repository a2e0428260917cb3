"""Task rows in the saga store: what a :class:`~sagas.task_stage.Task` step leaves for a person.

The row is written in the transaction that stores the saga's state as the task opens
(:class:`~sagas.effects.TaskToOpen`), so a task exists exactly when its saga awaits it.
Completing it (:meth:`SagaStore.complete_task`) changes the row ``open``/``overdue`` ->
``completed`` (who, when, the data) *and* queues a ``complete_task`` request for the
coordinator in one transaction: a second completion finds the row completed and is refused,
and the completion survives any crash until a coordinator applies it. This module holds
the row type, the query, and the SQL both SQL stores share.

Example::

    rows = await store.list_tasks(TaskQuery(assignee="ana@example.com"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from sagas.effects import TaskToOpen
from sagas.stores.base import from_ms, to_ms

__all__ = [
    "OPEN",
    "TASK_COLUMNS",
    "TASK_TABLE",
    "TaskQuery",
    "TaskRow",
    "TaskStatus",
    "open_row",
    "opened_task",
    "task_from_row",
]

#: ``open``: awaiting its form; ``overdue``: still open, past its due time; ``completed``;
#: ``cancelled``: the saga stopped before it was completed.
TaskStatus = Literal["open", "overdue", "completed", "cancelled"]
#: The statuses of a task that can still be completed.
OPEN: tuple[TaskStatus, ...] = ("open", "overdue")


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task as stored (``bus tasks list`` shows them)."""

    id: str
    saga_id: str
    step: str
    assignee: str
    #: The form's type name, and ``module:qualname`` of its class.
    form: str
    form_path: str
    status: TaskStatus
    created_at: datetime
    due_at: datetime
    #: When and by whom it was completed (None until then): the audit.
    completed_at: datetime | None = None
    completed_by: str | None = None
    #: The submitted form's JSON values (None until completed).
    data: dict[str, Any] | None = None

    def overdue(self, now: datetime) -> bool:
        """Open past its due time (marked ``overdue`` once its timer fired, or not yet)."""
        return self.status == "overdue" or (self.status == "open" and self.due_at <= now)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """JSON-ready values, with ``overdue`` computed at ``now``."""
        return {
            "id": self.id, "saga_id": self.saga_id, "step": self.step,
            "assignee": self.assignee, "form": self.form, "status": self.status,
            "overdue": self.overdue(now), "created_at": self.created_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "completed_by": self.completed_by, "data": self.data,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which tasks :meth:`SagaStore.list_tasks` returns, oldest first."""

    #: Only this person's (None: everyone's).
    assignee: str | None = None
    #: Only these statuses (empty: all); default: the ones still to do.
    statuses: tuple[TaskStatus, ...] = OPEN
    limit: int = 100
    #: Only tasks after this one (a task id: the last of the previous page).
    after: str | None = None


TASK_TABLE = (
    "CREATE TABLE saga_tasks (id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, step TEXT NOT NULL,"
    " assignee TEXT NOT NULL, form TEXT NOT NULL, form_path TEXT NOT NULL,"
    " status TEXT NOT NULL, created_at_ms {int} NOT NULL, due_at_ms {int} NOT NULL,"
    " completed_at_ms {int}, completed_by TEXT, data TEXT)",
    "CREATE INDEX saga_tasks_assignee ON saga_tasks (assignee, status, created_at_ms)",
    "CREATE INDEX saga_tasks_listed ON saga_tasks (created_at_ms, id)",
    "CREATE INDEX saga_tasks_saga ON saga_tasks (saga_id)",
)
TASK_COLUMNS = (
    "id, saga_id, step, assignee, form, form_path, status, created_at_ms, due_at_ms,"
    " completed_at_ms, completed_by, data"
)


def open_row(t: TaskToOpen) -> tuple[Any, ...]:
    """The columns of a new task row, in :data:`TASK_COLUMNS` order (first nine)."""
    return (t.id, t.saga_id, t.step, t.assignee, t.form, t.form_path, "open",
            to_ms(t.created_at), to_ms(t.due_at))  # fmt: skip


def opened_task(t: TaskToOpen) -> TaskRow:
    """The row :class:`TaskToOpen` writes."""
    return TaskRow(t.id, t.saga_id, t.step, t.assignee, t.form, t.form_path, "open",
                   t.created_at, t.due_at)  # fmt: skip


def task_from_row(row: Sequence[Any]) -> TaskRow:
    """A row of ``SELECT {TASK_COLUMNS}`` as a :class:`TaskRow`."""
    completed = None if row[9] is None else from_ms(int(row[9]))
    data = None if row[11] is None else orjson.loads(row[11])
    return TaskRow(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], from_ms(int(row[7])),
        from_ms(int(row[8])), completed, row[10], data,
    )  # fmt: skip


def list_sql(query: TaskQuery, mark: Any) -> tuple[str, list[Any]]:
    """``SELECT`` for ``query``; ``mark(n)`` writes the n-th placeholder (``?`` or ``$n``)."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return str(mark(len(args)))

    where = ["1 = 1"]
    if query.statuses:
        where.append(f"status IN ({', '.join(arg(s) for s in query.statuses)})")
    if query.assignee is not None:
        where.append(f"assignee = {arg(query.assignee)}")
    if query.after is not None:
        where.append(
            "(created_at_ms, id) > (SELECT created_at_ms, id FROM saga_tasks"
            f" WHERE id = {arg(query.after)})"
        )
    sql = (
        f"SELECT {TASK_COLUMNS} FROM saga_tasks WHERE {' AND '.join(where)}"
        f" ORDER BY created_at_ms, id LIMIT {arg(query.limit)}"
    )
    return sql, args


# -- the statements, for SQLite (?) and PostgreSQL ($n) ----------------------------------

_OPEN_SQLITE = (
    "INSERT INTO saga_tasks (id, saga_id, step, assignee, form, form_path, status,"
    " created_at_ms, due_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_MARK_SQLITE = "UPDATE saga_tasks SET status = ? WHERE id = ? AND status IN ('open', 'overdue')"
_COMPLETE_SQLITE = (
    "UPDATE saga_tasks SET status = 'completed', completed_at_ms = ?, completed_by = ?,"
    " data = ? WHERE id = ? AND status IN ('open', 'overdue')"
)
OPEN_PG = (
    "INSERT INTO saga_tasks (id, saga_id, step, assignee, form, form_path, status,"
    " created_at_ms, due_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT DO NOTHING"
)
MARK_PG = "UPDATE saga_tasks SET status = $1 WHERE id = $2 AND status IN ('open', 'overdue')"
COMPLETE_PG = (
    "UPDATE saga_tasks SET status = 'completed', completed_at_ms = $1, completed_by = $2,"
    " data = $3 WHERE id = $4 AND status IN ('open', 'overdue')"
)
#: Tasks of sagas no longer stored (run after a purge of ended sagas).
PURGE_ORPHANS = (
    "DELETE FROM saga_tasks WHERE NOT EXISTS"
    " (SELECT 1 FROM saga_state s WHERE s.saga_id = saga_tasks.saga_id)"
)


def completion_args(
    task_id: str, data: dict[str, Any], actor: str, at: datetime
) -> tuple[Any, ...]:
    """The arguments of the completing ``UPDATE`` (both stores)."""
    return (to_ms(at), actor, orjson.dumps(data).decode(), task_id)


def sqlite_write_tasks(c: Any, opened: Sequence[TaskToOpen], marked: Sequence[Any]) -> None:
    """A write's task rows, on a SQLite connection inside its transaction."""
    if opened:
        c.executemany(_OPEN_SQLITE, [open_row(t) for t in opened])
    if marked:
        c.executemany(_MARK_SQLITE, [(m.status, m.id) for m in marked])


def sqlite_complete(c: Any, args: tuple[Any, ...], request_row: tuple[Any, ...]) -> bool:
    """Complete an open task and queue its request, in the caller's transaction."""
    if c.execute(_COMPLETE_SQLITE, args).rowcount != 1:
        return False
    c.execute(
        "INSERT INTO saga_requests (id, saga_id, action, reason, requested_at_ms)"
        " VALUES (?, ?, ?, ?, ?)",
        request_row,
    )
    return True


def sqlite_list(c: Any, query: TaskQuery) -> list[TaskRow]:
    sql, args = list_sql(query, lambda n: "?")
    return [task_from_row(r) for r in c.execute(sql, args).fetchall()]


def sqlite_get(c: Any, task_id: str) -> TaskRow | None:
    row = c.execute(f"SELECT {TASK_COLUMNS} FROM saga_tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else task_from_row(row)
