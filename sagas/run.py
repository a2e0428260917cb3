"""One transition being computed: :class:`Run` changes a private copy of a saga's state.

:mod:`sagas.core` routes an input to one of its methods (a reply, a timeout, a retry, a
deadline) or to :func:`sagas.undo.unwind` (a cancel); the methods move the saga forward
(:meth:`Run.advance`, through the paths of its choices: :mod:`sagas.paths`), or back
(:mod:`sagas.undo`), and collect the commands and timers that the shell stores with the
new state (the mechanics are :class:`sagas.draft.Draft`'s). Pure: no I/O, no clock
(``now`` is given).

Example::

    run = Run(definition, state.private_copy(), now)
    run.on_reply("create_account", incoming)
    transition = run.transition()
"""

from __future__ import annotations

from sagas.child_runs import ChildRuns
from sagas.children import SubSaga
from sagas.definition import Choice, Deadline, Delay, Member, PathStage, Step, Wait
from sagas.draft import BUSY, compensation, members
from sagas.effects import CommandToSend, TimerToSet, command_id, timer_id
from sagas.paths import current_stage
from sagas.state import SagaStatus, StepState, StepStatus
from sagas.task_stage import Task
from sagas.taskflow import open_task, task_due
from sagas.triggers import Incoming
from sagas.undo import compensate_next, compensation_failed, unwind
from sagas.updates import next_rerun

__all__ = ["SAGA_TIMERS", "Run", "members"]

#: The "step" name of the saga's own timers and commands (its deadline, the escalation):
#: not a valid step name, so it never collides with one.
SAGA_TIMERS = "_saga"


