"""Child sagas in a transition: the mechanics of :class:`~sagas.children.SubSaga` stages.

Under :class:`sagas.run.Run`: start a child (a :class:`~sagas.children.StartChildSaga`
command, sent through the outbox), cancel a running one when the parent compensates, ask a
completed one to undo itself when the parent compensates later, take its end reports, and -
on the child's side - undo itself on that request and report each end to the parent once.
Pure: no I/O, no clock (``now`` is given).

Example::

    run.start_child(st, spec)          # StartChildSaga(child_id=..., data=...) to send
"""

from __future__ import annotations

from pydantic import BaseModel

from bus import ConfigError
from sagas.children import (
    CancelChildSaga,
    ChildSagaEnded,
    CompensateChildSaga,
    StartChildSaga,
    SubSaga,
    child_id,
)
from sagas.effects import CommandToSend, Transition, command_id
from sagas.state import SagaStatus, StepState, StepStatus
from sagas.timing import Timing
from sagas.triggers import Incoming

__all__ = ["REPORT_STEP", "ChildRuns"]

#: The "step" of the end report a child sends (not a valid step name: no collision).
REPORT_STEP = "_saga"


class ChildRuns(Timing):
    """SubSaga stages on a :class:`~sagas.draft.Draft` (the flow around them is ``Run``'s)."""

    def start_child(self, st: StepState, spec: SubSaga) -> None:
        data = spec.data(self.data)
        if not isinstance(data, BaseModel):
            raise ConfigError(
                f"saga {self.d.name!r}: sub-saga {spec.name!r} data= returned "
                f"{type(data).__qualname__}, expected the child's data model"
            )
        child = child_id(spec.saga, self.s.saga_id, spec.name)
        message = StartChildSaga(
            child_id=child,
            saga=spec.saga,
            data=data.model_dump(mode="json"),
            parent_id=self.s.saga_id,
            step=spec.name,
        )
        st = self.own(st.name)
        st.status = StepStatus.RUNNING
        st.started_at = self.now
        st.attempts = 1
        cid = command_id(self.s.saga_id, st.name, "action", 1)
        st.command_ids.append(cid)
        self.commands.append(CommandToSend(cid, st.name, message, "action", 1, cid))
        self.log("child_started", st.name, f"{child} ({spec.saga}) id {cid}")

    def cancel_child(self, st: StepState, spec: SubSaga, reason: str) -> None:
        """The parent compensates while the child runs: cancel it, await its end."""
        st = self.own(st.name)
        st.status = StepStatus.COMPENSATING
        st.compensation_attempts += 1
        child = child_id(spec.saga, self.s.saga_id, spec.name)
        cid = command_id(self.s.saga_id, st.name, "compensation", st.compensation_attempts)
        st.command_ids.append(cid)
        message = CancelChildSaga(child_id=child, reason=reason)
        self.commands.append(CommandToSend(cid, st.name, message, "compensation", 1, cid))
        self.log("child_cancelling", st.name, f"{child} id {cid}")

    def compensate_child(self, st: StepState, spec: SubSaga) -> None:
        """The parent compensates after its child completed: ask the child to undo itself
        (its compensations, last first) and await its ``compensated`` end."""
        st = self.own(st.name)
        st.status = StepStatus.COMPENSATING
        st.compensation_attempts += 1
        child = child_id(spec.saga, self.s.saga_id, spec.name)
        attempt = st.compensation_attempts
        cid = command_id(self.s.saga_id, st.name, "compensation", attempt)
        st.command_ids.append(cid)
        message = CompensateChildSaga(
            child_id=child, parent_id=self.s.saga_id, step=st.name, reason=self.s.reason or ""
        )
        self.commands.append(CommandToSend(cid, st.name, message, "compensation", attempt, cid))
        self.log("child_compensating", st.name, f"{child} completed: undo it, id {cid}")

    def undo_requested(self, incoming: Incoming) -> str:
        """A completed child asked by its parent to undo itself: noted; the reason to
        unwind with (:func:`sagas.undo.unwind`: what completed is compensated, last first,
        over the path taken; it ends ``compensated`` and reports that end)."""
        request = incoming.data
        assert isinstance(request, CompensateChildSaga)
        self.was_terminal = False  # it ends again: that end is reported too
        self.log("undo_requested", detail=f"by {request.parent_id} id {incoming.message_id}")
        return f"its parent compensates: {request.reason}"

    def child_ended(self, st: StepState, incoming: Incoming) -> None:
        """Apply the child's end report to its step (the caller moves the saga on)."""
        ended = incoming.data
        assert isinstance(ended, ChildSagaEnded)
        st = self.own(st.name)
        st.reply_ids.append(incoming.message_id)
        what = f"{ended.child_id} {ended.status}" + (f": {ended.reason}" if ended.reason else "")
        if st.status == StepStatus.COMPENSATING and ended.status == SagaStatus.COMPLETED.value:
            st.status = StepStatus.COMPLETED  # it ended before the cancel reached it
            st.completed_at = self.now
            self.s.completions += 1  # the last to complete: undone first, as any other
            st.completed_seq = self.s.completions
            self.log("completed", st.name, f"child {what} before the cancel: undone next")
        elif st.status == StepStatus.COMPENSATING:  # we cancelled it: it undid itself
            st.status = StepStatus.COMPENSATED
            st.compensated_at = self.now
            self.log("compensated", st.name, f"child {what}")
        elif ended.status == SagaStatus.COMPLETED.value:
            st.status = StepStatus.COMPLETED
            st.completed_at = self.now
            self.s.completions += 1
            st.completed_seq = self.s.completions
            self.log("completed", st.name, f"child {what}")
        else:
            st.status = StepStatus.FAILED
            st.error = f"child saga {what}"
            self.log("failed", st.name, st.error)

    def transition(self) -> Transition:
        if self.s.terminal and not self.was_terminal:
            self.report_end()  # a child tells its parent
        return super().transition()

    def report_end(self) -> None:
        """A child that just ended tells its parent (once: only the transition that ends
        it does)."""
        if self.s.parent_id is None:
            return
        step = self.s.saga_id.rpartition("/")[2]  # ids are <child>:<parent id>/<step>
        message = ChildSagaEnded(
            child_id=self.s.saga_id,
            parent_id=self.s.parent_id,
            step=step,
            status=self.s.status.value,
            reason=self.s.reason or "",
        )
        # A child undone after it completed ends twice: its second report is a new message.
        attempt = 2 if self.s.cause == "parent" else 1
        cid = command_id(self.s.saga_id, REPORT_STEP, "report", attempt)
        self.commands.append(CommandToSend(cid, REPORT_STEP, message, "report", attempt, cid))
        self.log("reported", detail=f"to {self.s.parent_id} id {cid}")
