"""sagas/web's pure parts: the token file, sessions, the marked diagram, answerable waits."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import ConfigError, TokenFile, hash_token
from handlers.hr.contracts import EmployeeHired, PrivilegedAccessApproved
from sagas.definitions.onboarding import onboarding
from sagas.render import render_mermaid
from sagas.state import StepStatus
from sagas.testing import SagaTestKit
from sagas.web.access import (
    ConsoleTokens,
    Principal,
    Sessions,
    find_token,
    load_tokens,
    parse_tokens,
)
from sagas.web.queries import decode_cursor, encode_cursor
from sagas.web.saga_views import highlighted_mermaid
from sagas.web.waits import prefilled, waiting_steps

SHARED = f"""
[[tokens]]
name = "hr-system"
sha256 = "{hash_token("ingress-only-token")}"
types = ["hr.*"]

[[tokens]]
name = "alice"
sha256 = "{hash_token("s3cret-token")}"
role = "operator"
subject = "alice@example.com"

[[tokens]]
name = "bob"
sha256 = "{hash_token("another-token")}"
role = "viewer"
"""


def test_a_shared_token_file_gives_console_tokens_a_subject_and_a_role() -> None:
    tokens = parse_tokens(SHARED)
    assert tokens.current() == {
        hash_token("s3cret-token"): Principal("alice@example.com", "operator"),
        hash_token("another-token"): Principal("bob", "viewer"),
    }
    assert find_token(tokens, "s3cret-token") == Principal("alice@example.com", "operator")
    assert not Principal("bob", "viewer").may_act


def test_an_ingress_only_token_finds_nobody_in_the_console() -> None:
    tokens = parse_tokens(SHARED)
    assert find_token(tokens, "ingress-only-token") is None
    assert find_token(tokens, "") is None


def test_a_bad_token_file_names_the_entry_and_the_field() -> None:
    with pytest.raises(ConfigError, match=r"tokens\[0\] \('carol'\): 'role'"):
        parse_tokens(f'[[tokens]]\nname = "carol"\nsha256 = "{hash_token("c")}"\nrole = "admin"\n')


def test_a_token_file_without_console_tokens_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f'[[tokens]]\nname = "hr"\nsha256 = "{hash_token("t")}"\n')
    with pytest.raises(ConfigError, match="nobody can log into the console"):
        load_tokens(path)


def test_the_console_sees_a_token_added_to_its_file_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(SHARED)
    clock = [0.0]
    tokens = ConsoleTokens(TokenFile(path, monotonic=lambda: clock[0]))
    assert find_token(tokens, "new-token") is None
    path.write_text(
        SHARED + f'[[tokens]]\nname = "erin"\nsha256 = "{hash_token("new-token")}"\n'
        'role = "viewer"\n'
    )
    clock[0] = 5.0
    assert find_token(tokens, "new-token") == Principal("erin", "viewer")


def test_an_unknown_token_finds_nobody_and_sessions_are_bounded() -> None:
    tokens = parse_tokens(SHARED)
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