class Run(ChildRuns):
    """One transition being computed: the flow (forward, retry; back: :mod:`sagas.undo`) on a
    :class:`Draft`."""

    def start_wait(self, st: StepState, spec: Wait) -> None:
        st = self.own(st.name)
        st.status = StepStatus.RUNNING
        st.started_at = self.now
        st.attempts = 1
        events = ", ".join(t.bus_type for t in spec.event)
        until = f"{self.now + spec.deadline:%Y-%m-%dT%H:%M:%SZ}"
        self.log("waiting", st.name, f"for {events} until {until}")
        early = self.take_early(st.name, spec)
        if early is not None:
            self.settle_wait(st, early)  # it came already: no deadline to arm
            return
        self.arm(st, "deadline", 1, self.now + spec.deadline)

    def settle_wait(self, st: StepState, incoming: Incoming) -> None:
        """Complete or fail a wait on its event (without moving on: the caller does)."""
        st = self.own(st.name)
        st.reply_ids.append(incoming.message_id)
        spec = self.d.steps[st.name]
        assert isinstance(spec, Wait)
        if any(incoming.type == t.bus_type for t in spec.event):
            self.complete_step(st, incoming)
        else:
            self.fail_step(st, f"failure reply {incoming.type} {incoming.message_id}")

    # -- moving forward ----------------------------------------------------------------

    def advance(self) -> None:
        """Start the next stages until one is in flight or the saga is complete."""
        while self.s.status == SagaStatus.RUNNING:
            stage = current_stage(self)
            if stage is None:
                self.s.status = SagaStatus.COMPLETED
                self.log("completed")
                return
            steps = [self.s.steps[m.name] for m in members(stage)]
            if self.in_flight():  # this stage's, or a step re-run after an update
                return
            if all(st.status == StepStatus.PENDING for st in steps):
                self.launch(stage)
                continue
            # every member completed or skipped
            if isinstance(self.d.stages[self.s.stage], Choice):
                self.s.substage += 1
            else:
                self.s.stage += 1

    def launch(self, stage: PathStage) -> None:
        if stage.when is not None and not stage.when(self.data):
            for m in members(stage):
                self.skip(m, stage.when.__name__)
            return
        for m in members(stage):
            st = self.s.steps[m.name]
            if isinstance(m, Wait):
                self.start_wait(st, m)
            elif isinstance(m, Delay):
                self.start_delay(st, m)
            elif isinstance(m, Task):
                if m.when is not None and not m.when(self.data):
                    self.skip(m, m.when.__name__)
                else:
                    open_task(self, st, m)
            elif isinstance(m, SubSaga):
                self.start_child(st, m)
            elif m.when is not None and not m.when(self.data):
                self.skip(m, m.when.__name__)
            else:
                st = self.own(m.name)
                st.attempt_limit = m.max_attempts
                at = self.time_of(m.not_before, m.name) if m.not_before else None
                if at is not None and at > self.now:
                    self.hold(st, at, m)
                else:
                    self.send_action(st)

    def send_again(self, st: StepState) -> None:
        """Run a completed (and undone) step again, with a fresh budget of attempts."""
        spec = self.d.steps[st.name]
        assert isinstance(spec, Step)
        st = self.own(st.name)
        st.completed_seq = None
        st.completed_at = None
        st.attempt_limit = st.attempts + spec.max_attempts
        self.send_action(st)

    def skip(self, m: Member, predicate: str) -> None:
        self.own(m.name).status = StepStatus.SKIPPED
        self.log("skipped", m.name, f"{predicate} is false")

    def complete_step(self, st: StepState, incoming: Incoming) -> None:
        st = self.own(st.name)
        st.status = StepStatus.COMPLETED
        st.completed_at = self.now
        self.s.completions += 1
        st.completed_seq = self.s.completions
        self.log("completed", st.name, f"{incoming.type} {incoming.message_id}")
        spec = self.d.steps[st.name]
        if isinstance(spec, Step | Wait) and spec.update is not None:
            self.set_data(spec.update(self.data, incoming.data))

    def fail_step(self, st: StepState, why: str) -> None:
        st = self.own(st.name)
        st.status = StepStatus.FAILED
        st.error = why
        self.log("failed", st.name, why)
        if self.s.status == SagaStatus.RUNNING:
            unwind(self, "failure", f"step {st.name} failed: {why}")

    def settled(self) -> None:
        """A step stopped running: go on, or compensate once nothing is in flight."""
        if self.s.status == SagaStatus.RUNNING:
            self.advance()
        elif self.s.status == SagaStatus.COMPENSATING and not self.in_flight():
            compensate_next(self)

    # -- events ------------------------------------------------------------------------

    def on_reply(self, name: str, incoming: Incoming) -> None:
        st = self.own(name)
        spec = self.d.steps[name]
        st.reply_ids.append(incoming.message_id)
        self.disarm(st)
        if st.status == StepStatus.COMPENSATING:
            undone = any(incoming.type == t.bus_type for t in compensation(spec).success)
            if undone and self.s.status == SagaStatus.RUNNING:  # undone to be run again
                self.log("compensated_for_rerun", name, f"{incoming.type} {incoming.message_id}")
                self.send_again(st)
                next_rerun(self)
            elif undone:
                st.status = StepStatus.COMPENSATED
                st.compensated_at = self.now
                self.log("compensated", name, f"{incoming.type} {incoming.message_id}")
                self.settled()  # a step in flight when a re-run's undo began still settles
            else:
                compensation_failed(self, st, f"failure reply {incoming.type}")
            return
        assert not isinstance(spec, Delay | Task | SubSaga)  # routed elsewhere, or no event
        ok = spec.event if isinstance(spec, Wait) else spec.success
        if any(incoming.type == t.bus_type for t in ok):
            self.complete_step(st, incoming)
        else:
            why = f"failure reply {incoming.type} {incoming.message_id}"
            reason = getattr(incoming.data, "reason", None)  # the business answer, kept
            self.fail_step(st, f"{why}: {reason}" if isinstance(reason, str) and reason else why)
        self.settled()

    def on_timeout(self, name: str) -> None:
        st = self.own(name)
        spec = self.d.steps[name]
        st.timer_id = None  # it fired: nothing left to cancel
        st.timer_at = None
        if st.status == StepStatus.COMPENSATING:
            self.log("timed_out", name, f"compensation attempt {st.compensation_attempts}")
            why = f"no reply within {compensation(spec).timeout}"
            compensation_failed(self, st, why, after_timeout=True)
            return
        if isinstance(spec, Wait):
            self.fail_step(st, f"deadline {spec.deadline} passed")
        elif isinstance(spec, Delay):
            self.delay_done(st, "the time came")
        elif isinstance(spec, Task):
            task_due(self, st, spec)  # overdue: it stays open
            return
        elif st.attempts == 0:  # held until its not_before: now send it
            self.send_action(st)
            return
        else:
            assert isinstance(spec, Step)  # a child saga arms no timer
            self.log("timed_out", name, f"attempt {st.attempts}")
            if st.attempts < st.attempt_limit:
                self.send_action(st, after_timeout=True)
                return
            self.give_up(st, f"no reply after {st.attempts} attempt(s) of {spec.timeout}")
        self.settled()

    def give_up(self, st: StepState, why: str) -> None:
        """A step out of attempts failed, but any of its commands may have taken effect
        (a lost reply, a slow handler): it is *uncertain*, and compensated like a completed
        step, in the order it settled (compensations are safe for what never happened)."""
        st = self.own(st.name)
        st.uncertain = True
        self.s.completions += 1
        st.completed_seq = self.s.completions
        self.fail_step(st, why)

    def note_late_reply(self, name: str, incoming: Incoming) -> None:
        """A reply to a step given up as uncertain, after the saga decided: recorded (its id
        too, so a duplicate changes nothing), the decision stands; a success means the
        effect did happen, which the step's compensation undoes (or has undone)."""
        st = self.own(name)
        st.reply_ids.append(incoming.message_id)
        spec = self.d.steps[name]
        assert isinstance(spec, Step)
        if any(incoming.type == t.bus_type for t in spec.success):
            undo = "its compensation undoes it" if spec.compensation else "nothing undoes it"
            what = f"it took effect after all; {undo}"
        else:
            what = "it did not take effect"
        self.log("late_reply", name, f"{incoming.type} {incoming.message_id}: {what}")
        self.noted_only = True

    # -- the saga's deadline ------------------------------------------------------------

    def set_deadline(self, deadline: Deadline) -> None:
        at = self.time_of(deadline.at, "deadline")
        self.s.deadline_at = at
        self.s.deadline_timer = timer_id(self.s.saga_id, SAGA_TIMERS, "deadline", 1)
        self.timers.append(TimerToSet(self.s.deadline_timer, self.s.saga_id, at))
        self.log("deadline", detail=f"late after {at:%Y-%m-%dT%H:%M:%SZ} ({deadline.at.__name__})")

    def on_deadline(self, deadline: Deadline) -> None:
        """The saga is late: flag it, escalate once, and compensate only if told to."""
        self.s.deadline_timer = None  # it fired
        self.s.late = True
        at = self.s.deadline_at or self.now
        why = f"deadline {at:%Y-%m-%dT%H:%M:%SZ} passed while {self.s.status.value}"
        self.log("late", detail=why)
        if deadline.escalate is not None:
            message = self.command_of(deadline.escalate, deadline.build)
            cid = command_id(self.s.saga_id, SAGA_TIMERS, "escalation", 1)
            self.commands.append(CommandToSend(cid, SAGA_TIMERS, message, "escalation", 1, cid))
            self.log("escalated", detail=f"{message.bus_type} id {cid}")
        if deadline.compensate and self.s.status == SagaStatus.RUNNING:
            unwind(self, "deadline", why)

    # -- an operator's retry -----------------------------------------------------------

    def retry(self, reason: str) -> None:
        """Resume a parked instance: re-send everything awaited with a fresh budget."""
        self.s.status = self.s.resume_status or SagaStatus.RUNNING
        self.s.resume_status = None
        self.s.attention = None
        self.log("retried", detail=reason)
        for st in self.s.steps.values():
            spec = self.d.steps[st.name]
            st = self.own(st.name) if st.status in BUSY else st
            if st.status == StepStatus.RUNNING and isinstance(spec, Wait):
                st.attempts += 1
                self.arm(st, "deadline", st.attempts, st.timer_at or self.now)
            elif st.status == StepStatus.RUNNING and isinstance(spec, Delay):
                st.attempts += 1
                self.arm(st, "delay", st.attempts, st.timer_at or self.now)
            elif st.status == StepStatus.RUNNING and isinstance(spec, Task):
                if st.timer_at is not None:  # not yet overdue: its due time armed again
                    st.attempts += 1
                    self.arm(st, "task_due", st.attempts, st.timer_at)
            elif st.status == StepStatus.RUNNING and isinstance(spec, Step) and not st.attempts:
                # held: armed again under its own id (a store moves a timer set again)
                self.arm(st, "not_before", 1, st.timer_at or self.now)
            elif st.status == StepStatus.RUNNING and isinstance(spec, Step):
                st.attempt_limit = st.attempts + spec.max_attempts
                self.send_action(st)
            elif st.status == StepStatus.COMPENSATING and isinstance(spec, Step):
                extra = compensation(spec).max_attempts
                st.compensation_attempt_limit = st.compensation_attempts + extra
                self.send_compensation(st)
        if not self.in_flight():
            self.settled_after_retry()

    def settled_after_retry(self) -> None:
        if self.s.status == SagaStatus.RUNNING:
            self.advance()
        elif self.s.status == SagaStatus.COMPENSATING:
            compensate_next(self)
