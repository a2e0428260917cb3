"""The saga state's codec and copies: every field round-trips, copies miss no field, and the
stored JSON is the one the earlier pydantic models wrote (states already stored stay
readable)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sagas import SagaState, SagaStatus
from sagas.state import EarlySignal, HistoryEntry, StepState, StepStatus

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def every_field_set() -> SagaState:
    """A state with no field at its default, so a copy that forgets one shows it."""
    step = StepState(
        name="create_account",
        status=StepStatus.COMPENSATING,
        attempts=2,
        attempt_limit=3,
        compensation_attempts=1,
        compensation_attempt_limit=4,
        command_ids=["c-1", "c-2"],
        reply_ids=["r-1"],
        timer_id="t-1",
        timer_at=T0 + timedelta(seconds=30),
        started_at=T0,
        completed_at=T0 + timedelta(seconds=1),
        compensated_at=T0 + timedelta(seconds=2, microseconds=5),
        completed_seq=1,
        error="boom",
        idempotency_key="k-1",
        uncertain=True,
        reruns=1,
        rerun_due=True,
    )
    return SagaState(
        saga_id="onboarding:e-1",
        name="onboarding",
        version=2,
        status=SagaStatus.NEEDS_ATTENTION,
        data={"employee_id": "e-1", "nested": {"a": [1, 2.5, None, True]}},
        steps={"create_account": step},
        stage=3,
        substage=1,
        branches={"payroll": "us"},
        reason="step x failed",
        attention="compensation stuck",
        cause="failure",
        resume_status=SagaStatus.COMPENSATING,
        completions=5,
        deadline_at=T0 + timedelta(days=3),
        deadline_timer="onboarding:e-1/_saga/deadline/1",
        late=True,
        early=[
            EarlySignal(
                step="approval",
                type="hr.approved.v1",
                message_id="a-1",
                data={"employee_id": "e-1"},
                at=T0,
                causation_id="c-0",
            )
        ],
        updates=["u-1"],
        parent_id="onboarding:e-0",
        correlation_id="checkout-1",
        trigger_id="m-1",
        started_at=T0,
        updated_at=T0 + timedelta(minutes=1),
        history=[HistoryEntry(at=T0, event="started", step=None, detail="hired m-1")],
    )


def defaults_of(cls: type) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_the_example_sets_every_field_so_the_copy_tests_can_fail() -> None:
    state = every_field_set()
    step = state.steps["create_account"]
    for obj in (state, step):
        for name, default in defaults_of(type(obj)).items():
            assert getattr(obj, name) != default, f"{type(obj).__name__}.{name} is default"


def test_copies_keep_every_field() -> None:
    state = every_field_set()
    assert state.private_copy() == state
    step = state.steps["create_account"]
    assert step.copy() == step


def test_a_step_copy_owns_its_id_lists_and_a_private_copy_its_map_and_history() -> None:
    state = every_field_set()
    step = state.steps["create_account"]
    copied = step.copy()
    copied.command_ids.append("c-3")
    copied.reply_ids.append("r-2")
    assert step.command_ids == ["c-1", "c-2"]
    assert step.reply_ids == ["r-1"]
    private = state.private_copy()
    private.steps["other"] = StepState(name="other")
    private.history.append(HistoryEntry(at=T0, event="x"))
    assert set(state.steps) == {"create_account"}
    assert len(state.history) == 1


def test_every_field_round_trips_through_json_and_dict() -> None:
    state = every_field_set()
    assert SagaState.from_json(state.to_json()) == state
    assert SagaState.from_json(state.to_json().encode()) == state
    assert SagaState.from_dict(state.to_dict()) == state
    assert "history" not in state.to_dict(history=False)


def test_the_json_is_what_the_pydantic_models_wrote() -> None:
    # Captured from SagaState.model_dump_json() of the same state before the state classes
    # became dataclasses: the stores hold rows in this form.
    state = SagaState(
        saga_id="s:1",
        name="n",
        version=1,
        status=SagaStatus.RUNNING,
        data={"k": "v"},
        steps={"a": StepState(name="a", timer_at=T0 + timedelta(microseconds=120))},
        trigger_id="m",
        started_at=T0,
        updated_at=T0,
        history=[HistoryEntry(at=T0, event="started")],
    )
    written = (
        '{"saga_id":"s:1","name":"n","version":1,"status":"running","data":{"k":"v"},'
        '"steps":{"a":{"name":"a","status":"pending","attempts":0,"attempt_limit":0,'
        '"compensation_attempts":0,"compensation_attempt_limit":0,"command_ids":[],'
        '"reply_ids":[],"timer_id":null,"timer_at":"2026-03-01T09:00:00.000120Z",'
        '"started_at":null,"completed_at":null,"compensated_at":null,"completed_seq":null,'
        '"error":null}},"stage":0,"reason":null,"attention":null,"cause":null,'
        '"resume_status":null,"completions":0,"trigger_id":"m",'
        '"started_at":"2026-03-01T09:00:00Z","updated_at":"2026-03-01T09:00:00Z",'
        '"history":[{"at":"2026-03-01T09:00:00Z","event":"started","step":null,"detail":""}]}'
    )
    # steps gained idempotency_key (re-sends after a reply timeout) and uncertain, the state
    # early (kept signals), substage and branches (choices), deadline_at, deadline_timer and
    # late (the saga's deadline), steps reruns and the state updates (changes mid-process)
    # and parent_id (child sagas), correlation_id (the trigger's correlationid);
    # rows without them still read
    assert state.to_json() == written.replace(
        '"error":null}',
        '"error":null,"idempotency_key":null,"uncertain":false,"reruns":0,"rerun_due":false}',
    ).replace(
        '"completions":0,',
        '"completions":0,"deadline_at":null,"deadline_timer":null,"late":false,"early":[],'
        '"updates":[],"parent_id":null,"correlation_id":null,',
    ).replace('"stage":0,', '"stage":0,"substage":0,"branches":{},')
    assert SagaState.from_json(written) == state


def test_a_non_utc_offset_survives() -> None:
    state = every_field_set()
    state.started_at = datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    back = SagaState.from_json(state.to_json())
    assert back.started_at == state.started_at
    assert back.started_at.utcoffset() == timedelta(hours=1)


def test_a_bad_stored_state_names_the_field() -> None:
    raw = every_field_set().to_dict()
    raw["steps"]["create_account"]["status"] = "sleeping"
    with pytest.raises(ValidationError, match=r"steps\.create_account\.status"):
        SagaState.from_dict(raw)
    with pytest.raises(ValidationError, match="version"):
        SagaState.from_json('{"saga_id": "x"}')


def test_copies_and_the_stored_form_follow_the_dataclass_fields_without_more_code() -> None:
    from sagas.state import _copier, _dumper

    @dataclasses.dataclass(slots=True, kw_only=True)
    class Grown:
        name: str
        added: int = 0
        ids: list[str] = dataclasses.field(default_factory=list)

    grown = Grown(name="a", added=7, ids=["x"])
    copied = _copier(Grown, own={"ids": "list"})(grown)
    assert copied == grown
    assert copied.ids is not grown.ids
    assert _dumper(Grown)(grown) == {"name": "a", "added": 7, "ids": ["x"]}
    with pytest.raises(TypeError, match="idz"):
        _copier(Grown, own={"idz": "list"})
