"""One transition being computed: :class:`Run` changes a private copy of a saga's state.

:mod:`sagas.core` routes an input to one of its methods (a reply, a timeout, a cancel, a
retry); the methods move the saga forward (:meth:`Run.advance`), or back
(:meth:`Run.unwind`, :meth:`Run.compensate_next`), and collect the commands and timers
that the shell stores with the new state. Pure: no I/O, no clock (``now`` is given).

Example::

    run = Run(definition, state.private_copy(), now)
    run.on_reply("create_account", incoming)
    transition = run.transition()
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from bus import ConfigError
from sagas.definition import (
    Choice,
    Compensation,
    Parallel,
    PathStage,
    SagaDefinition,
    Step,
    Wait,
)
from sagas.effects import CommandKind, CommandToSend, TimerToSet, Transition, command_id, timer_id
from sagas.state import EarlySignal, HistoryEntry, SagaState, SagaStatus, StepState, StepStatus
from sagas.triggers import Incoming

__all__ = ["Run", "members"]


class Run:
    """One transition being computed, on a private copy of the state."""

    def __init__(
        self, definition: SagaDefinition, state: SagaState, now: datetime, *, fresh: bool = False
    ) -> None:
        self.d = definition
        self.s = state
        self.now = now
        self.commands: list[CommandToSend] = []
        #: Steps this transition copied (the others are still the input state's, read-only);
        #: ``fresh``: the state was built for this transition, so every step is its own.
        self._owned: set[str] = set(state.steps) if fresh else set()
        self.timers: list[TimerToSet] = []
        self.cancelled: list[str] = []
        self._data: BaseModel | None = None
        #: The transition only notes something in the timeline (a late reply): the saga's
        #: own progress, and so ``updated_at``, is unchanged.
        self.noted_only = False

    def transition(self) -> Transition:
        if not self.noted_only:
            self.s.updated_at = self.now
        return Transition(self.s, tuple(self.commands), tuple(self.timers), tuple(self.cancelled))

    # -- data, history, timers ---------------------------------------------------------

    @property
    def data(self) -> BaseModel:
        if self._data is None:
            self._data = self.d.data.model_validate(self.s.data)
        return self._data

    def set_data(self, data: Any) -> None:
        if not isinstance(data, self.d.data):
            raise ConfigError(
                f"saga {self.d.name!r}: update= returned {type(data).__qualname__}, "
                f"expected {self.d.data.__qualname__}"
            )
        self._data = data
        self.s.data = data.model_dump(mode="json")

    def own(self, name: str) -> StepState:
        """Step ``name``, copied first if it is still the input state's: call before any
        change to a step, and change only what it returns."""
        st = self.s.steps[name]
        if name not in self._owned:
            st = self.s.steps[name] = st.copy()
            self._owned.add(name)
        return st

    def log(self, event: str, step: str | None = None, detail: str = "") -> None:
        self.s.history.append(HistoryEntry(at=self.now, event=event, step=step, detail=detail))

    def arm(self, st: StepState, kind: str, attempt: int, at: datetime) -> None:
        st = self.own(st.name)
        self.disarm(st)
        st.timer_id = timer_id(self.s.saga_id, st.name, kind, attempt)
        st.timer_at = at
        self.timers.append(TimerToSet(st.timer_id, self.s.saga_id, at))

    def disarm(self, st: StepState) -> None:
        st = self.own(st.name)
        if st.timer_id is not None:
            self.cancelled.append(st.timer_id)
        st.timer_id = None
        st.timer_at = None

    # -- sending -----------------------------------------------------------------------

    def _command(self, cls: type[Any], build: Any) -> Any:
        if build is not None:
            return build(self.data)
        data = self.data
        command: type[BaseModel] = cls
        return command.model_validate(data.model_dump(include=_shared_fields(type(data), command)))

    def _send(
        self,
        st: StepState,
        kind: CommandKind,
        attempt: int,
        message: Any,
        timeout: timedelta,
        *,
        after_timeout: bool = False,
    ) -> None:
        cid = command_id(self.s.saga_id, st.name, kind, attempt)
        st = self.own(st.name)
        st.command_ids.append(cid)
        # a re-send after a timeout repeats the attempt in flight: same key, so a handler's
        # dedup recognises it if that attempt did land; any other send asks anew
        key = st.idempotency_key if after_timeout and st.idempotency_key else cid
        st.idempotency_key = key
        self.commands.append(CommandToSend(cid, st.name, message, kind, attempt, key))
        self.arm(st, kind, attempt, self.now + timeout)
        what = "sent" if kind == "action" else "compensation_sent"
        self.log(
            what if attempt == 1 else f"re{what}",
            st.name,
            f"{message.bus_type} attempt {attempt} id {cid}"
            + (f" key {key}" if key != cid else ""),
        )

    def send_action(self, st: StepState, *, after_timeout: bool = False) -> None:
        spec = self.d.steps[st.name]
        assert isinstance(spec, Step)
        st = self.own(st.name)
        st.status = StepStatus.RUNNING
        st.started_at = st.started_at or self.now
        st.attempts += 1
        message = self._command(spec.command, spec.build)
        self._send(st, "action", st.attempts, message, spec.timeout, after_timeout=after_timeout)

    def send_compensation(self, st: StepState, *, after_timeout: bool = False) -> None:
        c = _compensation(self.d.steps[st.name])
        st = self.own(st.name)
        st.status = StepStatus.COMPENSATING
        st.compensation_attempts += 1
        message = self._command(c.command, c.build)
        attempt = st.compensation_attempts
        self._send(st, "compensation", attempt, message, c.timeout, after_timeout=after_timeout)

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

    # -- early signals -----------------------------------------------------------------

    def keep_early(self, name: str, incoming: Incoming) -> None:
        """Keep an event for wait ``name``, which has not started: it is applied then."""
        signal = EarlySignal(
            step=name,
            type=incoming.type,
            message_id=incoming.message_id,
            data=incoming.data.model_dump(mode="json"),
            at=self.now,
            causation_id=incoming.causation_id,
        )
        self.s.early = [*self.s.early, signal]
        self.log("kept_early", name, f"{incoming.type} {incoming.message_id}")

    def take_early(self, name: str, spec: Wait) -> Incoming | None:
        """The first event kept for wait ``name`` (the others for it are dropped, logged:
        the wait settles on the first, as it would have had they come in time)."""
        mine = [e for e in self.s.early if e.step == name]
        if not mine:
            return None
        self.s.early = [e for e in self.s.early if e.step != name]
        for e in mine[1:]:
            self.log("superseded", name, f"{e.type} {e.message_id} came after {mine[0].message_id}")
        first = mine[0]
        cls = next(t for t in spec.event + spec.rejected if t.bus_type == first.type)
        message = cls.model_validate(first.data)
        self.log(
            "applied_early",
            name,
            f"{first.type} {first.message_id} kept since {first.at:%Y-%m-%dT%H:%M:%SZ}",
        )
        return Incoming(first.type, first.message_id, self.s.saga_id, message, first.causation_id)

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
            stage = self.current()
            if stage is None:
                self.s.status = SagaStatus.COMPLETED
                self.log("completed")
                return
            steps = [self.s.steps[m.name] for m in members(stage)]
            if any(st.status == StepStatus.RUNNING for st in steps):
                return
            if all(st.status == StepStatus.PENDING for st in steps):
                self.launch(stage)
                continue
            # every member completed or skipped
            if isinstance(self.d.stages[self.s.stage], Choice):
                self.s.substage += 1
            else:
                self.s.stage += 1

    def current(self) -> PathStage | None:
        """The stage being run (inside the path a choice took), None past the last one;
        a choice reached is decided here."""
        while self.s.stage < len(self.d.stages):
            top = self.d.stages[self.s.stage]
            if not isinstance(top, Choice):
                return top
            if top.name not in self.s.branches and not self.choose(top):
                self.s.stage += 1  # its when= is false: every path skipped
                continue
            path = top.path(self.s.branches[top.name])
            if self.s.substage < len(path):
                return path[self.s.substage]
            self.s.stage += 1
            self.s.substage = 0
        return None

    def choose(self, choice: Choice) -> bool:
        """Take the path ``choice.by`` names (False: ``when=`` skipped the choice); the
        steps of every other path are skipped, so they are never run nor undone."""
        skipped = choice.when is not None and not choice.when(self.data)
        if skipped:
            assert choice.when is not None
            self.log("skipped", choice.name, f"{choice.when.__name__} is false")
            taken: tuple[PathStage, ...] = ()
        else:
            key = choice.by(self.data)
            if not isinstance(key, str):
                raise ConfigError(
                    f"saga {self.d.name!r}: choice {choice.name!r} by= returned {key!r}, "
                    "expected a branch key (str)"
                )
            self.s.branches = {**self.s.branches, choice.name: key}
            self.s.substage = 0
            taken = choice.path(key)
            how = "" if key in choice.branches else ", no such branch: default"
            self.log("branch", choice.name, f"{key} ({choice.by.__name__}{how})")
        on_path = {m.name for stage in taken for m in members(stage)}
        for _, path in choice.paths():
            for stage in path:
                for m in members(stage):
                    if m.name not in on_path and self.s.steps[m.name].status == StepStatus.PENDING:
                        self.own(m.name).status = StepStatus.SKIPPED
        return not skipped

    def launch(self, stage: PathStage) -> None:
        if stage.when is not None and not stage.when(self.data):
            for m in members(stage):
                self.skip(m, stage.when.__name__)
            return
        for m in members(stage):
            st = self.s.steps[m.name]
            if isinstance(m, Wait):
                self.start_wait(st, m)
            elif m.when is not None and not m.when(self.data):
                self.skip(m, m.when.__name__)
            else:
                st = self.own(m.name)
                st.attempt_limit = m.max_attempts
                self.send_action(st)

    def skip(self, m: Step | Wait, predicate: str) -> None:
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
        if spec.update is not None:
            self.set_data(spec.update(self.data, incoming.data))

    def fail_step(self, st: StepState, why: str) -> None:
        st = self.own(st.name)
        st.status = StepStatus.FAILED
        st.error = why
        self.log("failed", st.name, why)
        if self.s.status == SagaStatus.RUNNING:
            self.unwind("failure", f"step {st.name} failed: {why}")

    def settled(self) -> None:
        """A step stopped running: go on, or compensate once nothing is in flight."""
        if self.s.status == SagaStatus.RUNNING:
            self.advance()
        elif self.s.status == SagaStatus.COMPENSATING and not self._in_flight():
            self.compensate_next()

    def _in_flight(self) -> bool:
        return any(st.status in _BUSY for st in self.s.steps.values())

    # -- events ------------------------------------------------------------------------

    def on_reply(self, name: str, incoming: Incoming) -> None:
        st = self.own(name)
        spec = self.d.steps[name]
        st.reply_ids.append(incoming.message_id)
        self.disarm(st)
        if st.status == StepStatus.COMPENSATING:
            if any(incoming.type == t.bus_type for t in _compensation(spec).success):
                st.status = StepStatus.COMPENSATED
                st.compensated_at = self.now
                self.log("compensated", name, f"{incoming.type} {incoming.message_id}")
                self.compensate_next()
            else:
                self.compensation_failed(st, f"failure reply {incoming.type}")
            return
        ok = spec.event if isinstance(spec, Wait) else spec.success
        if any(incoming.type == t.bus_type for t in ok):
            self.complete_step(st, incoming)
        else:
            self.fail_step(st, f"failure reply {incoming.type} {incoming.message_id}")
        self.settled()

    def on_timeout(self, name: str) -> None:
        st = self.own(name)
        spec = self.d.steps[name]
        st.timer_id = None  # it fired: nothing left to cancel
        st.timer_at = None
        if st.status == StepStatus.COMPENSATING:
            self.log("timed_out", name, f"compensation attempt {st.compensation_attempts}")
            why = f"no reply within {_compensation(spec).timeout}"
            self.compensation_failed(st, why, after_timeout=True)
            return
        if isinstance(spec, Wait):
            self.fail_step(st, f"deadline {spec.deadline} passed")
        else:
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

    # -- undoing -----------------------------------------------------------------------

    def unwind(self, cause: str, reason: str) -> None:
        """Stop going forward; compensate once the steps in flight settle."""
        self.s.status = SagaStatus.COMPENSATING
        self.s.cause = "cancel" if cause == "cancel" else "failure"
        self.s.reason = reason
        self.log("cancelling" if cause == "cancel" else "compensating", detail=reason)
        for st in self.s.steps.values():
            if st.status == StepStatus.RUNNING and isinstance(self.d.steps[st.name], Wait):
                st = self.own(st.name)
                st.status = StepStatus.ABANDONED
                self.disarm(st)
                self.log("abandoned", st.name)
        if not self._in_flight():
            self.compensate_next()

    def compensate_next(self) -> None:
        """Undo the most recently completed step that has a compensation, or finish."""
        todo = [
            st
            for st in self.s.steps.values()
            if (
                st.status == StepStatus.COMPLETED
                or (st.status == StepStatus.FAILED and st.uncertain)
            )
            and _compensable(self.d.steps[st.name])
        ]
        if todo:
            st = self.own(max(todo, key=lambda s: s.completed_seq or 0).name)
            st.compensation_attempt_limit = _compensation(self.d.steps[st.name]).max_attempts
            self.send_compensation(st)
            return
        if self.s.cause == "cancel":
            self.s.status = SagaStatus.CANCELLED
        elif any(st.status == StepStatus.COMPENSATED for st in self.s.steps.values()):
            self.s.status = SagaStatus.COMPENSATED
        else:
            self.s.status = SagaStatus.FAILED
        self.log(self.s.status.value, detail=self.s.reason or "")

    def compensation_failed(self, st: StepState, why: str, *, after_timeout: bool = False) -> None:
        if st.compensation_attempts < st.compensation_attempt_limit:
            self.send_compensation(st, after_timeout=after_timeout)
            return
        st = self.own(st.name)
        st.error = why
        self.s.resume_status = self.s.status
        self.s.status = SagaStatus.NEEDS_ATTENTION
        self.s.attention = (
            f"compensation of step {st.name} failed after {st.compensation_attempts} "
            f"attempt(s): {why}; fix the cause, then retry the saga"
        )
        self.log("needs_attention", st.name, self.s.attention)

    def retry(self, reason: str) -> None:
        """Resume a parked instance: re-send everything awaited with a fresh budget."""
        self.s.status = self.s.resume_status or SagaStatus.RUNNING
        self.s.resume_status = None
        self.s.attention = None
        self.log("retried", detail=reason)
        for st in self.s.steps.values():
            spec = self.d.steps[st.name]
            st = self.own(st.name) if st.status in _BUSY else st
            if st.status == StepStatus.RUNNING and isinstance(spec, Wait):
                st.attempts += 1
                self.arm(st, "deadline", st.attempts, st.timer_at or self.now)
            elif st.status == StepStatus.RUNNING and isinstance(spec, Step):
                st.attempt_limit = st.attempts + spec.max_attempts
                self.send_action(st)
            elif st.status == StepStatus.COMPENSATING:
                extra = _compensation(spec).max_attempts
                st.compensation_attempt_limit = st.compensation_attempts + extra
                self.send_compensation(st)
        if not self._in_flight():
            self.settled_after_retry()

    def settled_after_retry(self) -> None:
        if self.s.status == SagaStatus.RUNNING:
            self.advance()
        elif self.s.status == SagaStatus.COMPENSATING:
            self.compensate_next()


_BUSY = (StepStatus.RUNNING, StepStatus.COMPENSATING)


@functools.cache
def _shared_fields(data: type[BaseModel], command: type[BaseModel]) -> set[str]:
    """The fields a command without ``build=`` takes from the saga data: those both have
    (dumping only them: the whole data model was dumped for each command before). Shared
    between calls: never change it."""
    return set(data.model_fields) & set(command.model_fields)


def members(stage: PathStage) -> tuple[Step | Wait, ...]:
    """The steps of a stage: a group's members, or the stage itself."""
    return tuple(stage.steps) if isinstance(stage, Parallel) else (stage,)


def _compensable(spec: Step | Wait) -> bool:
    return isinstance(spec, Step) and spec.compensation is not None


def _compensation(spec: Step | Wait) -> Compensation:
    if isinstance(spec, Step) and spec.compensation is not None:
        return spec.compensation
    raise AssertionError(f"{spec.name} has no compensation")  # the callers checked it
