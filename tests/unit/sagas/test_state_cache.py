"""StateCache hands back a kept state only for the very revision it was written at."""

from __future__ import annotations

from datetime import UTC, datetime

from sagas import SagaState, SagaStatus
from sagas.stores.base import SagaWrite
from sagas.stores.sql import StateCache

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def state(saga_id: str, stage: int = 0, status: SagaStatus = SagaStatus.RUNNING) -> SagaState:
    return SagaState(
        saga_id=saga_id, name="demo", version=1, status=status, data={}, steps={},
        stage=stage, trigger_id="t-1", started_at=T0, updated_at=T0,
    )  # fmt: skip


def test_a_kept_state_comes_back_only_at_its_revision() -> None:
    cache = StateCache()
    written = state("demo:1", stage=1)
    cache.remember([SagaWrite(written, 1)])  # stored at revision 2
    other = state("demo:1", stage=7).to_json()
    assert cache.parse("demo:1", 2, other) is written
    parsed = cache.parse("demo:1", 3, other)  # another writer moved it on
    assert parsed is not written
    assert parsed.stage == 7
    assert cache.parse("demo:2", 2, other).stage == 7


def test_the_last_write_of_a_saga_wins_and_terminal_states_are_dropped() -> None:
    cache = StateCache()
    first, second = state("demo:1", 1), state("demo:1", 2)
    cache.remember([SagaWrite(first, 0), None, SagaWrite(second, 1)])
    assert cache.parse("demo:1", 2, state("demo:1", 9).to_json()) is second
    done = state("demo:1", 3, SagaStatus.COMPLETED)
    cache.remember([SagaWrite(done, 2)])
    assert cache.parse("demo:1", 3, done.to_json()) is not done
    assert cache.parse("demo:1", 2, done.to_json()) is not second


def test_it_keeps_at_most_size_states_oldest_out() -> None:
    cache = StateCache(size=2)
    states = [state(f"demo:{i}") for i in range(3)]
    cache.remember(SagaWrite(s, 0) for s in states)
    blank = state("x").to_json()
    assert cache.parse("demo:0", 1, blank) is not states[0]
    assert cache.parse("demo:1", 1, blank) is states[1]
    assert cache.parse("demo:2", 1, blank) is states[2]
