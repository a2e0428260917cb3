"""Statuses are coloured on a terminal only: a pipe or a file gets the text unchanged."""

from __future__ import annotations

import io

import pytest

from sagas.console import echo


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_plain_text() -> None:
    out = io.StringIO()
    echo("onboarding:e-1  COMPENSATED  3 completed", out=out)
    assert out.getvalue() == "onboarding:e-1  COMPENSATED  3 completed\n"


def test_a_terminal_gets_the_statuses_coloured(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("NO_COLOR", "TERM", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Terminal()
    echo("onboarding:e-1  COMPENSATED  3 completed", out=out)
    text = out.getvalue()
    assert "\x1b[" in text
    assert "COMPENSATED" in text
    assert text.endswith("\n")


def test_no_color_turns_colour_off_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    echo("onboarding:e-1  FAILED", out=out)
    assert out.getvalue() == "onboarding:e-1  FAILED\n"
