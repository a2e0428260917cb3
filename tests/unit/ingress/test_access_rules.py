"""Tokens, rates and webhook signatures: the pure decisions of the ingress."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.ingress.problems import RefusedError
from bus.ingress.rate import take
from bus.ingress.signatures import (
    check_sha256,
    check_timestamped,
    sign_sha256,
    sign_timestamped,
)
from bus.ingress.tokens import TokenGrant, authenticate, authorize, hash_token, parse_tokens

TOML = f"""
[[tokens]]
name = "hr"
sha256 = "{hash_token("hr-secret")}"
types = ["hr.*"]
sources = ["bus://hr"]
rate_per_s = 10
burst = 20

[[tokens]]
name = "admin"
sha256 = "{hash_token("admin-secret")}"
"""


def test_a_toml_token_file_is_read_with_its_defaults() -> None:
    hr, admin = parse_tokens(TOML, "toml").grants
    assert hr == TokenGrant("hr", hash_token("hr-secret"), ("hr.*",), ("bus://hr",), 10.0, 20.0)
    assert (admin.types, admin.sources, admin.rate_per_s) == (("*",), ("*",), None)


def test_the_json_form_holds_the_same_grants() -> None:
    json = '{"tokens": [{"name": "a", "sha256": "HASH", "types": ["x.y.v1"]}]}'.replace(
        "HASH", hash_token("t")
    )
    [grant] = parse_tokens(json, "json").grants
    assert grant.types == ("x.y.v1",)


def test_every_problem_of_a_token_file_is_listed() -> None:
    text = """
[[tokens]]
name = ""
sha256 = "not-a-hash"
rate_per_s = -1
colour = "red"

[[tokens]]
name = "twin"
sha256 = "A"

[[tokens]]
name = "twin"
sha256 = "B"
""".replace('"A"', f'"{hash_token("a")}"').replace('"B"', f'"{hash_token("b")}"')
    with pytest.raises(ConfigError) as raised:
        parse_tokens(text, "toml")
    message = str(raised.value)
    for expected in ("'name'", "'sha256'", "'rate_per_s'", "colour", "'twin' is used twice"):
        assert expected in message
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_tokens("[[tokens", "toml")


SHARED = f"""
[[tokens]]
name = "hr"
sha256 = "{hash_token("hr-secret")}"

[[tokens]]
name = "alice"
sha256 = "{hash_token("alice-secret")}"
role = "operator"
subject = "alice@example.com"

[[tokens]]
name = "bob"
sha256 = "{hash_token("bob-secret")}"
role = "viewer"
types = ["console.*"]
"""


def test_a_console_role_and_subject_are_read_and_the_subject_defaults_to_the_name() -> None:
    hr, alice, bob = parse_tokens(SHARED, "toml").grants
    assert (hr.role, hr.subject, hr.types) == (None, "hr", ("*",))
    assert (alice.role, alice.subject) == ("operator", "alice@example.com")
    assert (bob.role, bob.subject, bob.types) == ("viewer", "bob", ("console.*",))


def test_a_token_with_a_role_publishes_nothing_unless_it_lists_types() -> None:
    alice = parse_tokens(SHARED, "toml").grants[1]
    assert alice.types == ()
    event = Envelope("1", "bus://hr", "hr.employee.hired.v1")
    with pytest.raises(RefusedError) as refused:
        authorize(alice, [event])
    assert refused.value.refusal.status == 403


def test_a_bad_role_or_subject_is_reported_naming_the_entry_and_the_field() -> None:
    text = f"""
[[tokens]]
name = "carol"
sha256 = "{hash_token("c")}"
role = "admin"

