"""A saga definition is checked whole when built: one error lists every problem."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from bus import Command, DefinitionError, Event, Registry
from sagas import Compensation, Parallel, SagaDefinition, Step, Wait
from sagas.definitions.onboarding import onboarding

REG = Registry()


class Begun(Event, type="test.def.begun.v1", topic="t", key="id", registry=REG):
    id: str


class Go(Command, type="test.def.go.v1", topic="t", registry=REG):
    id: str
    amount: int


class Went(Event, type="test.def.went.v1", topic="t", registry=REG):
    pass


class Back(Command, type="test.def.back.v1", topic="t", registry=REG):
    id: str


class Data(BaseModel):
    id: str
    amount: int = 0


class NotAMessage(BaseModel):
    x: int = 0


def is_big(d: Data) -> bool:
    return d.amount > 10


def define(*stages: object, **kw: object) -> SagaDefinition:
    args: dict[str, object] = {
        "name": "t",
        "version": 1,
        "trigger": Begun,
        "correlation_key": "id",
        "data": Data,
        "start": lambda e: Data(id=e.id),
        "stages": list(stages),
    }
    args.update(kw)
    return SagaDefinition(**args)  # type: ignore[arg-type]


def test_a_valid_definition_builds_and_indexes_its_steps() -> None:
    d = define(
        Step("go", command=Go, success=Went, compensation=Compensation(Back, success=Went)),
    )
    assert list(d.steps) == ["go"]
    assert d.saga_id_for(Begun(id="7")) == "t:7"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(DefinitionError) as info:
        define(
            Step("go", command=Go, success=Went),
            Step("go", command=Go, success=()),  # duplicate name, no reply
            Step("Bad Name", command=NotAMessage, success=NotAMessage),  # type: ignore[arg-type]
            Step("cond", command=Go, success=Went, when=lambda d: True, timeout=timedelta(0)),
            Wait("wait", event=(), deadline=timedelta(0)),
            Parallel("grp", steps=[Wait("w2", event=Went, deadline=timedelta(1))]),  # type: ignore[list-item]
            correlation_key="nope",
            version=0,
        )
    problems = "\n".join(info.value.problems)
    for expected in [
        "version must be >= 1",
        "correlation_key 'nope' is not a field of the trigger Begun",
        "step name 'go' is used 2 times",
        "step 'go': no success reply",
        "is not a registered bus Command class",
        "is not a registered bus Event class",
        "step name 'Bad Name' must be lowercase snake_case",
        "use a named function, not a lambda",
        "timeout must be positive",
        "wait 'wait': no event to wait for",
        "deadline must be positive",
        "group 'grp'",
        "is not a Step",
        "awaited by both",
    ]:
        assert expected in problems, expected
    assert str(info.value).startswith("saga definition 't' v0 is invalid (")


def test_a_command_without_build_must_find_its_fields_in_the_data() -> None:
    class Thin(BaseModel):
        id: str

    with pytest.raises(DefinitionError, match="lacks the command's required field"):
        define(Step("go", command=Go, success=Went), data=Thin)
    define(Step("go", command=Go, build=lambda d: Go(id=d.id, amount=1), success=Went), data=Thin)


def test_the_onboarding_definition_is_valid() -> None:
    assert list(onboarding.steps) == [
        "create_account",
        "manager_approval",
        "assign_licenses",
        "grant_repository_access",
        "notify_manager",
        "create_payroll_record",
    ]


def test_named_predicates_are_accepted() -> None:
    d = define(Step("go", command=Go, success=Went, when=is_big))
    assert d.steps["go"].when is is_big


def test_events_from_outside_the_saga_must_carry_the_correlation_key() -> None:
    with pytest.raises(DefinitionError) as info:
        define(Wait("approval", event=Went, deadline=timedelta(days=1)), cancel_on=[Went])
    problems = "\n".join(info.value.problems)
    assert "wait 'approval': Went has no field 'id' (the correlation key)" in problems
    assert "cancel_on: Went has no field 'id'" in problems


def test_the_definition_lists_what_it_consumes_and_sends() -> None:
    assert {t.__name__ for t in onboarding.consumed_types()} >= {
        "EmployeeHired",
        "HireWithdrawn",
        "PrivilegedAccessApproved",
        "IdentityAccountProvisioned",
        "LicensesRevoked",
    }
    assert {t.__name__ for t in onboarding.command_types()} == {
        "CreateAccount",
        "DeprovisionAccount",
        "AssignLicenses",
        "RevokeLicenses",
        "GrantRepositoryAccess",
        "RevokeRepositoryAccess",
        "NotifyManager",
        "NotifyCancellation",
        "CreatePayrollRecord",
    }
    assert onboarding.awaited_types()["licensing.licenses.granted.v1"] == "assign_licenses"
