"""``bus tasks ...``: the tasks sagas leave for people - list them, complete them.

Registered through the ``bus.cli`` entry point like ``bus sagas`` (bus cannot import
sagas). Both commands talk to the saga store only (``--store`` or ``BUS_SAGA_STORE``), and
never create one: a mistyped path is an error, not an empty list. ``complete`` validates
the data against the task's form (exit 2 naming every bad field) and queues the completion
for the coordinator in the same transaction that marks the task completed.

Example::

    bus tasks list --assignee ana@example.com
    bus tasks complete 5f0c... --data '{"desk": "B-204"}' --actor ana@example.com
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer

from bus import BusConfig, ConfigError, utc_now
from sagas.cli_common import Invoke, print_json, with_store
from sagas.stores.task_rows import OPEN, TaskRow
from sagas.tasks import complete_task, list_tasks

__all__ = ["register"]

_STORE_HELP = "saga store: sqlite:PATH, postgresql://... (BUS_SAGA_STORE; default sqlite:sagas.db)"
StoreOption = Annotated[str | None, typer.Option(help=_STORE_HELP, show_default=False)]


def register(
    app: typer.Typer,
    *,
    transport_options: Callable[..., Any],
    make_transport: Callable[..., Any],
    invoke: Invoke,
) -> None:
    """Add ``list`` and ``complete`` to ``app``, bus's ``tasks`` group (``bus.cli`` entry
    point; the transport helpers are unused: tasks need the store only)."""
    app.info.help = "Tasks sagas wait on people for: list them, complete them with a form."
    app.info.short_help = "tasks for people: list, complete"

    @app.command("list", help="Open tasks, oldest first (overdue ones marked).")
    def listing(
        assignee: Annotated[str | None, typer.Option(help="only this person's tasks")] = None,
        all_: Annotated[
            bool, typer.Option("--all", help="completed and cancelled tasks too")
        ] = False,
        limit: Annotated[int, typer.Option(help="at most this many")] = 100,
        after: Annotated[str | None, typer.Option(help="only tasks after this task id")] = None,
        json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
        store: StoreOption = None,
    ) -> int:
        return invoke(
            _list, assignee=assignee, all=all_, limit=limit, after=after, json=json, store=store
        )

    @app.command("complete", help="Complete a task with data valid for its form (JSON).")
    def complete(
        task_id: Annotated[str, typer.Argument(metavar="ID")],
        data: Annotated[str, typer.Option(help="the form's fields as a JSON object")],
        actor: Annotated[
            str | None, typer.Option(help="who completes it (default: the login name)")
        ] = None,
        json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
        store: StoreOption = None,
    ) -> int:
        return invoke(_complete, task_id=task_id, data=data, actor=actor, json=json, store=store)


def _list(args: argparse.Namespace, config: BusConfig) -> int:
    status = None if args.all else OPEN
    rows = with_store(
        args,
        lambda s: list_tasks(s, args.assignee, status=status, limit=args.limit, after=args.after),
    )
    now = utc_now()
    if args.json:
        print_json([t.to_dict(now) for t in rows])
        return 0
    for t in rows:
        print(_line(t, now))
    print(f"{len(rows)} task(s); {sum(t.overdue(now) for t in rows)} overdue")
    return 0


def _line(t: TaskRow, now: Any) -> str:
    status = "OVERDUE" if t.overdue(now) else t.status
    done = f" by {t.completed_by}" if t.completed_by else ""
    return (
        f"{t.id}  {status:<9} {t.assignee:<24} {t.saga_id}/{t.step}  {t.form}"
        f"  due {t.due_at:%Y-%m-%dT%H:%M:%SZ}{done}"
    )


def _complete(args: argparse.Namespace, config: BusConfig) -> int:
    try:
        data = orjson.loads(args.data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("--data must be a JSON object of the form's fields")
    actor = args.actor or getpass.getuser()
    done = with_store(args, lambda s: complete_task(s, args.task_id, data, actor))
    if args.json:
        print_json(done.to_dict(utc_now()))
    else:
        print(f"task {done.id} completed by {done.completed_by}; saga {done.saga_id} goes on")
    return 0
