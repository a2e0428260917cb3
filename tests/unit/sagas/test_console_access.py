"""sagas/web's pure parts: the token file, sessions, the marked diagram, answerable waits."""

from __future__ import annotations

import pytest

from bus import ConfigError
from handlers.hr.contracts import EmployeeHired, PrivilegedAccessApproved
from sagas.definitions.onboarding import onboarding
from sagas.render import render_mermaid
from sagas.state import StepStatus
from sagas.testing import SagaTestKit
from sagas.web.access import Principal, Sessions, find_token, parse_tokens
from sagas.web.queries import decode_cursor, encode_cursor
from sagas.web.saga_views import highlighted_mermaid
from sagas.web.waits import prefilled, waiting_steps


def test_a_token_file_gives_each_token_a_subject_and_a_role() -> None:
    tokens = parse_tokens(
        "# role subject token\noperator alice s3cret-token  # on call\n\nviewer bob another-token\n"
    )
    assert tokens == {
        "s3cret-token": Principal("alice", "operator"),
        "another-token": Principal("bob", "viewer"),
    }
    assert tokens["s3cret-token"].may_act
    assert not tokens["another-token"].may_act


def test_every_bad_line_of_a_token_file_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens("admin carol token-of-carol\nviewer dave\noperator erin short\n"
                     "viewer fred same-token-1\nviewer gail same-token-1\n")  # fmt: skip
    message = str(caught.value)
    for expected in ("line 1: role 'admin'", "line 2: expected", "line 3: the token is shorter",
                     "line 5: the token is already given to fred"):  # fmt: skip
        assert expected in message


def test_an_unknown_token_finds_nobody_and_sessions_are_bounded() -> None:
    tokens = parse_tokens("viewer bob another-token")
    assert find_token(tokens, "another-token") == Principal("bob", "viewer")
    assert find_token(tokens, "another-tokeN") is None
    sessions = Sessions(limit=2)
    for i in range(3):
        sessions.open(Principal("bob", "viewer"), session_id=f"s{i}", csrf=f"c{i}")
    assert sessions.get("s0") is None
    assert sessions.get("s2") is not None
    assert sessions.get(None) is None


def test_a_cursor_survives_a_link_and_garbage_is_no_cursor() -> None:
    assert decode_cursor(encode_cursor((1_700_000_000_000, "onboarding:e-1"))) == (
        1_700_000_000_000,
        "onboarding:e-1",
    )
    assert decode_cursor("not-base64!") is None
    assert decode_cursor(None) is None


async def test_a_waiting_saga_has_an_answerable_wait_marked_in_its_diagram() -> None:
    hired = EmployeeHired(
        employee_id="e-7", full_name="Grace Hopper", department="engineering",
        manager_email="howard@example.com", role="admin", start_date="2027-01-04",
    )  # fmt: skip
    async with SagaTestKit(onboarding) as kit:
        await kit.publish(hired)
        await kit.drain()
        saga_id = onboarding.saga_id_for(hired)
        [create] = kit.sent(saga_id)
        assert create.message.employee_id == "e-7"
        state = await kit.state(saga_id)
    assert state.steps["create_account"].status == StepStatus.RUNNING
    assert waiting_steps(onboarding, state) == []
    marked = highlighted_mermaid(render_mermaid(onboarding), state)
    assert marked.endswith("    class create_account current")
    state.steps["create_account"].status = StepStatus.COMPLETED
    state.steps["manager_approval"].status = StepStatus.RUNNING
    [wait] = waiting_steps(onboarding, state)
    assert wait.step == "manager_approval"
    assert wait.event_type("approve") is PrivilegedAccessApproved
    assert prefilled(PrivilegedAccessApproved, state)["employee_id"] == "e-7"
