"""Procfile lines: names, commands, $PORT per process, every bad line named at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import ConfigError
from bus.procfile import parse_procfile

ROOT = Path(__file__).resolve().parents[2]


def test_each_line_is_a_named_process_with_its_own_port() -> None:
    text = "# the stack\n\nweb: bus run app:web --http-port $PORT\nworker: ./work --port=${PORT} 'a b'\n"
    web, worker = parse_procfile(text)
    assert (web.name, worker.name) == ("web", "worker")
    assert web.argv(base_port=9400, python="/py") == [
        "/py", "-u", "-m", "bus", "run", "app:web", "--http-port", "9400",
    ]  # fmt: skip
    assert worker.argv(base_port=9400, python="/py") == ["./work", "--port=9401", "a b"]


def test_every_bad_line_is_reported_at_once() -> None:
    text = "web bus run\nweb: bus run\nweb: bus run again\nbad name: x\nempty:\nq: 'open\n"
    with pytest.raises(ConfigError) as caught:
        parse_procfile(text, source="P")
    message = str(caught.value)
    for needle in (
        "P:1: expected 'name: command'",
        "P:3: process 'web' is named twice",
        "P:4: bad process name 'bad name'",
        "P:5: process 'empty' has no command",
        "P:6: No closing quotation",
    ):
        assert needle in message


def test_an_empty_procfile_is_an_error() -> None:
    with pytest.raises(ConfigError, match="names no process"):
        parse_procfile("# nothing\n")


def test_the_onboarding_procfile_runs_every_app_the_saga_sends_commands_to() -> None:
    processes = parse_procfile((ROOT / "deploy" / "Procfile").read_text())
    commands = {p.name: " ".join(p.words) for p in processes}
    assert commands["sagas"].startswith("bus sagas run")
    served = {w for p in processes for w in p.words if w.startswith("handlers.")}
    assert served == {
        "handlers.identity.handler:commands_app",
        "handlers.licensing.handler:commands_app",
        "handlers.notifications.handler:commands_app",
        "handlers.payroll.handler:app",
        "handlers.repositories.handler:app",
    }
    assert all("$PORT" in p.words for p in processes)  # no two ask for the same port
