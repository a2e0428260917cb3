"""The ingress benchmark's constant-rate client (bench/rate_client.py) against a local server:
it counts what was answered 202, what was not, and a connection closed mid-request."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from rate_client import constant_rate

pytestmark = pytest.mark.asyncio


async def _answer(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    n = int(body)
    if n % 10 == 3 and request.transport is not None:
        request.transport.close()  # mid-request: no answer at all
        return web.Response(status=500)
    return web.Response(status=202 if n % 2 == 0 else 400, body=b'{"accepted":1}')


async def _slow(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(0.02)  # the server's service time
    return web.Response(status=202)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/events", _answer)
    app.router.add_post("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/events"
    await runner.cleanup()


async def test_every_request_is_answered_or_counted_as_failed(url: str) -> None:
    found = await constant_rate(url, {}, lambda n: b"%d" % n, rate=200, seconds=0.5)
    # 100 requests: the even ones 202, the odd ones 400, and those ending in 3 cut off
    assert found["sent"] == 100
    assert found["failures"] == 50
    assert 0 < found["p50_ms"] <= found["p99_ms"]


async def test_latency_is_counted_from_the_scheduled_time_not_the_send(url: str) -> None:
    # 10 requests due within 10 ms on one connection to a server taking 20 ms each: the
    # last waits for the nine before it, and that wait is part of its latency (no
    # coordinated omission); timed from its send it would be 20 ms
    found = await constant_rate(
        url.replace("/events", "/slow"), {}, lambda n: b"0", rate=1000, seconds=0.01,
        max_connections=1,
    )  # fmt: skip
    assert found["sent"] == 10
    assert found["failures"] == 0
    assert found["p99_ms"] >= 9 * 20
