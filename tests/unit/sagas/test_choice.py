"""A Choice takes one path by a named function of the data; only that path runs and is undone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from bus import Command, DefinitionError, Event, Registry
from sagas import (
    Catalog,
    Choice,
    Compensation,
    Incoming,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    StepStatus,
    Transition,
    decide,
    decide_versioned,
    render_mermaid,
    start,
)

REG = Registry()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Hired(Event, type="test.choice.hired.v1", topic="t", key="who", registry=REG):
    who: str
    country: str


def _message(base: type, name: str) -> type:
    body = {"__module__": __name__, "__annotations__": {"who": str}, "who": "x"}
    return type(name, (base,), body, type=f"test.choice.{name.lower()}.v1", topic="t", registry=REG)


def _step(name: str, *, undo: bool = True) -> Step:
    cmd, ok = _message(Command, f"Do{name}"), _message(Event, f"Did{name}")
    failed = _message(Event, f"Failed{name}")
    comp = None
    if undo:
        comp = Compensation(
            _message(Command, f"Undo{name}"), success=_message(Event, f"Undid{name}")
        )
    return Step(name.lower(), command=cmd, success=ok, failure=failed, compensation=comp)


class Person(BaseModel):
    who: str
    country: str


def payroll_country(data: Person) -> str:
    return data.country


ACCOUNT = _step("Account")
US_PAY, US_TAX = _step("UsPay"), _step("UsTax")
DE_PAY = _step("DePay")
MANUAL = _step("Manual", undo=False)
NOTIFY = _step("Notify")


def flow(version: int = 2) -> SagaDefinition:
    return SagaDefinition(
        name="hire",
        version=version,
        trigger=Hired,
        correlation_key="who",
        data=Person,
        start=lambda e: Person(who=e.who, country=e.country),
        stages=[
            ACCOUNT,
            Choice(
                "payroll",
                by=payroll_country,
                branches={"us": [US_PAY, US_TAX], "de": [DE_PAY]},
                default=[MANUAL],
            ),
            NOTIFY,
        ],
    )


FLOW = flow()


def _ok(t: Transition, step: Step) -> Transition:
    (cls,) = step.success
    msg = cls(who="ada")
    return decide(FLOW, t.state, Incoming(cls.bus_type, f"r-{step.name}", t.state.saga_id, msg), T0)


def _fail(t: Transition, step: Step) -> Transition:
    (cls,) = step.failure
    msg = cls(who="ada")
    return decide(FLOW, t.state, Incoming(cls.bus_type, f"f-{step.name}", t.state.saga_id, msg), T0)


def _begin(country: str) -> Transition:
    return start(FLOW, Hired(who="ada", country=country), message_id="h-1", now=T0)


def test_the_branch_named_by_the_data_runs_and_the_others_are_skipped() -> None:
    t = _ok(_begin("us"), ACCOUNT)
    assert [c.step for c in t.commands] == ["uspay"]
    assert t.state.branches == {"payroll": "us"}
    assert t.state.steps["depay"].status == StepStatus.SKIPPED
    assert t.state.steps["manual"].status == StepStatus.SKIPPED
    branch = [h for h in t.state.history if h.event == "branch"]
    assert [(h.step, h.detail) for h in branch] == [("payroll", "us (payroll_country)")]
    t = _ok(t, US_PAY)
    assert [c.step for c in t.commands] == ["ustax"]
    t = _ok(_ok(t, US_TAX), NOTIFY)
    assert t.state.status == SagaStatus.COMPLETED


def test_a_key_without_a_branch_takes_the_default() -> None:
    t = _ok(_begin("fr"), ACCOUNT)
    assert [c.step for c in t.commands] == ["manual"]
    assert "no such branch: default" in t.state.history[-2].detail


def test_compensation_undoes_exactly_the_path_taken_last_first() -> None:
    t = _ok(_ok(_ok(_begin("us"), ACCOUNT), US_PAY), US_TAX)
    t = _fail(t, NOTIFY)
    undone = []
    while t.commands:
        (cmd,) = t.commands
        undone.append(cmd.step)
        spec = FLOW.steps[cmd.step]
        assert isinstance(spec, Step)
        assert spec.compensation is not None
        (cls,) = spec.compensation.success
        reply = Incoming(cls.bus_type, f"u-{cmd.step}", t.state.saga_id, cls(who="ada"))
        t = decide(FLOW, t.state, reply, T0)
    assert undone == ["ustax", "uspay", "account"]
    assert t.state.status == SagaStatus.COMPENSATED


def test_the_branch_taken_survives_the_stored_json() -> None:
    s = _ok(_begin("de"), ACCOUNT).state
    back = SagaState.from_json(s.to_json())
    assert back == s
    t = decide(
        FLOW,
        back,
        Incoming(DE_PAY.success[0].bus_type, "r", s.saga_id, DE_PAY.success[0](who="ada")),
        T0,
    )
    assert [c.step for c in t.commands] == ["notify"]


def test_an_instance_started_before_the_choice_existed_finishes_on_its_version() -> None:
    v1 = SagaDefinition(
        name="hire",
        version=1,
        trigger=Hired,
        correlation_key="who",
        data=Person,
        start=lambda e: Person(who=e.who, country=e.country),
        stages=[ACCOUNT, NOTIFY],
    )
    catalog = Catalog([v1, FLOW])
    old = start(v1, Hired(who="ada", country="us"), message_id="h-0", now=T0)
    (cls,) = ACCOUNT.success
    reply = Incoming(cls.bus_type, "r-1", old.state.saga_id, cls(who="ada"))
    t = decide_versioned(catalog, old.state, reply, T0)
    assert [c.step for c in t.commands] == ["notify"]  # no choice in v1
    assert t.state.branches == {}


def test_the_diagram_draws_every_branch_and_marks_the_one_taken() -> None:
    text = render_mermaid(FLOW, taken={"payroll": "de"})
    for line in [
        "state payroll <<choice>>",
        "account --> payroll : DidAccount",
        "payroll --> uspay : payroll_country = us",
        "payroll --> depay : payroll_country = de (taken)",
        "payroll --> manual : otherwise",
        "ustax --> notify : DidUsTax",
        "depay --> notify : DidDePay",
        # undo: a step after the choice leads back into whichever path was taken
        "undo_notify --> undo_ustax : UndidNotify",
        "undo_notify --> undo_depay : UndidNotify",
        "undo_notify --> undo_account : UndidNotify",
        "undo_ustax --> undo_uspay : UndidUsTax",
        "undo_depay --> undo_account : UndidDePay",
        "manual --> undo_account : fails or times out",
    ]:
        assert line in text, line
    assert text.index("state payroll <<choice>>") < text.index("--> payroll")


def test_a_bad_choice_lists_every_problem() -> None:
    def lambda_free(data: Person) -> str:
        return "x"

    with pytest.raises(DefinitionError) as err:
        SagaDefinition(
            name="bad",
            version=1,
            trigger=Hired,
            correlation_key="who",
            data=Person,
            start=lambda e: Person(who=e.who, country=e.country),
            stages=[
                Choice("pick", by=lambda d: "x", branches={}),
                Choice(
                    "again",
                    by=lambda_free,
                    branches={"a": [Choice("inner", by=lambda_free, branches={"b": []})]},
                ),
            ],
        )
    text = str(err.value.problems)
    assert "choice 'pick' by: use a named function" in text
    assert "choice 'pick': no branches" in text
    assert "choice 'inner' cannot nest in a choice" in text
