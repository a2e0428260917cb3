"""Undoing a saga, inside a transition: stop going forward, then compensate what completed,
last first; a compensation out of attempts parks the saga for an operator.

:func:`unwind` starts it (a failure, a cancel, the deadline, or a parent undoing its
completed child); :func:`compensate_next` undoes the most recently completed step that has
a compensation, once nothing is in flight, and ends the saga when none is left;
:func:`compensation_failed` sends a compensation again or parks the saga in
``needs_attention``. Pure: no I/O, no clock (``now`` is given); the flow around it is
:class:`sagas.run.Run`'s.

Example::

    unwind(run, "cancel", "hire withdrawn")
    run.transition()        # the compensations to send, or the saga ended
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sagas.children import SubSaga
from sagas.draft import compensable, compensation
from sagas.stages import Member
from sagas.state import SagaStatus, StepState, StepStatus
from sagas.task_stage import Task
from sagas.taskflow import cancel_open_task
from sagas.waits import Delay, Wait

if TYPE_CHECKING:  # sagas.run imports this module
    from sagas.run import Run

__all__ = ["Cause", "compensate_next", "compensation_failed", "unwind"]

#: What started compensation (``SagaState.cause``); ``parent``: a completed child undone.
Cause = Literal["failure", "cancel", "deadline", "parent"]


def unwind(run: Run, cause: Cause, reason: str) -> None:
    """Stop going forward; compensate once the steps in flight settle."""
    run.s.status = SagaStatus.COMPENSATING
    run.s.cause = cause
    run.s.reason = reason
    run.log("cancelling" if cause == "cancel" else "compensating", detail=reason)
    for st in run.s.steps.values():
        spec = run.d.steps[st.name]
        if st.status == StepStatus.RUNNING and isinstance(spec, SubSaga):
            run.cancel_child(st, spec, reason)
        elif st.status == StepStatus.RUNNING and _idle(spec, st):
            st = run.own(st.name)
            st.status = StepStatus.ABANDONED
            run.disarm(st)
            spec = run.d.steps[st.name]
            if isinstance(spec, Task):
                cancel_open_task(run, st, spec)
            run.log("abandoned", st.name)
    if not run.in_flight():
        compensate_next(run)


def compensate_next(run: Run) -> None:
    """Undo the most recently completed step that has a compensation, or finish."""
    todo = [
        st
        for st in run.s.steps.values()
        if (st.status == StepStatus.COMPLETED or (st.status == StepStatus.FAILED and st.uncertain))
        and compensable(run.d.steps[st.name])
    ]
    if todo:
        st = run.own(max(todo, key=lambda s: s.completed_seq or 0).name)
        if isinstance(child := run.d.steps[st.name], SubSaga):
            run.compensate_child(st, child)  # the child undoes itself
            return
        budget = compensation(run.d.steps[st.name]).max_attempts
        st.compensation_attempt_limit = st.compensation_attempts + budget  # re-runs sent some
        run.send_compensation(st)
        return
    if run.s.cause == "cancel":
        run.s.status = SagaStatus.CANCELLED
    elif run.s.cause == "parent" or any(
        st.status == StepStatus.COMPENSATED for st in run.s.steps.values()
    ):
        run.s.status = SagaStatus.COMPENSATED
    else:
        run.s.status = SagaStatus.FAILED
    run.log(run.s.status.value, detail=run.s.reason or "")


def compensation_failed(run: Run, st: StepState, why: str, *, after_timeout: bool = False) -> None:
    if st.compensation_attempts < st.compensation_attempt_limit:
        run.send_compensation(st, after_timeout=after_timeout)
        return
    st = run.own(st.name)
    st.error = why
    run.s.resume_status = run.s.status
    run.s.status = SagaStatus.NEEDS_ATTENTION
    run.s.attention = (
        f"compensation of step {st.name} failed after {st.compensation_attempts} "
        f"attempt(s): {why}; fix the cause, then retry the saga"
    )
    run.log("needs_attention", st.name, run.s.attention)


def _idle(spec: Member, st: StepState) -> bool:
    """A running member with nothing in flight, stopped when the saga unwinds: a wait, a
    delay, an open task, or a step held until its ``not_before`` (no command sent; a child
    saga is cancelled)."""
    return isinstance(spec, Wait | Delay | Task) or st.attempts == 0
