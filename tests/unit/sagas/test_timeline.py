"""``bus sagas list`` and ``show`` text: ages of live sagas, clipped reasons, no empty undo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sagas.observer import end_line, start_line
from sagas.state import HistoryEntry, SagaState, SagaStatus, StepState, StepStatus
from sagas.stores.url import describe_store
from sagas.timeline import WHY_WIDTH, format_table, format_timeline

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def state(status: SagaStatus, *, reason: str | None = None, updated_s: float = 60) -> SagaState:
    return SagaState(
        saga_id="onboarding:e-1",
        name="onboarding",
        version=1,
        status=status,
        data={},
        steps={"create_account": StepState(name="create_account", status=StepStatus.FAILED)},
        reason=reason,
        trigger_id="t-1",
        started_at=START,
        updated_at=START + timedelta(seconds=updated_s),
    )


def test_a_live_saga_lasts_until_now_not_until_its_last_update() -> None:
    waiting = state(SagaStatus.RUNNING, updated_s=60)
    table = format_table([waiting], now=START + timedelta(hours=2))
    assert "2h00m" in table
    assert "1m00s" not in table


def test_an_ended_saga_lasts_until_its_end() -> None:
    done = state(SagaStatus.COMPLETED, updated_s=61)
    assert "1m01s" in format_table([done], now=START + timedelta(days=3))


def test_a_long_reason_is_clipped_with_an_ellipsis() -> None:
    long = "step create_payroll_record failed: " + "x" * 100
    line = format_table([state(SagaStatus.COMPENSATED, reason=long)], now=START).splitlines()[1]
    why = line[line.index("step create_payroll_record") :]
    assert len(why) == WHY_WIDTH
    assert why.endswith("x…")
    short = format_table([state(SagaStatus.FAILED, reason="short")], now=START)
    assert short.splitlines()[1].endswith("short")


def test_a_failed_saga_with_nothing_to_undo_shows_no_compensating_line() -> None:
    failed = state(SagaStatus.FAILED, reason="step create_account failed")
    failed.history = [
        HistoryEntry(at=START, event="started"),
        HistoryEntry(at=START, event="failed", step="create_account", detail="refused"),
        HistoryEntry(at=START, event="compensating", detail="step create_account failed"),
        HistoryEntry(at=START, event="failed", detail="step create_account failed"),
    ]
    text = format_timeline(failed)
    assert "compensating" not in text
    assert text.count("failed") >= 3
    compensated = state(SagaStatus.COMPENSATED, reason="step x failed")
    compensated.history = failed.history[:3]
    assert "compensating" in format_timeline(compensated)


def test_the_coordinator_logs_a_start_and_an_end_line_with_id_definition_and_outcome() -> None:
    running = state(SagaStatus.RUNNING)
    ended = state(SagaStatus.COMPENSATED, reason="step create_payroll_record failed", updated_s=2)
    assert start_line(running) == "saga onboarding:e-1 started (onboarding v1)"
    assert end_line(running, ended) == (
        "saga onboarding:e-1 ended compensated (onboarding v1) after 2.00s: "
        "step create_payroll_record failed"
    )
    assert end_line(ended, ended) is None  # already ended: said once
    assert end_line(None, running) is None


def test_a_store_is_shown_without_its_password_and_by_its_absolute_path() -> None:
    assert (
        describe_store("postgresql://bus:s3cret@db:5432/sagas") == "postgresql://bus@db:5432/sagas"
    )
    assert describe_store("postgresql://bus@db/sagas") == "postgresql://bus@db/sagas"
    assert describe_store("sqlite:sagas.db") == f"sqlite:{Path('sagas.db').absolute()}"
    assert describe_store("memory") == "memory"
