"""Child sagas: a SubSaga stage starts another saga through a command and waits for the
end report its child sends; a compensating parent cancels a running child."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from bus import Command, ConfigError, Envelope, Event, Registry
from sagas import (
    Cancel,
    Catalog,
    Incoming,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    StepStatus,
    SubSaga,
    Transition,
    decide,
    render_mermaid,
)
from sagas.children import CancelChildSaga, ChildSagaEnded, StartChildSaga
from sagas.operations import Routes, inputs_for
from sagas.timeline import format_timeline
from tests.unit.sagas import hiring
from tests.unit.sagas.hiring import T0, Close, Closed, Person, open_account, person_flow, reply

REG = Registry()


class Hired(Event, type="test.sub.hired.v1", topic="t", key="who", registry=REG):
    who: str


class Ship(Command, type="test.sub.ship.v1", topic="t", registry=REG):
    who: str
    laptop: str


class Shipped(Event, type="test.sub.shipped.v1", topic="t", registry=REG):
    pass


class Lost(Event, type="test.sub.lost.v1", topic="t", registry=REG):
    reason: str = ""


class Kit(BaseModel):
    who: str
    laptop: str


EQUIPMENT = SagaDefinition(
    name="equipment",
    version=1,
    trigger=Hired,  # never started by it here: started as a child
    correlation_key="who",
    data=Kit,
    start=lambda e: Kit(who=e.who, laptop="any"),
    stages=[Step("ship", command=Ship, success=Shipped, failure=Lost)],
)


def kit_for(data: Person) -> Kit:
    return Kit(who=data.who, laptop="14-inch")


PARENT = person_flow(
    "hiring", Hired, [open_account(), SubSaga("equipment", definition=EQUIPMENT, data=kit_for)]
)


def to_parent(t: Transition, ended: ChildSagaEnded, mid: str) -> Transition:
    return decide(PARENT, t.state, Incoming(ended.bus_type, mid, ended.parent_id, ended), T0)


def started_child() -> tuple[Transition, Transition]:
    return hiring.started_child(PARENT, EQUIPMENT, Hired(who="ada"), "r1")


def the_report(t: Transition) -> ChildSagaEnded:
    [report] = [c.message for c in t.commands if c.kind == "report"]
    assert isinstance(report, ChildSagaEnded)
    return report


def test_a_subsaga_sends_the_start_of_its_child_with_the_data_it_built() -> None:
    parent, child = started_child()
    assert parent.state.steps["equipment"].status == StepStatus.RUNNING
    assert child.state.saga_id == "equipment:hiring:ada/equipment"
    assert child.state.parent_id == "hiring:ada"
    assert child.state.data == {"who": "ada", "laptop": "14-inch"}
    assert [c.message for c in child.commands] == [Ship(who="ada", laptop="14-inch")]
    assert "parent: hiring:ada" in format_timeline(child.state)


def test_the_child_reports_its_end_once_and_the_parent_completes() -> None:
    parent, child = started_child()
    child = reply(EQUIPMENT, child, Shipped(), "s1")
    assert child.state.status == SagaStatus.COMPLETED
    report = the_report(child)
    assert (report.status, report.step, report.parent_id) == (
        "completed",
        "equipment",
        "hiring:ada",
    )
    again = reply(EQUIPMENT, child, Shipped(), "s2")
    assert not again.changed
    parent = to_parent(parent, report, "end-1")
    assert parent.state.status == SagaStatus.COMPLETED
    assert not to_parent(parent, report, "end-1").changed


def test_a_child_that_fails_fails_its_step_and_the_parent_compensates() -> None:
    parent, child = started_child()
    child = reply(EQUIPMENT, child, Lost(reason="out of stock"), "l1")
    assert child.state.status == SagaStatus.FAILED
    parent = to_parent(parent, the_report(child), "end-1")
    assert parent.state.steps["equipment"].status == StepStatus.FAILED
    assert "out of stock" in (parent.state.steps["equipment"].error or "")
    assert [type(c.message) for c in parent.commands] == [Close]


def test_a_compensating_parent_cancels_its_running_child_and_waits_for_its_end() -> None:
    parent, child = started_child()
    parent = decide(PARENT, parent.state, Cancel(), T0)
    [cancel] = parent.commands
    assert cancel.message == CancelChildSaga(
        child_id="equipment:hiring:ada/equipment", reason="cancelled"
    )
    assert parent.state.status == SagaStatus.COMPENSATING
    child = decide(EQUIPMENT, child.state, Cancel(cancel.message.reason), T0)
    child = reply(EQUIPMENT, child, Shipped(), "s1")  # the shipment in flight settles
    assert child.state.status == SagaStatus.CANCELLED
    parent = to_parent(parent, the_report(child), "end-1")
    assert parent.state.steps["equipment"].status == StepStatus.COMPENSATED
    assert [type(c.message) for c in parent.commands] == [Close]  # then the rest is undone
    parent = reply(PARENT, parent, Closed(), "c1")
    assert parent.state.status == SagaStatus.CANCELLED


def test_the_control_messages_route_to_the_child_and_the_report_to_the_parent() -> None:
    routes = Routes.of(Catalog([PARENT, EQUIPMENT]))
    assert "sagas.children" in routes.topics
    parent, _ = started_child()
    [start_cmd] = parent.commands
    assert isinstance(start_cmd.message, StartChildSaga)
    env = Envelope(
        id=start_cmd.id,
        source="s",
        type=start_cmd.message.bus_type,
        time=T0,
        data=b"",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    [(saga_id, given)] = inputs_for(routes, env, start_cmd.message)
    assert saga_id == "equipment:hiring:ada/equipment"
    assert given.traceparent == env.traceparent  # the child's commands join the trace
    report = ChildSagaEnded(
        child_id=saga_id, parent_id="hiring:ada", step="equipment", status="completed"
    )
    [(to, _)] = inputs_for(routes, env._replace(type=report.bus_type), report)
    assert to == "hiring:ada"


def test_a_subsaga_is_drawn_and_its_state_round_trips() -> None:
    diagram = render_mermaid(PARENT)
    assert "equipment : child saga equipment, awaited to its end" in diagram
    assert "equipment --> completed : child completed" in diagram
    assert "equipment --> undo_open : child did not complete" in diagram
    _, child = started_child()
    assert SagaState.from_json(child.state.to_json()) == child.state


def test_a_coordinator_refuses_a_subsaga_whose_child_is_not_registered() -> None:
    with pytest.raises(ConfigError, match="sub-saga 'equipment' starts 'equipment'"):
        Routes.of(Catalog([PARENT]))
