"""Metrics recorded by the runtime, the HTTP endpoints, and trace context across hops."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
import pytest

from bus import (
    App,
    ConfigError,
    Event,
    MemoryBroker,
    MemoryTransport,
    Publisher,
    RetryPolicy,
    TestBus,
    WorkerSettings,
    decode,
)
from bus.devbroker import DevBroker
from bus.http import HttpServer, HttpSettings, runner_readiness
from bus.metrics import Metrics
from bus.runner import Runner
from tests.conftest import unique
from tests.waiting import wait_until_blocking


class Tick(Event, type="it.obs.tick.v1", topic="it.obs.ticks", key="key"):
    key: str
    n: int


class Tock(Event, type="it.obs.tock.v1", topic="it.obs.tocks", key="key"):
    key: str
    n: int


class Done(Event, type="it.obs.done.v1", topic="it.obs.done", key="key"):
    key: str


TWO_TRIES = RetryPolicy(max_attempts=2, initial_delay_s=0, jitter_s=0)
FAST = WorkerSettings(commit_interval_s=0.01, fetch_timeout_s=0.01)


def ticking_app() -> App:
    """Tock for each Tick, except every fifth, which fails both tries (dead-lettered)."""
    app = App("it-obs", retry=TWO_TRIES)

    @app.handler(name="tock")
    async def tock(tick: Tick) -> Tock:
        if tick.n % 5 == 0:
            raise ValueError(f"tick {tick.n} is a multiple of 5")
        return Tock(key=tick.key, n=tick.n)

    return app


@asynccontextmanager
async def running(runner: Runner) -> AsyncIterator[Runner]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await runner.started.wait()
    try:
        yield runner
    finally:
        stop.set()
        await task


async def test_the_runtime_counts_every_outcome_output_error_and_retry() -> None:
    metrics = Metrics()
    transport = MemoryTransport(MemoryBroker(default_partitions=3))
    runner = Runner([ticking_app()], transport, FAST, metrics=metrics)
    async with running(runner):
        await Publisher(transport, source="test").publish_many(
            Tick(key=f"k{i % 4}", n=i) for i in range(1, 21)
        )
        await runner.wait_idle()
        lag = [
            metrics.sample(
                "bus_consumer_lag", {"app": "it-obs", "topic": "it.obs.ticks", "partition": str(p)}
            )
            for p in range(3)
        ]
        in_flight = metrics.sample("bus_messages_in_flight", {"app": "it-obs"})
    labels = {"app": "it-obs", "topic": "it.obs.ticks", "handler": "tock"}
    assert metrics.sample("bus_messages_consumed_total", {**labels, "outcome": "handled"}) == 16
    assert (
        metrics.sample("bus_messages_consumed_total", {**labels, "outcome": "dead_lettered"}) == 4
    )
    tocks = {"app": "it-obs", "topic": "it.obs.tocks", "type": "it.obs.tock.v1"}
    assert metrics.sample("bus_messages_produced_total", tocks) == 16
    errors = {"app": "it-obs", "handler": "tock", "error_type": "ValueError"}
    assert metrics.sample("bus_handler_errors_total", errors) == 8  # 4 records x 2 tries
    assert metrics.sample("bus_handler_retries_total", {"app": "it-obs", "handler": "tock"}) == 4
    dead = {"app": "it-obs", "topic": "it.obs.ticks", "reason": "handler_failed"}
    assert metrics.sample("bus_messages_dead_lettered_total", dead) == 4
    assert metrics.sample("bus_handler_duration_seconds_count", labels) == 16
    assert metrics.sample("bus_publish_duration_seconds_count", {"app": "it-obs"}) == 16
    assert (metrics.sample("bus_commit_duration_seconds_count", {"app": "it-obs"}) or 0) >= 1
    assert lag == [0, 0, 0]
    assert in_flight == 0


async def test_metrics_off_records_nothing() -> None:
    metrics = Metrics()
    transport = MemoryTransport(MemoryBroker(default_partitions=1))
    runner = Runner([ticking_app()], transport, replace(FAST, metrics=False), metrics=metrics)
    async with running(runner):
        await Publisher(transport, source="test").publish(Tick(key="a", n=1))
        await runner.wait_idle()
    assert "bus_messages_consumed_total{" not in metrics.render().decode()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_http_serves_metrics_health_and_readiness_of_a_running_process() -> None:
    metrics = Metrics()
    transport = MemoryTransport(MemoryBroker(default_partitions=1))
    runner = Runner([ticking_app()], transport, FAST, metrics=metrics)
    # a probe per call (no cache): this test watches readiness change from one call to the next
    fresh = HttpSettings(readiness_interval_s=0.0)
    ready = runner_readiness(runner)
    async with HttpServer(port=0, metrics=metrics, readiness=ready, settings=fresh) as server:
        assert server.port != 0
        status, body = await get(f"{server.url}/readyz")
        assert status == 503, "not ready before the transport started"
        assert '"transport":"no answer"' in body
        async with running(runner):
            await Publisher(transport, source="test").publish(Tick(key="a", n=1))
            await runner.wait_idle()
            status, body = await get(f"{server.url}/readyz")
            assert status == 200, body
            assert '"it-obs":"running, 1 partition(s)"' in body
            status, body = await get(f"{server.url}/metrics")
            assert status == 200
            assert (
                'bus_messages_consumed_total{app="it-obs",handler="tock",outcome="handled",'
                'topic="it.obs.ticks"} 1.0' in body
            )
        status, body = await get(f"{server.url}/healthz")
        assert status == 200, body
        assert '"healthy":true' in body


async def test_healthz_fails_when_the_event_loop_was_blocked() -> None:
    async with HttpServer(port=0, metrics=Metrics(), unhealthy_after_s=0.2) as server:
        time.sleep(0.3)  # noqa: ASYNC251 - a handler blocking the loop is the point
        status, body = await get(f"{server.url}/healthz")
    assert status == 503, body


async def test_a_taken_port_is_a_config_error_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="BUS_HTTP_PORT"):
            async with HttpServer(port=port, metrics=Metrics()):
                pass


async def test_traceparent_travels_from_the_first_message_to_everything_it_causes() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app = App("it-obs-trace")

    @app.handler
    async def tock(tick: Tick) -> Tock:
        return Tock(key=tick.key, n=tick.n)

    @app.handler
    async def done(tock: Tock) -> Done:
        return Done(key=tock.key)

    async with TestBus(app) as bus:
        await bus.publish(Tick(key="a", n=1), traceparent=parent)
        await bus.drain()
        records = [*bus.records("it.obs.tocks"), *bus.records("it.obs.done")]
    envelopes = [decode(r.headers, r.value) for r in records]
    assert [e.type for e in envelopes] == ["it.obs.tock.v1", "it.obs.done.v1"]
    assert all(e.traceparent == parent for e in envelopes)


async def test_trace_reads_a_process_back_from_the_topics_as_a_causal_tree() -> None:
    from datetime import date

    from bus.topics import desired_topics
    from bus.trace import build_tree, read_hops, render
    from handlers.hr.contracts import EmployeeHired
    from handlers.identity.handler import build_app as identity_app
    from handlers.identity.system import Directory
    from handlers.licensing.handler import build_app as licensing_app
    from handlers.licensing.system import LicenseManager
    from handlers.notifications.handler import build_app as notifications_app
    from handlers.notifications.system import Mailer

    no_crm = LicenseManager(seats={"office": 9, "chat": 9, "crm": 0})
    apps = [identity_app(Directory()), licensing_app(no_crm), notifications_app(Mailer())]
    topics = [t.name for t in desired_topics(apps, partitions=1, replication_factor=1)]

    def hire(n: int, department: str) -> EmployeeHired:
        return EmployeeHired(
            employee_id=f"e-{n}",
            full_name=f"Person {n}",
            department=department,
            manager_email="boss@example.com",
            start_date=date(2027, 1, 4),
        )

    async with TestBus(*apps) as bus:
        ok = await bus.publish(hire(1, "support"))
        await bus.publish(hire(2, "support"))  # another process, left out
        failed = await bus.publish(hire(3, "sales"))  # no CRM seat: dead-lettered
        await bus.drain()
        [first] = [e.id for e in bus.envelopes(EmployeeHired) if e.subject == "e-1"]
        [third] = [e.id for e in bus.envelopes(EmployeeHired) if e.subject == "e-3"]
        good = render(
            build_tree(await read_hops(bus.transport, topics, first, fetch_timeout_s=0.05))
        )
        bad = render(
            build_tree(await read_hops(bus.transport, topics, third, fetch_timeout_s=0.05))
        )
    assert ok.topic == failed.topic == "hr.events"
    assert [re.search(r"[a-z.]+\.v1", line)[0] for line in good] == [  # type: ignore[index]
        "hr.employee.hired.v1",
        "identity.account.created.v1",
        "licensing.license.assigned.v1",
        "notifications.manager.notified.v1",
    ]
    assert "from bus://identity" in good[1]
    assert re.search(r"\+\d+\.\d ms$", good[1])
    assert len(bad) == 2
    assert "DEAD-LETTERED (permanent_error in " in bad[1]


def test_bus_trace_refuses_the_process_local_memory_transport(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bus.cli import main

    assert main(["trace", "some-correlation-id", "handlers.demo:apps"]) == 2
    assert "--transport kafka" in capsys.readouterr().err


async def test_a_record_through_every_retry_tier_counts_as_delayed_twice_then_dead_lettered() -> (
    None
):
    metrics = Metrics()
    app = App(
        "it-obs-tiers",
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0, jitter_s=0, tiers_s=(0.05, 0.1)),
    )

    @app.handler(name="fails")
    async def fails(tick: Tick) -> None:
        raise ConnectionError("downstream away")

    transport = MemoryTransport(MemoryBroker(default_partitions=1))
    runner = Runner([app], transport, FAST, metrics=metrics)
    async with running(runner):
        await Publisher(transport, source="test").publish(Tick(key="a", n=1))
        await runner.wait_idle()
    labels = {"app": "it-obs-tiers", "topic": "it.obs.ticks", "handler": "fails"}
    assert metrics.sample("bus_messages_consumed_total", {**labels, "outcome": "delayed"}) == 2
    assert (
        metrics.sample("bus_messages_consumed_total", {**labels, "outcome": "dead_lettered"}) == 1
    )
    assert metrics.sample("bus_messages_consumed_total", {**labels, "outcome": "handled"}) == 0
    errors = {"app": "it-obs-tiers", "handler": "fails", "error_type": "ConnectionError"}
    assert metrics.sample("bus_handler_errors_total", errors) == 4  # 2 immediate + 2 delayed
    dead = {"app": "it-obs-tiers", "topic": "it.obs.ticks", "reason": "handler_failed"}
    assert metrics.sample("bus_messages_dead_lettered_total", dead) == 1


def test_json_log_lines_of_handlers_carry_message_id_correlation_id_and_type() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "bus", "run", "handlers.demo:apps", "--exit-when-idle"]
    command += ["--publish", "handlers/demo_hires.ndjson", "--log-json", "--http-port", "0"]
    out = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    hops = [line for line in lines if line.get("handler")]
    assert len(hops) == 9  # 3 hires x 3 handlers, one line each
    for line in hops:
        assert {"app", "handler", "message_id", "message_type", "correlation_id"} <= set(line)
    assert len({line["correlation_id"] for line in hops}) == 3
    assert any("serving /metrics /healthz /readyz" in line["message"] for line in lines)


@pytest.mark.kafka
def test_bus_trace_prints_a_process_from_kafka_topics(kafka_broker: DevBroker) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = unique("trace")
    env = {
        **os.environ,
        "ECHO_RUN": run,
        "BUS_TRANSPORT": "kafka",
        "BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "BUS_KAFKA_AUTO_ENSURE_TOPICS": "true",
        "BUS_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "BUS_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BUS_KAFKA_REQUEST_TIMEOUT_MS": "15000",
    }
    app = "tests.integration.echo_app"

    def bus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bus", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
        )  # fmt: skip

    runner = subprocess.Popen([sys.executable, "-m", "bus", "run", app], cwd=root, env=env, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        data = json.dumps({"key": "k1", "n": 7})
        sent = bus("publish", "it.echo.ping.v1", "--data", data, "-m", app, "--correlation-id", run)
        assert sent.returncode == 0, sent.stderr
        out = wait_until_blocking(
            lambda: bus("trace", run, app),
            until=lambda out: out.returncode == 0 and len(out.stdout.splitlines()) == 2,
            timeout_s=90,
            what="bus trace to show the ping and its pong",
            interval_s=1,
        )
    finally:
        runner.terminate()
        runner.wait(30)
    root_line, child = out.stdout.splitlines()
    assert root_line.startswith(f"it.echo.ping.v1  from bus://cli  it.echo.pings.{run}[")
    assert child.startswith(f"`- it.echo.pong.v1  from bus://echo-{run}  it.echo.pongs.{run}[")
    assert re.search(r"\+\d+\.\d ms$", child)
