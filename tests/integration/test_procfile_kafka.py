"""deploy/Procfile on the real broker: six processes, one onboarding, end to end (the
managers' desk tasks completed as ``bus tasks complete`` would)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from bus import ConfigError, Publisher
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from handlers.hr.contracts import EmployeeHired
from sagas.stores import store_from_url
from sagas.tasks import complete_task, list_tasks
from tests.conftest import kafka_test_config, unique
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "deploy" / "Procfile"


def free_ports(n: int) -> int:
    """A base port with ``n`` free ports from it (the Procfile's $PORT)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free port range")


def ended(store: Path, ids: list[str]) -> dict[str, str]:
    if not store.exists():
        return {}
    marks = ",".join("?" * len(ids))
    try:
        with sqlite3.connect(store, timeout=5) as db:
            rows = db.execute(
                f"SELECT saga_id, status FROM saga_state WHERE saga_id IN ({marks})", ids
            ).fetchall()
    except sqlite3.OperationalError:  # the coordinator is still creating its tables
        return {}
    return {saga_id: status for saga_id, status in rows}


def start_supervisor(log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m bus.supervise deploy/Procfile BASE_PORT``, its output into ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bus.supervise", str(PROCFILE), str(free_ports(6))],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_the_onboarding_procfile_runs_hires_to_completion_on_kafka(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    store = tmp_path / "sagas.db"
    env = {
        **os.environ,
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_AUTO_ENSURE_TOPICS": "true",
        # Tansu's group joins are quick with short sessions (tests/conftest.py)
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "BUS_SAGA_STORE": f"sqlite:{store}",
    }
    log = tmp_path / "up.log"
    run = unique("pf")
    hires = [
        EmployeeHired(
            employee_id=f"{run}-{n}",
            full_name=name,
            department=department,
            manager_email="boss@example.com",
            employment_type=kind,
            start_date=date(2026, 1, 5),  # past: the account is activated at once
        )
        for n, (name, department, kind) in enumerate(
            [("Ada Lovelace", "engineering", "employee"), ("Kat Johnson", "finance", "contractor")]
        )
    ]
    ids = [f"onboarding:{h.employee_id}" for h in hires]
    proc = start_supervisor(log, tmp_path, env)
    try:
        transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
        await transport.start()
        try:
            hr = Publisher(transport, source="bus://hr")
            for hired in hires:
                await hr.publish(hired)
        finally:
            await transport.stop()
        statuses = await wait_until(
            lambda: _ended(store, ids, proc),
            until=lambda found: (
                len(found) == len(ids)
                and all(s in ("completed", "compensated", "failed") for s in found.values())
            ),
            timeout_s=150,
            what="both onboardings to end",
        )
        assert statuses == dict.fromkeys(ids, "completed"), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = log.read_text().splitlines()
    for name in ("identity", "licensing", "notifications", "payroll", "repositories", "sagas"):
        assert any(line.startswith(f"{name} ") for line in lines), name
        assert f"{name:<13} | exited with code 0" in lines
    for saga_id in ids:
        assert any(f"saga {saga_id} started (onboarding v2)" in line for line in lines)
        assert any(f"saga {saga_id} ended completed (onboarding v2)" in line for line in lines)


async def _ended(store: Path, ids: list[str], proc: subprocess.Popen[bytes]) -> dict[str, str]:
    assert proc.poll() is None, "the supervisor stopped before the sagas ended"
    if store.exists():
        await _assign_desks(store)
    return ended(store, ids)


#: What the people submit: the manager's desk, IT's equipment (a child saga's task).
FORMS: dict[str, dict[str, object]] = {
    "assign_desk": {"desk": "A-1"},
    "issue_equipment": {"items": ["laptop"]},
}


async def _assign_desks(path: Path) -> None:
    """The people's part: every open task completed, as ``bus tasks complete`` does."""
    try:
        async with store_from_url(f"sqlite:{path}") as store:
            for task in await list_tasks(store):
                form = FORMS[task.step]
                await complete_task(store, task.id, form, task.assignee)
    except ConfigError:  # the coordinator is still creating its tables
        return