[[tokens]]
name = "dave"
sha256 = "{hash_token("d")}"
role = "viewer"
subject = ""
"""
    with pytest.raises(ConfigError) as raised:
        parse_tokens(text, "toml")
    message = str(raised.value)
    assert "tokens[0] ('carol'): 'role' must be one of viewer, operator" in message
    assert "tokens[1] ('dave'): 'subject' must be a non-empty string" in message


def test_the_hash_command_prints_the_line_a_token_file_stores(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bus.ingress.__main__ import main as _main

    assert _main(["hash", "s3cret"]) == 0
    assert capsys.readouterr().out == f'sha256 = "{hash_token("s3cret")}"\n'
    assert _main(["s3cret"]) == 2


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer wrong"])
def test_a_missing_or_unknown_token_is_401(header: str | None) -> None:
    table = parse_tokens(TOML, "toml")
    with pytest.raises(RefusedError) as raised:
        authenticate(table, header)
    assert raised.value.refusal.status == 401
    assert "WWW-Authenticate" in raised.value.refusal.headers()


def test_a_known_token_finds_its_grant() -> None:
    table = parse_tokens(TOML, "toml")
    assert authenticate(table, "Bearer hr-secret").name == "hr"
    assert authenticate(table, "bearer   admin-secret ").name == "admin"


def test_a_type_or_source_outside_the_grant_is_403_per_event() -> None:
    hr = parse_tokens(TOML, "toml").grants[0]
    ok = Envelope("1", "bus://hr", "hr.employee.hired.v1")
    authorize(hr, [ok])
    with pytest.raises(RefusedError) as raised:
        authorize(hr, [ok, Envelope("2", "bus://crm", "crm.deal.won.v1")])
    refusal = raised.value.refusal
    assert refusal.status == 403
    assert [(e.event, e.field) for e in refusal.errors] == [(1, "type"), (1, "source")]


def test_a_bucket_allows_its_burst_then_asks_to_wait_for_the_refill() -> None:
    bucket, wait = take(None, rate_per_s=10, burst=20, cost=20, now_s=0.0)
    assert wait == 0
    bucket, wait = take(bucket, rate_per_s=10, burst=20, cost=5, now_s=0.0)
    assert wait == pytest.approx(0.5)
    bucket, wait = take(bucket, rate_per_s=10, burst=20, cost=5, now_s=0.5)
    assert wait == 0


def test_a_batch_larger_than_the_burst_passes_from_a_full_bucket_and_leaves_a_debt() -> None:
    bucket, wait = take(None, rate_per_s=10, burst=20, cost=100, now_s=0.0)
    assert (wait, bucket.tokens) == (0, -80)
    _, wait = take(bucket, rate_per_s=10, burst=20, cost=1, now_s=1.0)
    assert wait == pytest.approx(7.1)


@given(
    st.lists(st.tuples(st.floats(0, 2), st.integers(1, 5)), max_size=60),
    st.floats(1, 100),
)
def test_over_any_period_a_bucket_never_allows_more_than_burst_plus_refill(
    requests: list[tuple[float, int]], rate: float
) -> None:
    burst, now, bucket, allowed = 10.0, 0.0, None, 0
    for gap, cost in requests:
        now += gap
        bucket, wait = take(bucket, rate_per_s=rate, burst=burst, cost=cost, now_s=now)
        allowed += cost if wait == 0 else 0
    assert allowed <= burst + rate * now + 5  # + the last request's overdraft at most


def test_a_sha256_signature_of_the_raw_body_is_checked() -> None:
    body = b'{"a": 1}'
    header = sign_sha256(b"key", body)
    assert check_sha256(b"key", body, header) is None
    assert check_sha256(b"key", body + b" ", header) == "the signature does not match the body"
    assert check_sha256(b"other", body, header) is not None
    assert check_sha256(b"key", body, None) == "the signature header is missing"
    assert check_sha256(b"key", body, header.removeprefix("sha256=")) is not None


def test_a_timestamped_signature_holds_only_within_its_window() -> None:
    body = b'{"a": 1}'
    header = sign_timestamped(b"key", body, 1_000)
    assert check_timestamped(b"key", body, header, now_s=1_200, tolerance_s=300) is None
    late = check_timestamped(b"key", body, header, now_s=1_301, tolerance_s=300)
    assert late is not None
    assert "timestamp" in late
    forged = header.replace("t=1000", "t=1250")  # a replay with a fresh time
    assert check_timestamped(b"key", body, forged, now_s=1_260, tolerance_s=300) is not None
    rotating = f"{header},v1={'0' * 64}"
    assert check_timestamped(b"key", body, rotating, now_s=1_000, tolerance_s=300) is None
    assert check_timestamped(b"key", body, "v1=abc", now_s=1_000, tolerance_s=300) is not None
