"""``bus sagas demo --transport kafka`` beside real apps: its own topics and groups per run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from bus import Publisher
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from handlers.hr.contracts import EmployeeHired
from tests.conftest import kafka_test_config, unique

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def demo(bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_FETCH_MAX_WAIT_MS": "20",
    }
    return subprocess.run(
        [sys.executable, "-m", "bus", "sagas", "demo", "--transport", "kafka", "--timeout-s", "90"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_the_kafka_demo_ignores_hires_real_apps_published(kafka_broker: DevBroker) -> None:
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    try:
        older = EmployeeHired(
            employee_id=unique("real"),
            full_name="Someone Real",
            department="sales",
            manager_email="boss@example.com",
            start_date=date(2026, 1, 5),
        )
        await Publisher(transport, source="bus://hr").publish(older)
    finally:
        await transport.stop()
    for _ in range(2):  # a second run meets neither the first run's records nor its groups
        done = demo(kafka_broker.bootstrap_servers)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "systems: 6 account(s)" in done.stdout
        assert older.employee_id not in done.stdout
        assert done.stdout.splitlines()[-1].startswith(
            "9 sagas: 1 compensated, 7 completed, 1 failed"
        )
