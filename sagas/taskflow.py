"""The flow of a :class:`~sagas.task_stage.Task` step inside a transition: open, due, done.

A task is work for a person. When the saga reaches it, :func:`open_task` asks the shell to
write a task row (:class:`~sagas.effects.TaskToOpen`) with the new state and arms a durable
timer for its due time; :func:`task_due` marks the row overdue and sends the escalation
once (the task stays open); :func:`task_done` applies a completion
(:class:`~sagas.triggers.TaskDone`) and completes the step. Pure: no I/O, no clock.

Example::

    open_task(run, run.s.steps["assign_desk"], spec)
    run.transition().tasks_to_open
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from bus import ConfigError
from sagas.effects import CommandToSend, TaskToMark, TaskToOpen, command_id, task_id
from sagas.state import StepState, StepStatus
from sagas.task_stage import Task
from sagas.triggers import TaskDone

if TYPE_CHECKING:
    from sagas.run import Run

__all__ = ["form_name", "form_path", "open_task", "task_done", "task_due"]


def form_name(form: type[Any]) -> str:
    """A form's type name: its ``bus_type`` (a bus Event), else its class name."""
    name = getattr(form, "bus_type", None)
    return name if isinstance(name, str) else form.__qualname__


def form_path(form: type[Any]) -> str:
    """``module:qualname`` of a form class, to import it where the data is submitted."""
    return f"{form.__module__}:{form.__qualname__}"


def open_task(run: Run, st: StepState, spec: Task) -> None:
    """The saga reached task ``spec``: its row is written with this state, due then."""
    st = run.own(st.name)
    st.status = StepStatus.RUNNING
    st.started_at = run.now
    st.attempts = 1
    who = spec.assignee(run.data) if callable(spec.assignee) else spec.assignee
    if not isinstance(who, str) or not who:
        raise ConfigError(
            f"saga {run.d.name!r}: task {spec.name!r} assignee= gave {who!r}, expected a "
            "non-empty str (an address)"
        )
    if isinstance(spec.deadline, timedelta):
        due = run.now + spec.deadline
    else:
        due = run.time_of(spec.deadline, spec.name)
    tid = task_id(run.s.saga_id, spec.name)
    row = TaskToOpen(
        tid, run.s.saga_id, spec.name, who, form_name(spec.form), form_path(spec.form),
        run.now, due,
    )  # fmt: skip
    run.tasks_opened.append(row)
    run.arm(st, "task_due", 1, due)
    run.log("task_opened", spec.name, f"task {tid} for {who}, due {due:%Y-%m-%dT%H:%M:%SZ}")


def task_due(run: Run, st: StepState, spec: Task) -> None:
    """The task's due time passed while open: overdue (visible on its row), escalated once."""
    st = run.own(st.name)
    st.timer_id = None  # it fired: the task stays open, nothing more to fire
    st.timer_at = None
    tid = task_id(run.s.saga_id, spec.name)
    run.tasks_marked.append(TaskToMark(tid, "overdue"))
    run.log("overdue", spec.name, f"task {tid} not completed in time")
    if spec.escalate is not None:
        message = run.command_of(spec.escalate, spec.build)
        cid = command_id(run.s.saga_id, spec.name, "escalation", 1)
        run.commands.append(CommandToSend(cid, spec.name, message, "escalation", 1, cid))
        run.log("escalated", spec.name, f"{message.bus_type} id {cid}")


def task_done(run: Run, st: StepState, spec: Task, done: TaskDone) -> bool:
    """Complete the task with the submitted form; False (nothing changed but the
    timeline) when the data is not valid for the form any more (the form changed)."""
    form: type[BaseModel] = spec.form
    try:
        submitted = form.model_validate(done.data)
    except ValidationError as exc:
        run.log("task_refused", spec.name, f"task {done.task_id} by {done.actor}: {exc}")
        return False
    st = run.own(st.name)
    run.disarm(st)
    st.reply_ids.append(done.task_id)
    st.status = StepStatus.COMPLETED
    st.completed_at = run.now
    run.s.completions += 1
    st.completed_seq = run.s.completions
    run.log("completed", spec.name, f"task {done.task_id} by {done.actor}")
    if spec.update is not None:
        run.set_data(spec.update(run.data, submitted))
    return True


def cancel_open_task(run: Run, st: StepState, spec: Task) -> None:
    """The saga stops while the task is open: its row is cancelled (a late completion is
    refused by the store)."""
    run.tasks_marked.append(TaskToMark(task_id(run.s.saga_id, spec.name), "cancelled"))
