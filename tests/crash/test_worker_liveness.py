"""A worker that stopped must never look alive (issue 16, item 1).

Before: a worker whose run() ended with an error logged "stopped", and ``bus run`` stayed
up serving ``/healthz`` 200 with nothing consumed. Now ``/healthz`` fails while the
process is up, ``bus_worker_failures_total`` counts it, and ``bus run`` exits 1.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson

from bus import MemoryTransport, Metrics, Runner
from bus.http import HttpServer
from tests.crash import failing_app
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


async def test_healthz_fails_once_a_worker_stopped_with_an_error() -> None:
    metrics = Metrics()
    runner = Runner([failing_app.app], MemoryTransport(), metrics=metrics)
    stop = asyncio.Event()
    async with HttpServer(port=0, metrics=metrics, liveness=runner.failure) as server:
        task = asyncio.create_task(runner.run(stop))
        await wait_until(task.done, timeout_s=10, what="the runner to end")
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/healthz") as r:
            status, body = r.status, orjson.loads(await r.read())
    assert status == 503
    assert "the app's lifespan task broke" in body["stopped"]
    assert metrics.sample("bus_worker_failures_total", {"app": "failing"}) == 1
    assert task.exception() is not None


def test_bus_run_exits_1_when_a_worker_stops_with_an_error() -> None:
    env = {**os.environ, "BUS_TRANSPORT": "memory", "BUS_HTTP_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "bus", "run", "tests.crash.failing_app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "the app's lifespan task broke" in done.stderr
