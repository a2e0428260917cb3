"""bus.retries: RetryPolicy decisions and the call_with_retries shell."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.errors import (
    BusError,
    ConfigError,
    DecodeError,
    MessageTooLargeError,
    TopicNotFoundError,
    TransportError,
)
from bus.retries import RetriesExhaustedError, RetryPolicy, call_with_retries


class FakeSleep:
    """An async sleep that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Flaky:
    """An async call that fails ``failures`` times (with ``error``) and then returns ``result``."""

    def __init__(self, failures: int, error: BaseException | None = None, result: str = "ok"):
        self.failures = failures
        self.error = error or ConnectionError("flaky")
        self.result = result
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.result


NO_JITTER = {"jitter_s": 0.0}


# --- validation --------------------------------------------------------------------


def test_default_policy_is_valid() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.permanent == ()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -3}, "max_attempts"),
        ({"initial_delay_s": -0.1}, "negative"),
        ({"max_delay_s": -1.0}, "negative"),
        ({"jitter_s": -0.01}, "negative"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": 0.0}, "multiplier"),
    ],
)
def test_bad_policy_values_raise_config_error(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_every_bad_policy_value_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy(max_attempts=0, initial_delay_s=-1, multiplier=0.1)
    message = str(info.value)
    assert "max_attempts" in message
    assert "negative" in message
    assert "multiplier" in message


def test_edge_values_are_valid() -> None:
    RetryPolicy(max_attempts=1, initial_delay_s=0, multiplier=1, max_delay_s=0, jitter_s=0)


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


# --- decisions ---------------------------------------------------------------------


def test_declared_permanent_types_and_their_subclasses_are_permanent() -> None:
    policy = RetryPolicy(permanent=(ValueError,))
    assert policy.is_permanent(ValueError("x"))
    assert policy.is_permanent(UnicodeDecodeError("utf-8", b"", 0, 1, "bad"))  # a ValueError
    assert not policy.is_permanent(RuntimeError("x"))


@pytest.mark.parametrize(
    "error",
    [
        BusError("x"),
        ConfigError("x"),
        DecodeError("x"),
        TopicNotFoundError("x"),
        MessageTooLargeError("x"),
    ],
)
def test_bus_errors_that_are_not_retryable_are_permanent(error: BusError) -> None:
    assert not error.retryable
    assert RetryPolicy().is_permanent(error)


def test_retryable_bus_error_is_not_permanent() -> None:
    assert not RetryPolicy().is_permanent(TransportError("broker away"))


def test_bus_error_with_retryable_false_on_the_instance_is_permanent() -> None:
    error = TransportError("x")
    error.retryable = False
    assert RetryPolicy().is_permanent(error)


def test_foreign_errors_are_transient_by_default() -> None:
    assert not RetryPolicy().is_permanent(ConnectionError("x"))
    assert not RetryPolicy().is_permanent(KeyError("x"))


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=25))
def test_should_retry_while_attempts_remain_for_transient_errors(
    max_attempts: int, attempt: int
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts)
    assert policy.should_retry(ConnectionError("x"), attempt) == (attempt < max_attempts)


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=25))
def test_should_never_retry_permanent_errors(max_attempts: int, attempt: int) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, permanent=(KeyError,))
    assert not policy.should_retry(KeyError("x"), attempt)
    assert not policy.should_retry(DecodeError("x"), attempt)


# --- delays ------------------------------------------------------------------------

delays = st.floats(min_value=0, max_value=60, allow_nan=False)


