"""The :class:`Task` stage: work for a person, completed by a form (a task row in the store).

What happens to it inside a transition is :mod:`sagas.taskflow`'s; its row is
:mod:`sagas.stores.task_rows`'s; ``bus tasks`` and :mod:`sagas.tasks` complete it.

Example::

    Task("assign_desk", assignee=lambda d: d.manager_email, form=DeskAssigned,
         deadline=timedelta(days=2))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bus import Command
from sagas.stage_types import Builder, Predicate, Schedule, Updater
from sagas.step import Compensation

__all__ = ["Task"]


@dataclass(frozen=True, slots=True, init=False)
class Task:
    """Work for a person, not a system: a task row in the saga store, completed by a form.

    Example::

        Task("assign_desk", assignee=lambda d: d.manager_email, form=DeskAssigned,
             deadline=timedelta(days=2), escalate=NotifyDeskOverdue, update=remember_desk)

    When the saga reaches it, a task row (id, saga, step, assignee, form, created, due,
    status ``open``) is written with the saga's state. ``bus tasks complete`` (or
    :func:`sagas.tasks.complete_task`) validates data against ``form``, marks the row
    completed (who, when) and queues the completion for the coordinator, which applies it
    (``update``) and goes on. Past ``deadline`` the task is ``overdue`` and ``escalate`` is
    sent once; it stays open. A cancel or a failure elsewhere cancels an open task; a
    completed one is undone by its ``compensation``, if any.
    """

    #: Unique within the definition; lowercase ``snake_case``.
    name: str
    #: Who does it: an address, or a function of the saga data giving one.
    assignee: str | Callable[[Any], str]
    #: The pydantic model (a bus Event, typically) the submitted data must be valid for.
    form: type[Any]
    #: How long after the task opens it is due (or a named ``(data, now) -> datetime``).
    deadline: timedelta | Schedule
    #: The command sent once when the task becomes overdue (None: only the flag).
    escalate: type[Command] | None
    #: Builds ``escalate`` from the saga data; default: its fields taken by name.
    build: Builder | None
    #: ``(data, form) -> data``: how the submitted form updates the saga data.
    update: Updater | None
    #: How to undo the completed task (None: nothing to undo).
    compensation: Compensation | None
    #: A named predicate on the saga data; False skips the task.
    when: Predicate | None

    def __init__(
        self,
        name: str,
        *,
        assignee: str | Callable[[Any], str],
        form: type[Any],
        deadline: timedelta | Schedule,
        escalate: type[Command] | None = None,
        build: Builder | None = None,
        update: Updater | None = None,
        compensation: Compensation | None = None,
        when: Predicate | None = None,
    ) -> None:
        for key, value in (("name", name), ("assignee", assignee), ("form", form),
                           ("deadline", deadline), ("escalate", escalate), ("build", build),
                           ("update", update), ("compensation", compensation),
                           ("when", when)):  # fmt: skip
            object.__setattr__(self, key, value)
