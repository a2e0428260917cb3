"""Property: across a parent and its child saga, whatever the order of replies, failures,
a cancel and duplicates, compensations run once each, last completed first, over the path
taken - the child's steps undone by the child, inside the parent's order - and both end in
one terminal state.

The two cores are driven as the coordinator drives them: commands go out, replies come back
in any order, and the control messages of the child (start, cancel, undo: keyed by the
child's id) and its end reports (keyed by the parent's id) each keep their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bus import Command
from sagas import Cancel, CommandToSend, Incoming, SagaDefinition, SagaState, Transition, decide
from sagas import start as start_saga
from sagas.children import CancelChildSaga, ChildSagaEnded, CompensateChildSaga, StartChildSaga
from sagas.core import start_child
from tests.unit.sagas.child_undo_sagas import KIT, PARENT, REPLIES, Hired

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
P, C = "welcome:ada", "kit:welcome:ada/kit"


@dataclass
class World:
    states: dict[str, SagaState] = field(default_factory=dict)
    #: Commands to systems, awaiting a reply: (saga id, command).
    work: list[tuple[str, CommandToSend]] = field(default_factory=list)
    #: The children topic's two keys, each in order: to the child, to the parent.
    to_child: list[CommandToSend] = field(default_factory=list)
    to_parent: list[CommandToSend] = field(default_factory=list)
    #: Inputs applied once, for duplicates: (saga id, input).
    seen: list[tuple[str, Incoming]] = field(default_factory=list)
    #: Steps as they completed (saga, step), and compensation commands as they were sent.
    completed: list[tuple[str, str]] = field(default_factory=list)
    undone: list[tuple[str, str]] = field(default_factory=list)
    now: datetime = T0

    def apply(self, saga_id: str, t: Transition, before: SagaState | None) -> None:
        self.states[saga_id] = t.state
        for name, step in t.state.steps.items():  # completed now (perhaps undone at once)
            was = None if before is None else before.steps[name].completed_seq
            if step.completed_seq is not None and step.completed_seq != was:
                self.completed.append((saga_id, name))
        for cmd in t.commands:
            if isinstance(cmd.message, StartChildSaga | CancelChildSaga | CompensateChildSaga):
                self.to_child.append(cmd)
            elif isinstance(cmd.message, ChildSagaEnded):
                self.to_parent.append(cmd)
            else:
                if cmd.kind == "compensation":
                    self.undone.append((saga_id, cmd.step))
                self.work.append((saga_id, cmd))

    def decide(self, saga_id: str, trigger: Incoming | Cancel, *, dup: bool = False) -> None:
        self.now += timedelta(milliseconds=1)
        d: SagaDefinition = PARENT if saga_id == P else KIT
        before = self.states[saga_id]
        t = decide(d, before, trigger, self.now)
        if dup:
            assert not t.changed, trigger
            assert not t.commands, trigger
            return
        if isinstance(trigger, Incoming):
            self.seen.append((saga_id, trigger))
        self.apply(saga_id, t, before)

    def deliver_to_child(self) -> None:
        cmd = self.to_child.pop(0)
        m = cmd.message
        if isinstance(m, StartChildSaga):
            t = start_child(KIT, m, message_id=cmd.id, now=self.now)
            self.apply(C, t, None)
        elif isinstance(m, CancelChildSaga):
            self.decide(C, Cancel(m.reason))
        else:
            self.decide(C, Incoming(m.bus_type, cmd.id, C, m))

    def deliver_to_parent(self) -> None:
        cmd = self.to_parent.pop(0)
        self.decide(P, Incoming(cmd.message.bus_type, cmd.id, P, cmd.message))

    def answer(self, k: int, ok: bool) -> None:
        saga_id, cmd = self.work.pop(k)
        assert isinstance(cmd.message, Command)
        success, failure = REPLIES[type(cmd.message)]
        reply = success() if ok or failure is None else failure(reason="no")
        self.decide(saga_id, Incoming(reply.bus_type, f"re-{cmd.id}", saga_id, reply))


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_compensations_run_once_last_first_across_parent_and_child(data: st.DataObject) -> None:
    world = World()
    world.apply(P, start_saga(PARENT, Hired(who="ada"), message_id="h", now=T0), None)
    cancelled = False
    for _ in range(data.draw(st.integers(0, 30))):
        options = ["cancel"] if not cancelled else []
        options += ["answer"] * bool(world.work) + ["child"] * bool(world.to_child)
        options += ["parent"] * bool(world.to_parent) + ["dup"] * bool(world.seen)
        if not options:
            break
        action = data.draw(st.sampled_from(options))
        if action == "cancel":
            cancelled = True
            world.decide(P, Cancel())
        elif action == "answer":
            k = data.draw(st.integers(0, len(world.work) - 1))
            world.answer(k, data.draw(st.booleans()))
        elif action == "child":
            world.deliver_to_child()
        elif action == "parent":
            world.deliver_to_parent()
        else:
            saga_id, again = data.draw(st.sampled_from(world.seen))
            world.decide(saga_id, again, dup=True)
    for _ in range(100):  # then every message is delivered, every system says yes
        if world.to_child:
            world.deliver_to_child()
        elif world.to_parent:
            world.deliver_to_parent()
        elif world.work:
            world.answer(0, True)
        else:
            break
    for saga_id, state in world.states.items():
        assert state.terminal, (saga_id, state.status)
    compensable = {(P, "open"), (C, "ship"), (C, "pack")}
    done = [x for x in world.completed if x in compensable]
    if any(s.status.value != "completed" for s in world.states.values()):
        # compensations: once each, exactly the compensable steps that completed, last first
        assert world.undone == list(reversed(done)), (world.completed, world.undone)
    else:
        assert world.undone == []