@given(
    initial=delays,
    multiplier=st.floats(min_value=1, max_value=10, allow_nan=False),
    max_delay=delays,
    jitter=st.floats(min_value=0, max_value=5, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=60),
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delay_is_exponential_capped_plus_jitter(
    initial: float,
    multiplier: float,
    max_delay: float,
    jitter: float,
    attempt: int,
    fraction: float,
) -> None:
    policy = RetryPolicy(
        initial_delay_s=initial, multiplier=multiplier, max_delay_s=max_delay, jitter_s=jitter
    )
    delay = policy.delay_s(attempt, fraction)
    base = min(initial * multiplier ** (attempt - 1), max_delay)
    assert math.isclose(delay, base + jitter * fraction, rel_tol=1e-9, abs_tol=1e-12)
    assert 0 <= delay <= max_delay + jitter
    assert delay <= base + jitter


@given(
    initial=st.floats(min_value=0, max_value=5, allow_nan=False),
    multiplier=st.floats(min_value=1, max_value=4, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=50),
)
def test_delays_never_shrink_from_one_attempt_to_the_next(
    initial: float, multiplier: float, attempt: int
) -> None:
    policy = RetryPolicy(initial_delay_s=initial, multiplier=multiplier, **NO_JITTER)
    assert policy.delay_s(attempt + 1, 0.0) >= policy.delay_s(attempt, 0.0)


def test_delay_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay_s=0.1, multiplier=2, max_delay_s=0.5, **NO_JITTER)
    assert [policy.delay_s(a, 0.0) for a in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_adds_up_to_jitter_s() -> None:
    policy = RetryPolicy(initial_delay_s=1.0, jitter_s=0.5)
    assert policy.delay_s(1, 0.0) == 1.0
    assert policy.delay_s(1, 0.5) == pytest.approx(1.25)


def test_delay_stays_capped_for_very_late_attempts() -> None:
    # A long-retrying policy must keep waiting max_delay_s, not overflow the float power.
    policy = RetryPolicy(max_attempts=5000, multiplier=2.0, max_delay_s=2.0, **NO_JITTER)
    assert policy.delay_s(1100, 0.0) == 2.0


# --- call_with_retries -------------------------------------------------------------


async def test_success_on_first_try_returns_one_attempt_without_sleeping() -> None:
    sleep = FakeSleep()
    failures: list[tuple[int, BaseException]] = []
    call = Flaky(0, result="done")
    result = await call_with_retries(
        RetryPolicy(), call, on_failure=lambda a, e: failures.append((a, e)), sleep=sleep
    )
    assert result == ("done", 1)
    assert call.calls == 1
    assert sleep.delays == []
    assert failures == []


async def test_two_failures_then_success_takes_three_attempts() -> None:
    sleep = FakeSleep()
    failures: list[tuple[int, BaseException]] = []
    call = Flaky(2, result="finally")
    policy = RetryPolicy(max_attempts=3, initial_delay_s=0.1, multiplier=2, **NO_JITTER)
    result = await call_with_retries(
        policy, call, on_failure=lambda a, e: failures.append((a, e)), sleep=sleep
    )
    assert result == ("finally", 3)
    assert call.calls == 3
    assert [a for a, _ in failures] == [1, 2]
    assert all(e is call.error for _, e in failures)
    assert sleep.delays == pytest.approx([0.1, 0.2])


async def test_always_failing_call_exhausts_max_attempts() -> None:
    sleep = FakeSleep()
    failures: list[int] = []
    call = Flaky(10**6)
    policy = RetryPolicy(max_attempts=4, initial_delay_s=0.01, multiplier=3, **NO_JITTER)
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(
            policy, call, on_failure=lambda a, e: failures.append(a), sleep=sleep
        )
    assert info.value.attempts == 4
    assert info.value.error is call.error
    assert info.value.__cause__ is call.error
    assert call.calls == 4
    assert failures == [1, 2, 3]  # the last failure is not retried, so not reported
    assert sleep.delays == pytest.approx([0.01, 0.03, 0.09])
    assert "ConnectionError" in str(info.value)
    assert "4 attempt" in str(info.value)


@given(st.integers(min_value=1, max_value=8))
async def test_attempts_never_exceed_max_attempts(max_attempts: int) -> None:
    sleep = FakeSleep()
    call = Flaky(10**6)
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(RetryPolicy(max_attempts=max_attempts), call, sleep=sleep)
    assert info.value.attempts == call.calls == max_attempts
    assert len(sleep.delays) == max_attempts - 1


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=10))
async def test_success_after_n_failures_reports_n_plus_one_attempts(
    max_attempts: int, failures: int
) -> None:
    sleep = FakeSleep()
    call = Flaky(failures)
    policy = RetryPolicy(max_attempts=max_attempts)
    if failures < max_attempts:
        assert await call_with_retries(policy, call, sleep=sleep) == ("ok", failures + 1)
    else:
        with pytest.raises(RetriesExhaustedError):
            await call_with_retries(policy, call, sleep=sleep)
    assert call.calls == min(failures + 1, max_attempts)


async def test_max_attempts_one_means_no_retry() -> None:
    sleep = FakeSleep()
    call = Flaky(1)
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(RetryPolicy(max_attempts=1), call, sleep=sleep)
    assert info.value.attempts == 1
    assert call.calls == 1
    assert sleep.delays == []


async def test_permanent_error_is_not_retried() -> None:
    sleep = FakeSleep()
    failures: list[int] = []
    call = Flaky(1, error=ValueError("bad input"))
    policy = RetryPolicy(max_attempts=5, permanent=(ValueError,))
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(
            policy, call, on_failure=lambda a, e: failures.append(a), sleep=sleep
        )
    assert info.value.attempts == 1
    assert info.value.error is call.error
    assert call.calls == 1
    assert sleep.delays == []
    assert failures == []


async def test_non_retryable_bus_error_is_not_retried() -> None:
    sleep = FakeSleep()
    call = Flaky(1, error=DecodeError("garbage"))
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(RetryPolicy(max_attempts=5), call, sleep=sleep)
    assert info.value.attempts == 1
    assert call.calls == 1


async def test_permanent_error_on_a_later_try_stops_retrying() -> None:
    sleep = FakeSleep()
    errors: list[BaseException] = [ConnectionError("blip"), ValueError("bad")]
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise errors[min(calls, len(errors)) - 1]

    policy = RetryPolicy(max_attempts=5, permanent=(ValueError,), **NO_JITTER)
    with pytest.raises(RetriesExhaustedError) as info:
        await call_with_retries(policy, call, sleep=sleep)
    assert calls == 2
    assert info.value.attempts == 2
    assert isinstance(info.value.error, ValueError)
    assert len(sleep.delays) == 1


async def test_jittered_delays_stay_within_bounds() -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(
        max_attempts=6, initial_delay_s=0.1, multiplier=2, max_delay_s=0.5, jitter_s=0.05
    )
    with pytest.raises(RetriesExhaustedError):
        await call_with_retries(policy, Flaky(10**6), sleep=sleep)
    bases = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert len(sleep.delays) == len(bases)
    for delay, base in zip(sleep.delays, bases, strict=True):
        assert base <= delay < base + 0.05 + 1e-12
