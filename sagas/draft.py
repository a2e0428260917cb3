"""A transition being written: the mechanics under :class:`sagas.run.Run`.

:class:`Draft` holds the private copy of a saga's state that one input changes, and the
effects collected on the way: it copies a step before changing it (:meth:`Draft.own`),
writes the timeline, arms and disarms timers, builds and sends commands (ids and
idempotency keys), and keeps early signals. It decides nothing: the flow is
:class:`~sagas.run.Run`'s. Pure: no I/O, no clock (``now`` is given).

Example::

    draft = Draft(definition, state.private_copy(), now)
    draft.log("waiting", "approval")
    transition = draft.transition()
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from bus import ConfigError
from sagas.children import SubSaga
from sagas.definition import Compensation, Member, Parallel, PathStage, SagaDefinition, Step, Wait
from sagas.effects import (
    CommandKind,
    CommandToSend,
    TaskToMark,
    TaskToOpen,
    TimerToSet,
    Transition,
    command_id,
    timer_id,
)
from sagas.state import EarlySignal, HistoryEntry, SagaState, StepState, StepStatus
from sagas.task_stage import Task
from sagas.triggers import Incoming

__all__ = ["BUSY", "Draft", "compensable", "compensation", "members"]


class Draft:
    """One transition being written, on a private copy of the state: copy-on-write of
    steps, the timeline, timers, commands (:class:`sagas.run.Run` adds the flow)."""

    def __init__(
        self, definition: SagaDefinition, state: SagaState, now: datetime, *, fresh: bool = False
    ) -> None:
        self.d = definition
        self.s = state
        self.now = now
        #: It ended before this transition (a child reports its end once).
        self.was_terminal = state.terminal
        self.commands: list[CommandToSend] = []
        #: Steps this transition copied (the others are still the input state's, read-only);
        #: ``fresh``: the state was built for this transition, so every step is its own.
        self._owned: set[str] = set(state.steps) if fresh else set()
        self.timers: list[TimerToSet] = []
        self.cancelled: list[str] = []
        #: Task rows to write, and open ones whose status changes (:mod:`sagas.taskflow`).
        self.tasks_opened: list[TaskToOpen] = []
        self.tasks_marked: list[TaskToMark] = []
        self._data: BaseModel | None = None
        #: The transition only notes something in the timeline (a late reply): the saga's
        #: own progress, and so ``updated_at``, is unchanged.
        self.noted_only = False

    def transition(self) -> Transition:
        if not self.noted_only:
            self.s.updated_at = self.now
        if self.s.terminal and self.s.deadline_timer is not None:
            self.drop_timer(self.s.deadline_timer)  # ended in time: never late
            self.s.deadline_timer = None
        return Transition(
            self.s,
            tuple(self.commands),
            tuple(self.timers),
            tuple(self.cancelled),
            tuple(self.tasks_opened),
            tuple(self.tasks_marked),
        )

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

    def in_flight(self) -> bool:
        """Whether a step is running or compensating (something is awaited)."""
        return any(st.status in BUSY for st in self.s.steps.values())

    def log(self, event: str, step: str | None = None, detail: str = "") -> None:
        self.s.history.append(HistoryEntry(at=self.now, event=event, step=step, detail=detail))

    def arm(self, st: StepState, kind: str, attempt: int, at: datetime) -> None:
        st = self.own(st.name)
        self.disarm(st)
        st.timer_id = timer_id(self.s.saga_id, st.name, kind, attempt)
        st.timer_at = at
        self.timers.append(TimerToSet(st.timer_id, self.s.saga_id, at))

    def drop_timer(self, timer: str) -> None:
        """Cancel ``timer``; one set in this very transition is just not set (a store
        cancels before it sets, so both in one write would leave it set)."""
        kept = [t for t in self.timers if t.id != timer]
        if len(kept) == len(self.timers):
            self.cancelled.append(timer)
        self.timers = kept

    def disarm(self, st: StepState) -> None:
        st = self.own(st.name)
        if st.timer_id is not None:
            self.cancelled.append(st.timer_id)
        st.timer_id = None
        st.timer_at = None

    # -- sending -----------------------------------------------------------------------

    def command_of(self, cls: type[Any], build: Any) -> Any:
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
        message = self.command_of(spec.command, spec.build)
        self._send(st, "action", st.attempts, message, spec.timeout, after_timeout=after_timeout)

    def send_compensation(self, st: StepState, *, after_timeout: bool = False) -> None:
        c = compensation(self.d.steps[st.name])
        st = self.own(st.name)
        st.status = StepStatus.COMPENSATING
        st.compensation_attempts += 1
        message = self.command_of(c.command, c.build)
        attempt = st.compensation_attempts
        self._send(st, "compensation", attempt, message, c.timeout, after_timeout=after_timeout)

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


BUSY = (StepStatus.RUNNING, StepStatus.COMPENSATING)


@functools.cache
def _shared_fields(data: type[BaseModel], command: type[BaseModel]) -> set[str]:
    """The fields a command without ``build=`` takes from the saga data: those both have
    (dumping only them: the whole data model was dumped for each command before). Shared
    between calls: never change it."""
    return set(data.model_fields) & set(command.model_fields)


def members(stage: PathStage) -> tuple[Member, ...]:
    """The steps of a stage: a group's members, or the stage itself."""
    return tuple(stage.steps) if isinstance(stage, Parallel) else (stage,)


def compensable(spec: Member) -> bool:
    """Undone when the saga compensates: a step or task with a compensation, or a child
    saga with something to undo (it undoes itself: ``ChildRuns.compensate_child``; a child
    named by a string is asked, whatever it holds)."""
    if isinstance(spec, SubSaga):
        child = spec.definition
        return isinstance(child, str) or any(compensable(s) for s in child.iter_steps())
    return isinstance(spec, Step | Task) and spec.compensation is not None


def compensation(spec: Member) -> Compensation:
    if isinstance(spec, Step | Task) and spec.compensation is not None:
        return spec.compensation
    raise AssertionError(f"{spec.name} has no compensation")  # the callers checked it
