"""The CLI against the real broker: dev broker, topic provisioning, publishing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic

from bus.devbroker import DevBroker, free_port
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.integration.test_kafka_runtime import read_topic

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def bus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_dev_broker_prints_its_address_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", "dev", "broker", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


async def test_topics_ensure_creates_what_is_missing_and_reports_what_differs(
    kafka_broker: DevBroker,
) -> None:
    run = unique("prov")
    env = {"PROV_RUN": run, "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers}
    target = "tests.integration.provisioned_app"
    check = bus("topics", "ensure", target, "--transport", "kafka", "--check", env=env)
    assert check.returncode == 1
    assert f"missing  it.prov.orders.{run} (partitions=4" in check.stdout

    created = bus("topics", "ensure", target, "--transport", "kafka", env=env)
    assert created.returncode == 0, created.stderr
    for topic in (f"it.prov.orders.{run}", f"it.prov.orders.{run}.dlq", f"it.prov.invoices.{run}"):
        assert f"created  {topic}" in created.stdout
    again = bus("topics", "ensure", target, "--transport", "kafka", "--check", env=env)
    assert again.returncode == 0, again.stdout
    assert f"ok       it.prov.orders.{run}" in again.stdout

    # a topic that exists with another shape is reported, never changed
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    admin = await transport.admin()
    other = unique("prov")
    await admin.create_topics([NewTopic(f"it.prov.orders.{other}", 2, 1)])
    await transport.stop()
    drift = bus("topics", "ensure", target, "--transport", "kafka", env={**env, "PROV_RUN": other})
    assert drift.returncode == 0
    assert f"it.prov.orders.{other}: has 2 partitions, declared 4" in drift.stdout
    assert "retention.ms" in drift.stdout


async def test_publish_on_kafka_validates_then_sends_every_line(kafka_broker: DevBroker) -> None:
    env = {"BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers, "BUS_TRANSPORT": "kafka"}
    out = bus(
        "publish", "--file", "handlers/demo_hires.ndjson", "-m", "handlers.hr.contracts", env=env
    )
    assert out.returncode == 0, out.stderr
    assert "published 3 message(s)" in out.stdout
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    records = await read_topic(transport, "hr.events", 10_000, timeout_s=5)
    await transport.stop()
    keys = {r.key for r in records}
    assert {b"e-1001", b"e-1002", b"e-1003"} <= keys


def test_publish_to_an_unreachable_broker_fails_with_a_clear_error() -> None:
    env = {
        "BUS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "BUS_KAFKA_CONNECT_TIMEOUT_S": "2",
        "BUS_TRANSPORT": "kafka",
    }
    out = bus(
        "publish", "--file", "handlers/demo_hires.ndjson", "-m", "handlers.hr.contracts", env=env
    )
    assert out.returncode == 2
    assert "cannot reach" in out.stderr
    assert "Traceback" not in out.stderr


async def test_one_shot_commands_close_their_clients_and_read_only_ones_log_no_connect_line(
    kafka_broker: DevBroker,
) -> None:
    env = {"BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers, "BUS_TRANSPORT": "kafka"}
    published = bus(
        "publish", "--file", "handlers/demo_hires.ndjson", "-m", "handlers.hr.contracts", env=env
    )
    assert published.returncode == 0, published.stderr
    # the dead-letter topic of hr.events only: the session's broker holds every other
    # test's *.dlq topics too, and reading them all is not what this test is about
    ensured = bus("topics", "ensure", "handlers.demo:apps", env=env)
    assert ensured.returncode == 0, ensured.stderr
    read_only = {
        "dlq list": bus("dlq", "list", "--topic", "hr.events", env=env),
        "dlq list --json": bus("dlq", "list", "--topic", "hr.events", "--json", env=env),
        "trace": bus("trace", "no-such-process", "--topic", "hr.events", env=env),
        "topics ensure --check": bus(
            "topics", "ensure", "handlers.demo:apps", "--check", "--json", env=env
        ),
    }
    assert read_only["dlq list"].returncode == 0, read_only["dlq list"].stderr
    assert isinstance(json.loads(read_only["dlq list --json"].stdout), list)
    assert read_only["trace"].returncode == 1  # nothing with that correlation id
    check = json.loads(read_only["topics ensure --check"].stdout)
    assert set(check) == {"missing", "ok", "differs"}
    for name, out in {**read_only, "publish": published}.items():
        assert "Unclosed" not in out.stderr, name
        assert "Traceback" not in out.stderr, name
    for name, out in read_only.items():
        assert "producer connected" not in out.stderr, name
        assert "INFO" not in out.stderr, name
