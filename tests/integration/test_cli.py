"""The ``bus`` command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bus.cli import main
from bus.dead_letters import REASONS
from bus.devbroker import free_port

ROOT = Path(__file__).resolve().parents[2]
BUS = [sys.executable, "-m", "bus"]


def bus(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BUS, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command() -> None:
    out = bus("--help")
    assert out.returncode == 0
    for command in ("run", "publish", "schema"):
        assert command in out.stdout


def test_the_demo_chain_runs_to_idle_and_shows_each_hop_with_its_correlation_id() -> None:
    out = bus(
        "run", "handlers.demo:apps", "--publish", "handlers/demo_hires.ndjson", "--exit-when-idle"
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    hops = [line for line in lines if "corr=" in line]
    assert len(hops) == 9  # 3 hires x 3 handlers
    for app in ("[identity]", "[licensing]", "[notifications]"):
        assert sum(app in line for line in hops) == 3
    correlations = {line.split("corr=")[1].split()[0] for line in hops}
    assert len(correlations) == 3, "each hire is one process; every hop keeps its id"


def test_sigterm_stops_a_running_app_gracefully_with_exit_code_0() -> None:
    proc = subprocess.Popen(
        [*BUS, "run", "handlers.demo:apps", "--shutdown-deadline-s", "5"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while "consuming" not in seen or seen.count("consuming") < 3:
        assert time.monotonic() < deadline, seen
        seen += proc.stderr.readline()
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "stopping" in rest
    assert rest.count("stopped") == 3


def test_publishing_an_invalid_message_names_the_field_and_sends_nothing() -> None:
    out = bus(
        "publish",
        "hr.employee.hired.v1",
        "--data",
        '{"employee_id": "e-1"}',
        "-m",
        "handlers.hr.contracts",
        "--dry-run",
    )
    assert out.returncode == 2
    assert "field 'full_name'" in out.stderr
    assert "field 'start_date'" in out.stderr
    assert out.stdout == ""


def test_publishing_a_file_with_bad_lines_lists_every_line_and_sends_nothing(
    tmp_path: Path,
) -> None:
    good = (ROOT / "handlers/demo_hires.ndjson").read_text().splitlines()[0]
    f = tmp_path / "mixed.ndjson"
    f.write_text(
        "\n".join(
            [
                good,
                '{"type": "hr.employee.hired.v1", "data": {}}',
                "not json",
                '{"type": "nope.v1", "data": {}}',
            ]
        )
    )
    out = bus("publish", "--file", str(f), "-m", "handlers.hr.contracts", "--dry-run")
    assert out.returncode == 2
    assert "3 invalid line(s), nothing was sent" in out.stderr
    for n in (2, 3, 4):
        assert f"line {n}:" in out.stderr
    assert out.stdout == ""


def test_dry_run_prints_the_binary_mode_record_that_would_be_sent() -> None:
    out = bus(
        "publish",
        "--file",
        "handlers/demo_hires.ndjson",
        "-m",
        "handlers.hr.contracts",
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 3
    first = records[0]
    assert first["topic"] == "hr.events"
    assert first["key"] == "e-1001"
    assert first["headers"]["ce_type"] == "hr.employee.hired.v1"
    assert first["headers"]["content-type"] == "application/json"
    assert first["value"]["full_name"] == "Ada Lovelace"


def test_publishing_to_the_memory_transport_from_another_process_is_refused_with_advice() -> None:
    out = bus("publish", "--file", "handlers/demo_hires.ndjson", "-m", "handlers.hr.contracts")
    assert out.returncode == 2
    assert "lives inside one process" in out.stderr
    assert "bus run APP --publish FILE" in out.stderr


def test_schema_export_writes_one_json_schema_per_registered_type(tmp_path: Path) -> None:
    out = bus("schema", "export", "-m", "handlers.demo", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "hr.employee.hired.v1.json" in names
    assert "notifications.manager.notified.v1.json" in names
    schema = json.loads((tmp_path / "hr.employee.hired.v1.json").read_text())
    assert schema["x-bus"] == {
        "type": "hr.employee.hired.v1",
        "topic": "hr.events",
        "key": "employee_id",
        "kind": "event",
    }
    assert "employee_id" in schema["required"]


def test_a_bad_target_or_setting_is_a_clear_error_not_a_traceback() -> None:
    out = bus("run", "no.such.module")
    assert out.returncode == 2
    assert "cannot import 'no.such.module'" in out.stderr
    out = bus("run", "handlers.demo:apps", env={"BUS_PARTITIONS": "many"})
    assert out.returncode == 2
    assert "BUS_PARTITIONS" in out.stderr
    assert "Traceback" not in out.stderr


def test_dlq_filters_accept_every_reason_the_runtime_writes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BUS_TRANSPORT", raising=False)
    for reason in REASONS:  # parsed, then refused only for the memory transport
        assert main(["dlq", "list", "--reason", reason]) == 2
        assert "lives inside one process" in capsys.readouterr().err
    assert "permanent_error" in REASONS


def test_a_taken_http_port_fails_in_one_line_and_port_0_picks_a_free_one_it_prints() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    with taken:
        port = taken.getsockname()[1]
        out = bus("run", "handlers.demo:apps", "--exit-when-idle", "--http-port", str(port))
    assert out.returncode == 2
    assert f"bus: error: cannot serve HTTP on 127.0.0.1:{port}" in out.stderr
    assert "--http-port" in out.stderr
    assert "RuntimeWarning" not in out.stderr  # no coroutine left un-awaited behind
    assert "never awaited" not in out.stderr
    free = bus(
        "run",
        "handlers.demo:apps",
        "--publish",
        "handlers/demo_hires.ndjson",
        "--exit-when-idle",
        "--http-port",
        "0",
    )
    assert free.returncode == 0, free.stderr
    [line] = [x for x in free.stderr.splitlines() if "serving /metrics" in x]
    chosen = int(line.rsplit(":", 1)[1])
    assert chosen not in (0, 9400)


def test_a_one_shot_kafka_command_gives_up_on_an_unreachable_broker_in_one_error_line() -> None:
    env = {"BUS_TRANSPORT": "kafka", "BUS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    for command in (
        ["dlq", "list"],
        ["trace", "some-id", "--topic", "hr.events"],
        ["topics", "ensure", "handlers.demo:apps"],
        ["publish", "--file", "handlers/demo_hires.ndjson", "-m", "handlers.hr.contracts"],
    ):
        started = time.monotonic()
        out = bus(*command, "--connect-timeout", "1", env=env)
        assert time.monotonic() - started < 30, command
        assert out.returncode == 2, out.stderr
        [line] = out.stderr.splitlines()
        assert line.startswith("bus: error: kafka producer: cannot reach 127.0.0.1:")
        assert "after 1s" in line
        assert "Unclosed" not in out.stderr


def test_one_shot_commands_default_to_a_short_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUS_KAFKA_CONNECT_TIMEOUT_S", raising=False)
    from bus.cli.options import ONE_SHOT_CONNECT_TIMEOUT_S, TransportOptions, make_transport
    from bus.config import BusConfig
    from bus.transports.kafka import KafkaTransport

    config = BusConfig(transport="kafka")
    one_shot = make_transport(config, TransportOptions(one_shot=True))
    serving = make_transport(config, TransportOptions(one_shot=False))
    assert isinstance(one_shot, KafkaTransport)
    assert isinstance(serving, KafkaTransport)
    assert one_shot.config.connect_timeout_s == ONE_SHOT_CONNECT_TIMEOUT_S == 10
    assert serving.config.connect_timeout_s == 60
    flagged = make_transport(config, TransportOptions(one_shot=True, connect_timeout_s=3))
    assert isinstance(flagged, KafkaTransport)
    assert flagged.config.connect_timeout_s == 3


@pytest.mark.parametrize(("variable", "linger_ms"), [(None, 0), ("7", 7)])
def test_the_ingress_command_produces_without_a_linger_unless_the_variable_sets_one(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, linger_ms: int
) -> None:
    import bus.ingress
    from bus.cli.app import main
    from bus.transports.kafka import KafkaTransport

    if variable is None:
        monkeypatch.delenv("BUS_KAFKA_LINGER_MS", raising=False)
    else:
        monkeypatch.setenv("BUS_KAFKA_LINGER_MS", variable)
    monkeypatch.setenv("BUS_INGRESS_ALLOW_ANONYMOUS", "true")
    served: list[object] = []

    async def serve(apps: object, *, transport: object, **settings: object) -> int:
        served.append(transport)
        return 0

    monkeypatch.setattr(bus.ingress, "serve_ingress", serve)
    assert main(["ingress", "handlers.demo:apps", "--transport", "kafka"]) == 0
    [transport] = served
    assert isinstance(transport, KafkaTransport)
    assert transport.config.linger_ms == linger_ms
