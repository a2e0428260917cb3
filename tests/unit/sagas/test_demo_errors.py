"""``bus sagas demo`` that runs out of time says what still runs in one line, exit 2."""

from __future__ import annotations

import pytest

from bus.cli import main
from sagas.demo import still_running


def test_a_demo_out_of_time_prints_one_error_line_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["sagas", "demo", "--timeout-s", "0"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("bus: error: the demo did not finish in time: ")
    assert "onboarding:e-2001" in line
    assert "Traceback" not in err


def test_what_still_runs_names_live_sagas_busy_steps_and_hires_not_started() -> None:
    text = still_running(["onboarding:a", "onboarding:b"], [])
    assert "not started: onboarding:a, onboarding:b" in text
    assert "still running" not in text
