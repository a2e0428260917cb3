"""``bus ingress`` as a process: starts on a free port it prints, publishes, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import orjson
import pytest

from bus import TopicSpec
from bus.devbroker import DevBroker
from bus.ingress import hash_token
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
_URL = re.compile(r"accepting events on (http://\S+)/events")


def start_ingress(
    broker: DevBroker,
    run: str,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    target: str = "tests.integration.ingress_app:app",
) -> tuple[subprocess.Popen[str], str]:
    """``bus ingress`` on the broker; the process and the base URL from its start-up line."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "t"\nsha256 = "{hash_token("cli-token")}"\n')
    env = {
        **os.environ,
        **(env or {}),
        "INGRESS_RUN": run,
        "BUS_INGRESS_TOKENS_FILE": str(tokens),
        "BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
    }
    return started_bus(["ingress", target, "--transport", "kafka", "--http-port", "0", *args], env)


def started_bus(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``bus ARGS...`` running; the process and the base URL of its ingress line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if found := _URL.search(line):
            # keep reading: a full pipe would block the process's logging
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, found.group(1)
    proc.wait(timeout=10)
    raise AssertionError(f"bus {args[0]} did not start: {''.join(seen)}")


async def test_bus_ingress_accepts_a_structured_event_onto_the_topic_and_exits_0_on_sigterm(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    run = unique("cli")
    topic = f"it.ingress.cli.{run}"
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    await transport.start()
    await transport.ensure_topics([TopicSpec(topic, partitions=1, replication_factor=1)])
    proc, url = start_ingress(kafka_broker, run, tmp_path)
    try:
        event = {"specversion": "1.0", "id": "cli-1", "source": "bus://hr",
                 "type": "it.ingress.joined.v1", "data": {"employee_id": "e-7", "name": "Ada"}}  # fmt: skip
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": "application/cloudevents+json"}
            async with session.post(
                url + "/events", data=orjson.dumps(event), headers=headers
            ) as r:
                assert r.status == 401  # no token
            headers["Authorization"] = "Bearer cli-token"
            async with session.post(
                url + "/events", data=orjson.dumps(event), headers=headers
            ) as r:
                assert (r.status, await r.json()) == (
                    202,
                    {"accepted": 1, "duplicates": 0, "ids": ["cli-1"], "duplicate_ids": []},
                )

        async def records() -> list[bytes]:
            consumer = transport.consumer([topic], group=None)
            await consumer.start()
            try:
                batch = await consumer.fetch(max_records=100, timeout_s=0.5)
            finally:
                await consumer.stop()
            return [r.value or b"" for rs in batch.values() for r in rs]

        [value] = await wait_until(records, timeout_s=20, what="the record", until=len)
        assert orjson.loads(value) == {"employee_id": "e-7", "name": "Ada"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        await transport.stop()


def test_bus_ingress_reports_a_setting_problem_in_one_error_line(
    kafka_broker: DevBroker,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUS_INGRESS_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bus",
            "ingress",
            "tests.integration.ingress_app:app",
            "--transport",
            "kafka",
            "--bootstrap-servers",
            kafka_broker.bootstrap_servers,
            "--http-port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    [line] = [x for x in out.stderr.splitlines() if x.strip()]
    assert line.startswith("bus: error: ")
    assert "BUS_INGRESS_TOKENS_FILE" in line


async def test_bus_run_with_ingress_serves_events_to_its_own_apps_on_the_same_port(
    kafka_broker: DevBroker, tmp_path: Path
) -> None:
    run = unique("run-ingress")
    effects = tmp_path / "effects.txt"
    effects.touch()
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[[tokens]]\nname = "t"\nsha256 = "{hash_token("run-token")}"\n')
    env = {
        **os.environ,
        "ECHO_RUN": run,
        "ECHO_EFFECTS": str(effects),
        "BUS_INGRESS_TOKENS_FILE": str(tokens),
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_AUTO_ENSURE_TOPICS": "true",
    }
    proc, url = started_bus(
        [
            "run",
            "tests.integration.echo_app:app",
            "--ingress",
            "--transport",
            "kafka",
            "--http-port",
            "0",
        ],
        env,
    )
    try:
        ping = {"specversion": "1.0", "id": "run-1", "source": "bus://t",
                "type": "it.echo.ping.v1", "data": {"key": "k", "n": 7}}  # fmt: skip
        headers = {
            "Content-Type": "application/cloudevents+json",
            "Authorization": "Bearer run-token",
        }

        async def post() -> int:
            async with (
                aiohttp.ClientSession() as session,
                session.post(url + "/events", data=orjson.dumps(ping), headers=headers) as r,
            ):
                return r.status

        # 503 until the runner's transport is up, then 202
        assert await wait_until(post, timeout_s=30, what="202", until=lambda s: s == 202) == 202
        handled = await wait_until(
            lambda: effects.read_text(), timeout_s=30, what="the ping handled", until=bool
        )
        assert handled.split()[1:] == ["k", "7"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
