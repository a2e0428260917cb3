"""Retry tiers: the pure decisions and the retry record's headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import ConfigError, PermanentError, Record, RetryPolicy
from bus.retry_topics import origin_record, retry_record, retry_state, retry_topic, tier_label

headers_st = st.lists(
    st.tuples(st.text(min_size=1, max_size=12).filter(lambda k: not k.startswith("bus_retry_")),
              st.binary(max_size=20)),
    max_size=6,
).map(tuple)  # fmt: skip
tiers_st = st.lists(st.floats(0.001, 10_000, allow_nan=False), max_size=4, unique=True).map(
    lambda ts: tuple(sorted(ts))
)


@pytest.mark.parametrize(
    ("delay", "label"),
    [(10, "10s"), (60, "1m"), (600, "10m"), (3600, "1h"), (0.25, "250ms"), (90, "90s"), (1.5, "1500ms")],
)  # fmt: skip
def test_tier_labels_are_short_and_stable(delay: float, label: str) -> None:
    assert tier_label(delay) == label
    assert retry_topic("identity", delay) == f"identity.retry.{label}"


@given(
    key=st.none() | st.binary(max_size=10),
    value=st.none() | st.binary(max_size=50),
    headers=headers_st,
    tier=st.integers(0, 5),
    attempts=st.integers(1, 100),
    due_ms=st.integers(0, 2**45),
)
def test_retry_record_round_trips_its_state_and_keeps_the_record(
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes], ...],
    tier: int,
    attempts: int,
    due_ms: int,
) -> None:
    consumed = Record("orders", 3, 41, key, value, headers)
    out = retry_record(
        consumed, topic="app.retry.10s", tier=tier, attempts=attempts, due_ms=due_ms,
        error=ValueError("boom"),
    )  # fmt: skip
    assert (out.topic, out.key, out.value) == ("app.retry.10s", key, value)
    assert out.headers[: len(headers)] == headers
    again = Record(out.topic, 0, 7, out.key, out.value, out.headers)
    state = retry_state(again)
    assert state is not None
    assert (state.tier, state.attempts, state.due_ms) == (tier, attempts, due_ms)
    assert (state.topic, state.partition, state.offset) == ("orders", 3, 41)
    # a second trip keeps the first origin and does not pile up headers
    twice = retry_record(again, topic="app.retry.1m", tier=tier + 1, attempts=attempts + 1,
                         due_ms=due_ms, error=ValueError("again"))  # fmt: skip
    assert len(twice.headers) == len(out.headers)
    state2 = retry_state(Record(twice.topic, 0, 0, twice.key, twice.value, twice.headers))
    assert state2 is not None
    assert (state2.topic, state2.offset) == ("orders", 41)
    original = origin_record(again, state)
    assert original == consumed._replace(timestamp_ms=original.timestamp_ms)


def test_a_record_without_retry_headers_has_no_retry_state() -> None:
    assert retry_state(Record("t", 0, 0, None, b"{}", (("bus_retry_tier", b"x"),))) is None
    assert retry_state(Record("t", 0, 0, None, b"{}", (("bus_retry_tier", b"\xff"),))) is None
    assert retry_state(Record("t", 0, 0, None, b"{}")) is None


@given(max_attempts=st.integers(1, 6), tiers=tiers_st, blocking=st.booleans())
def test_a_failing_record_gets_exactly_total_attempts_tries(
    max_attempts: int, tiers: tuple[float, ...], blocking: bool
) -> None:
    """Simulate the runtime: in-process tries, then one try per retry tier."""
    policy = RetryPolicy(max_attempts=max_attempts, tiers_s=tiers, blocking=blocking,
                         initial_delay_s=0, jitter_s=0)  # fmt: skip
    error = ConnectionError("down")
    tries = 1
    while policy.should_retry(error, tries):
        assert policy.wait_s(tries, 0.5) >= 0
        tries += 1
    tier = policy.next_tier(error, None)
    visited = []
    while tier is not None:
        visited.append(tier)
        tries += 1
        tier = policy.next_tier(error, tier)
    assert tries == policy.total_attempts == max_attempts + len(tiers)
    assert visited == ([] if blocking else list(range(len(tiers))))


@given(max_attempts=st.integers(1, 6), tiers=tiers_st, tier=st.none() | st.integers(0, 4))
def test_a_permanent_error_never_goes_to_a_tier(
    max_attempts: int, tiers: tuple[float, ...], tier: int | None
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, tiers_s=tiers, permanent=(KeyError,))
    for error in (KeyError("k"), PermanentError("p")):
        assert policy.next_tier(error, tier) is None
        assert not policy.should_retry(error, 1)


def test_blocking_waits_use_the_tier_delays_after_the_immediate_tries() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay_s=0.1, jitter_s=0, multiplier=2,
                         tiers_s=(5, 30), blocking=True)  # fmt: skip
    assert [policy.wait_s(a, 0) for a in (1, 2, 3)] == [0.1, 5, 30]
    assert policy.in_process_attempts == 4


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tiers_s": (0,)}, "tiers_s must be positive"),
        ({"tiers_s": (60, 10)}, "increasing"),
        ({"tiers_s": (10, 10)}, "increasing"),
        ({"retry_on": ()}, "retry_on"),
    ],
)
def test_bad_tiers_are_refused_with_the_fix(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
