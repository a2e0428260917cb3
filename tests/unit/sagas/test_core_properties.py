"""Property tests of the pure core: random definitions driven by random outcomes.

Hypothesis builds a definition (steps, parallel groups, waits, conditional stages, steps
with and without compensations) and then drives one instance with a random mix of success
and failure replies, timer firings, duplicates, late and unknown messages, a cancel and
retries, until it ends. After each input and at the end it checks the guarantees:

- duplicate, late and unknown inputs change nothing (the same state object comes back);
- compensations run once each, in reverse order of completion, only for completed steps
  that have one;
- every run ends in exactly one terminal state, consistent with what happened;
- a compensation that keeps failing parks the saga in needs_attention until a retry;
- the state survives a JSON round trip, and replaying the inputs gives the same states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import (
    Cancel,
    Choice,
    CommandToSend,
    Compensation,
    Deadline,
    Delay,
    Incoming,
    Parallel,
    Retry,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Stage,
    Step,
    StepStatus,
    Task,
    TaskDone,
    TimerFired,
    Transition,
    Trigger,
    Update,
    Wait,
    decide,
    render_mermaid,
    start,
)
from sagas.effects import task_id

REGISTRY = Registry()
MAX_STEPS = 8


class Started(Event, type="test.saga.started.v1", topic="t.events", key="id", registry=REGISTRY):
    id: str


class Stop(Event, type="test.saga.stop.v1", topic="t.events", key="id", registry=REGISTRY):
    id: str


class Stranger(Event, type="test.saga.stranger.v1", topic="t.events", registry=REGISTRY):
    pass


def _message(base: type[Any], name: str, type_name: str) -> type[Any]:
    # Events carry the correlation key (waits and cancels are routed by it).
    body: dict[str, Any] = {"__module__": __name__}
    if base is Event:
        body.update({"__annotations__": {"id": str}, "id": "x"})
    return type(name, (base,), body, type=type_name, topic="t.x", registry=REGISTRY)


# One command and reply family per step slot, so every step awaits its own types.
DO = [_message(Command, f"Do{i}", f"test.step{i}.do.v1") for i in range(MAX_STEPS)]
DONE = [_message(Event, f"Done{i}", f"test.step{i}.done.v1") for i in range(MAX_STEPS)]
BROKE = [_message(Event, f"Broke{i}", f"test.step{i}.broke.v1") for i in range(MAX_STEPS)]
UNDO = [_message(Command, f"Undo{i}", f"test.step{i}.undo.v1") for i in range(MAX_STEPS)]
UNDONE = [_message(Event, f"Undone{i}", f"test.step{i}.undone.v1") for i in range(MAX_STEPS)]
STUCK = [_message(Event, f"Stuck{i}", f"test.step{i}.stuck.v1") for i in range(MAX_STEPS)]


class Data(BaseModel):
    id: str
    seen: tuple[int, ...] = ()
    rev: int = 0  # changed by Bump updates


class Bump(Event, type="test.saga.bump.v1", topic="t.events", key="id", registry=REGISTRY):
    id: str
    rev: int


def bump(data: Data, event: Bump) -> Data:
    return data.model_copy(update={"rev": event.rev})


def rev_changed(old: Data, new: Data) -> bool:
    return old.rev != new.rev


def after_rev(data: Data, now: datetime) -> datetime:
    return now + timedelta(seconds=1 + data.rev % 4)  # an update moves it


def always(data: Data) -> bool:
    return True


def never(data: Data) -> bool:
    return False


def pick_a(data: Data) -> str:
    return "a"


def pick_b(data: Data) -> str:
    return "b"


def pick_other(data: Data) -> str:
    return "other"  # no such branch: the default path


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def in_two_seconds(data: Data, now: datetime) -> datetime:
    return now + timedelta(seconds=2)


def in_five_seconds(data: Data, now: datetime) -> datetime:
    return now + timedelta(seconds=5)


class Escalate(Command, type="test.saga.escalate.v1", topic="t.x", registry=REGISTRY):
    id: str


class Form(Event, type="test.saga.form.v1", topic="t.x", registry=REGISTRY):
    answer: int = 0


def long_ago(data: Data, now: datetime) -> datetime:
    return T0 - timedelta(days=1)  # already passed: go on at once


@st.composite
def definitions(draw: st.DrawFn) -> SagaDefinition:
    slots = iter(range(MAX_STEPS))
    stages: list[Stage] = []

    def step(i: int, member: bool = False) -> Step:
        comp = None
        if draw(st.integers(0, 4)) > 0:  # most steps can be undone: exercise the undo path
            comp = Compensation(
                UNDO[i],
                success=UNDONE[i],
                failure=STUCK[i],
                timeout=timedelta(seconds=draw(st.integers(1, 5))),
                max_attempts=draw(st.integers(1, 3)),
            )
        return Step(
            f"s{i}",
            command=DO[i],
            success=DONE[i],
            failure=BROKE[i],
            update=lambda d, e, i=i: d.model_copy(update={"seen": (*d.seen, i)}),
            compensation=comp,
            timeout=timedelta(seconds=draw(st.integers(1, 5))),
            max_attempts=draw(st.integers(1, 3)),
            when=draw(st.sampled_from([None, None, always, never])),
            not_before=draw(
                st.sampled_from([None, None, None, in_two_seconds, long_ago, after_rev])
            ),
            rerun_on=draw(st.sampled_from([None, rev_changed])),
        )

    def wait(i: int) -> Wait:
        return Wait(
            f"s{i}",
            event=DONE[i],
            rejected=BROKE[i],
            deadline=timedelta(seconds=draw(st.integers(1, 10))),
            when=draw(st.sampled_from([None, always, never])),
        )

    def task(i: int) -> Task:
        comp = None
        if draw(st.booleans()):
            comp = Compensation(UNDO[i], success=UNDONE[i], failure=STUCK[i],
                                timeout=timedelta(seconds=2), max_attempts=2)  # fmt: skip
        return Task(
            f"s{i}",
            assignee="ana@example.com",
            form=Form,
            deadline=timedelta(seconds=draw(st.integers(1, 10))),
            escalate=draw(st.sampled_from([None, Escalate])),
            update=lambda d, f, i=i: d.model_copy(update={"seen": (*d.seen, i)}),
            compensation=comp,
            when=draw(st.sampled_from([None, None, never])),
        )

    def path() -> list[Step | Wait]:
        out: list[Step | Wait] = []
        for _ in range(draw(st.integers(0, 2))):
            j = next(slots, None)
            if j is not None:
                out.append(wait(j) if draw(st.integers(0, 3)) == 0 else step(j))
        return out

    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["step", "step", "group", "wait", "choice", "delay", "task"]))
        i = next(slots, None)
        if i is None:
            break
        if kind == "step":
            stages.append(step(i))
        elif kind == "wait":
            stages.append(wait(i))
        elif kind == "task":
            stages.append(task(i))
        elif kind == "delay":
            until = draw(st.sampled_from([in_two_seconds, long_ago, after_rev]))
            stages.append(Delay(f"s{i}", until=until, when=draw(st.sampled_from([None, never]))))
        elif kind == "choice":
            branches = {"a": [step(i)], "b": path()}
            by = draw(st.sampled_from([pick_a, pick_b, pick_other]))
            stages.append(Choice(f"c{i}", by=by, branches=branches, default=path()))
        else:
            members = [step(i)]
            for _ in range(draw(st.integers(1, 2))):
                j = next(slots, None)
                if j is not None:
                    members.append(step(j))
            when = draw(st.sampled_from([None, None, never]))
            stages.append(Parallel(f"g{i}", steps=members, when=when))
    deadline = None
    if draw(st.integers(0, 2)) == 0:
        escalate = draw(st.sampled_from([None, Escalate]))
        deadline = Deadline(at=in_five_seconds, escalate=escalate, compensate=draw(st.booleans()))
    return SagaDefinition(
        name="prop",
        version=1,
        trigger=Started,
        correlation_key="id",
        data=Data,
        start=lambda e: Data(id=e.id),
        stages=stages,
        cancel_on=[Stop],
        deadline=deadline,
        on_update=[Update(Bump, apply=bump)],
    )


def _slot(step: str) -> int:
    return int(step[1:])


@dataclass
class World:
    """The instance and everything the environment could still deliver to it."""

    d: SagaDefinition
    t: Transition
    now: datetime = T0
    outstanding: list[CommandToSend] = field(default_factory=list)
    delivered: list[Incoming] = field(default_factory=list)
    timers: dict[str, datetime] = field(default_factory=dict)
    fired: list[str] = field(default_factory=list)
    inputs: list[tuple[Trigger, datetime]] = field(default_factory=list)
    sent: list[CommandToSend] = field(default_factory=list)
    cancelled: bool = False
    n: int = 0
    #: Steps whose compensation was sent to re-run them (not part of undoing the saga).
    rerunning: set[str] = field(default_factory=set)
    #: Compensation commands sent while the saga undoes itself (not for a re-run).
    undoing: list[CommandToSend] = field(default_factory=list)

    @property
    def s(self) -> SagaState:
        return self.t.state

    def absorb(self, t: Transition) -> None:
        self.t = t
        self.outstanding += [c for c in t.commands if c.kind != "escalation"]  # no reply
        self.sent += t.commands
        running = t.state.status == SagaStatus.RUNNING or (
            t.state.status == SagaStatus.NEEDS_ATTENTION
            and t.state.resume_status == SagaStatus.RUNNING
        )
        for c in t.commands:
            if c.kind == "compensation" and (running or c.step in self.rerunning):
                self.rerunning.add(c.step)  # a re-run's undo (it may finish while undoing)
            elif c.kind == "compensation":
                self.undoing.append(c)
            elif c.kind == "action":
                self.rerunning.discard(c.step)  # undone and sent again: a new run
        for timer in t.timers_to_set:
            self.timers[timer.id] = timer.at

    def feed(self, trigger: Trigger, *, must_not_change: bool = False) -> Transition:
        self.now += timedelta(milliseconds=1)
        before = self.s
        self.inputs.append((trigger, self.now))
        given = before.to_dict()
        t = decide(self.d, before, trigger, self.now)
        # Pure: the state given is left exactly as it was (the core changes a private copy).
        assert before.to_dict() == given, "decide changed its input state"
        if must_not_change:
            assert not t.changed, trigger
            assert t.state is before
            assert (t.commands, t.timers_to_set, t.timers_to_cancel) == ((), (), ())
        assert SagaState.from_dict(t.state.to_dict()) == t.state
        if t.changed and t.state.status == before.status and t.state is not before:
            added = [h.event for h in t.state.history[len(before.history) :]]
            if added == ["late_reply"]:  # a reply to a step given up: only noted
                assert t.state.updated_at == before.updated_at
                assert (t.commands, t.timers_to_set, t.timers_to_cancel) == ((), (), ())
                self.absorb(t)
                return t
        if before.terminal:
            assert not t.changed, "a terminal saga changed"
        self.absorb(t)
        return t

    def reply(self, cmd: CommandToSend, ok: bool) -> None:
        i = _slot(cmd.step)
        if cmd.kind == "action":
            cls = DONE[i] if ok else BROKE[i]
            awaited = self.s.steps[cmd.step].status == StepStatus.RUNNING
            # a step given up (out of attempts) notes a late reply in any saga status
            late = self.s.steps[cmd.step].uncertain
        else:
            late = False
            cls = UNDONE[i] if ok else STUCK[i]
            awaited = self.s.steps[cmd.step].status == StepStatus.COMPENSATING
        self.n += 1
        msg = Incoming(cls.bus_type, f"reply-{self.n}", self.s.saga_id, cls(), causation_id=cmd.id)
        active = self.s.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
        before = len(self.s.history)
        if self.feed(msg, must_not_change=not ((awaited and active) or late)).changed:
            self.delivered.append(msg)  # accepted: delivering it again is a duplicate
        if late:
            assert [h.event for h in self.s.history[before:]] == ["late_reply"]

    def update(self) -> None:
        self.n += 1
        change = Bump(id="x", rev=self.n)
        msg = Incoming(change.bus_type, f"upd-{self.n}", self.s.saga_id, change)
        if self.feed(msg, must_not_change=self.s.status != SagaStatus.RUNNING).changed:
            self.delivered.append(msg)  # applied: delivering it again changes nothing
            assert self.s.data["rev"] == self.n

    def wait_event(self, name: str, ok: bool) -> None:
        i = _slot(name)
        cls = DONE[i] if ok else BROKE[i]
        self.n += 1
        msg = Incoming(cls.bus_type, f"ext-{self.n}", self.s.saga_id, cls())
        awaited = self.s.steps[name].status == StepStatus.RUNNING
        active = self.s.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
        # before its wait starts, a running saga keeps the event for it
        early = self.s.steps[name].status == StepStatus.PENDING
        early = early and self.s.status == SagaStatus.RUNNING
        if self.feed(msg, must_not_change=not ((awaited and active) or early)).changed:
            self.delivered.append(msg)  # accepted: delivering it again is a duplicate
        if early:
            assert msg.message_id in [e.message_id for e in self.s.early]

    def fire(self, timer: str) -> None:
        self.now = max(self.now, self.timers[timer])
        armed = any(
            s.timer_id == timer and s.status in (StepStatus.RUNNING, StepStatus.COMPENSATING)
            for s in self.s.steps.values()
        )
        active = self.s.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
        # the saga's deadline counts in any live status (late while parked, too)
        late = timer == self.s.deadline_timer and not self.s.terminal
        self.feed(TimerFired(timer), must_not_change=not ((armed and active) or late))
        self.fired.append(timer)
        if late:
            assert self.s.late
            assert self.s.deadline_timer is None

    def complete(self, name: str) -> None:
        """A person completes task ``name`` (whether or not the saga awaits it)."""
        done = TaskDone(task_id(self.s.saga_id, name), name, {"answer": 42}, "ana@example.com")
        awaited = self.s.steps[name].status == StepStatus.RUNNING
        awaited = awaited and self.s.status == SagaStatus.RUNNING
        self.feed(done, must_not_change=not awaited)
        if awaited:
            # completed (and maybe already being undone: the saga went on and failed)
            assert self.s.steps[name].completed_seq is not None
        self.feed(done, must_not_change=True)  # a second completion changes nothing

    def drain_step(self, ok: bool) -> None:
        """Drive towards the end: retry, answer compensations (``ok``), fire timers."""
        if self.s.status == SagaStatus.NEEDS_ATTENTION:
            self.feed(Retry())
            return
        comps = [c for c in self.outstanding if c.kind == "compensation"]
        awaited = [c for c in comps if self.s.steps[c.step].status == StepStatus.COMPENSATING]
        if awaited:
            self.reply(awaited[-1], ok=ok)
            return
        open_tasks = [n for n, x in self.s.steps.items()
                      if isinstance(self.d.steps[n], Task) and x.status == StepStatus.RUNNING]  # fmt: skip
        if (
            open_tasks
            and self.s.status == SagaStatus.RUNNING
            and self.s.steps[open_tasks[0]].timer_id is None
        ):  # overdue: only a person moves it on
            self.complete(open_tasks[0])
            return
        armed = sorted(
            (s.timer_at, s.timer_id)
            for s in self.s.steps.values()
            if s.timer_id is not None and s.timer_at is not None
        )
        assert armed, f"no way forward from {self.s.status}: {self.s.steps}"
        self.fire(armed[0][1])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=definitions(), data=st.data())
def test_random_runs_keep_every_guarantee(d: SagaDefinition, data: st.DataObject) -> None:
    diagram = render_mermaid(d)
    assert all(name in diagram for name in d.steps)
    w = World(d, start(d, Started(id="x"), message_id="trigger", now=T0))
    w.absorb(w.t)
    budget = data.draw(st.integers(0, 60), label="random inputs")
    for _ in range(budget):
        if w.s.terminal:
            break
        waits = [n for n, s in w.s.steps.items() if isinstance(d.steps[n], Wait)]
        tasks = [n for n in w.s.steps if isinstance(d.steps[n], Task)]
        action = data.draw(
            st.sampled_from(
                [
                    "reply",
                    "reply",
                    "reply",
                    "fail",
                    "fire",
                    "dup",
                    "unknown",
                    "cancel",
                    "wait",
                    "retry",
                    "task",
                    "update",
                    "update",
                ]
            )
        )
        if action in ("reply", "fail") and w.outstanding:
            cmd = data.draw(st.sampled_from(w.outstanding))
            w.reply(cmd, ok=action == "reply")
        elif action == "fire" and w.timers:
            w.fire(data.draw(st.sampled_from(sorted(w.timers))))
        elif action == "dup" and w.delivered:
            w.feed(data.draw(st.sampled_from(w.delivered)), must_not_change=True)
        elif action == "unknown":
            w.feed(
                Incoming(Stranger.bus_type, "stranger", w.s.saga_id, Stranger()),
                must_not_change=True,
            )
            w.feed(
                Incoming(DONE[0].bus_type, "elsewhere", "prop:other", DONE[0]()),
                must_not_change=True,
            )
        elif action == "cancel" and not w.cancelled:
            was_running = w.s.status == SagaStatus.RUNNING
            w.feed(Cancel(), must_not_change=not was_running)
            w.cancelled = w.cancelled or was_running
        elif action == "wait" and waits:
            w.wait_event(data.draw(st.sampled_from(waits)), ok=data.draw(st.booleans()))
        elif action == "update":
            w.update()
        elif action == "retry":
            w.feed(Retry(), must_not_change=w.s.status != SagaStatus.NEEDS_ATTENTION)
        elif action == "task" and tasks:
            w.complete(data.draw(st.sampled_from(tasks)))
        if w.s.status == SagaStatus.NEEDS_ATTENTION:
            stuck = [s for s in w.s.steps.values() if s.status == StepStatus.COMPENSATING]
            assert len(stuck) == 1
            assert stuck[0].compensation_attempts >= stuck[0].compensation_attempt_limit
            assert w.s.attention
    # Then towards the end: compensations fail at random for a while (so some park in
    # needs_attention and are retried), then succeed.
    for k in range(500):
        if w.s.terminal:
            break
        w.drain_step(ok=k >= 30 or data.draw(st.booleans(), label="compensation ok"))
    assert w.s.terminal, "the saga did not end"
    event(f"ended {w.s.status.value}")
    if any(h.event == "needs_attention" for h in w.s.history):
        event("went through needs_attention")
    if any(h.event == "resent" for h in w.s.history):
        event("re-sent a command")
    if any(h.event == "rerun" for h in w.s.history):
        event("re-ran a step after an update")
    if any(h.event == "compensated_for_rerun" for h in w.s.history):
        event("undid a step to re-run it")
    if any(h.event == "replanned" for h in w.s.history):
        event("re-planned a time after an update")
    if any(h.event == "late_reply" for h in w.s.history):
        event("noted a late reply")
    if any(h.event == "scheduled" for h in w.s.history):
        event("held a step until its not_before")
    if any(h.event == "completed" and h.detail == "the time came" for h in w.s.history):
        event("a delay's timer fired")
    check_outcome(w)
    check_early_signals(w)
    check_replay(w)


def check_early_signals(w: World) -> None:
    """An early signal is never lost: applied when its wait started, superseded there by an
    earlier one (in the timeline), or still kept because the saga never reached its wait."""
    s = w.s
    kept = [h for h in s.history if h.event == "kept_early"]
    still = {e.message_id for e in s.early}
    for h in kept:
        assert h.step is not None
        message_id = h.detail.split()[-1]
        step = s.steps[h.step]
        applied = message_id in step.reply_ids
        superseded = any(
            x.event == "superseded" and x.step == h.step and x.detail.split()[1] == message_id
            for x in s.history
        )
        waiting = message_id in still and step.status in (StepStatus.PENDING, StepStatus.SKIPPED)
        assert [applied, superseded, waiting].count(True) == 1, (h.detail, step, s.early)
    if kept:
        event("kept an early signal")


def check_outcome(w: World) -> None:
    s, d = w.s, w.d
    steps = s.steps
    compensable = {
        n for n, spec in d.steps.items() if isinstance(spec, Step | Task) and spec.compensation
    }
    completed = {n for n, x in steps.items() if x.completed_seq is not None}
    undone_order: list[str] = []
    for c in w.undoing:  # a re-run's undo is not the saga's undoing
        if c.step not in undone_order:
            undone_order.append(c.step)
    # Compensations: only for completed steps that have one, each once, last completed first
    # (a step whose re-run's undo was under way when the saga began to undo itself is
    # undone by it: it is not in the order).
    undone = completed & compensable
    expected = sorted(undone - w.rerunning, key=lambda n: -(steps[n].completed_seq or 0))
    compensated_events = [h.step for h in s.history if h.event == "compensated" and h.step]
    assert len(compensated_events) == len(set(compensated_events)), "a step was undone twice"
    if s.status == SagaStatus.COMPLETED:
        assert undone_order == []
        assert not w.cancelled
        for n, x in steps.items():
            assert x.status in (StepStatus.COMPLETED, StepStatus.SKIPPED), n
    else:
        assert undone_order == expected
        assert sorted(compensated_events) == sorted(undone)
        assert all(steps[n].status == StepStatus.COMPENSATED for n in undone)
        assert (s.status == SagaStatus.CANCELLED) == w.cancelled
        if s.status == SagaStatus.CANCELLED:
            assert s.cause == "cancel"
        elif s.status == SagaStatus.COMPENSATED:
            assert undone
            assert s.cause in ("failure", "deadline")
        else:
            assert s.status == SagaStatus.FAILED
            assert not undone
            assert s.cause in ("failure", "deadline")
        if s.cause == "deadline":  # only where the definition says so
            assert d.deadline is not None
            assert d.deadline.compensate
            assert s.late
        if s.cause == "failure":  # a step failed, or ran out of attempts and was undone
            assert any(x.status == StepStatus.FAILED or x.uncertain for x in steps.values())
        # a step out of attempts may have taken effect: compensated like a completed one
        for n, x in steps.items():
            if x.uncertain:
                assert x.completed_seq is not None
                assert n in undone or n not in compensable
    # No step is left mid-flight, every command id is unique.
    assert not any(
        x.status in (StepStatus.RUNNING, StepStatus.COMPENSATING) for x in steps.values()
    )
    ids = [c.id for c in w.sent]
    assert len(ids) == len(set(ids))
    # The deadline: late at most once, escalated once if late and told to; never armed
    # once ended
    lates = [h for h in s.history if h.event == "late"]
    assert len(lates) == int(s.late)
    escalations = [c for c in w.sent if c.kind == "escalation" and c.step == "_saga"]
    assert len(escalations) == (int(s.late) if d.deadline and d.deadline.escalate else 0)
    # A task: escalated at most once, and only if it went overdue
    for n, spec in d.steps.items():
        if isinstance(spec, Task):
            sent = [c for c in w.sent if c.kind == "escalation" and c.step == n]
            overdue = any(h.event == "overdue" and h.step == n for h in s.history)
            assert len(sent) == (int(overdue) if spec.escalate else 0)
            if any(h.event == "completed" and h.step == n for h in s.history):
                event("completed a task")
    assert s.deadline_timer is None
    if s.late:
        event("late")
    # Choices: only the path taken ever ran (so only it is undone)
    for stage in d.stages:
        if isinstance(stage, Choice):
            key = s.branches.get(stage.name)
            on_path = set() if key is None else {m.name for m in stage.path(key)}
            for _, p in stage.paths():
                for m in p:
                    if m.name not in on_path:
                        assert steps[m.name].status in (StepStatus.PENDING, StepStatus.SKIPPED)
                        assert not any(c.step == m.name for c in w.sent)
            if key is not None:
                event(f"took a branch ({key})")
    # Terminal is final: anything more changes nothing.
    w.feed(Cancel(), must_not_change=True)
    w.feed(Retry(), must_not_change=True)


def check_replay(w: World) -> None:
    """The core is a function: the same inputs give the same states and commands."""
    t = start(w.d, Started(id="x"), message_id="trigger", now=T0)
    sent = list(t.commands)
    for trigger, at in w.inputs:
        t = decide(w.d, t.state, trigger, at)
        sent += t.commands
    assert t.state == w.s
    assert [(c.id, c.message) for c in sent] == [(c.id, c.message) for c in w.sent]
