"""The HTTP server holds hostile clients to its limits (issue 16 item 6).

A real aiohttp server (:class:`bus.http.HttpServer`) on 127.0.0.1 and raw sockets as the
clients: 300 connections that never finished a request stayed open 95 s (619 fds) and
each ``/readyz`` was a broker round trip. Now a request's headers have
``header_timeout_s``, an idle connection ``idle_timeout_s``, connections beyond
``max_connections`` are answered 503 and closed while the ones served go on, and
``/readyz`` answers from one probe per ``readiness_interval_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import aiohttp

from bus import MemoryBroker, MemoryTransport, Metrics
from bus.http import HttpServer, HttpSettings, runner_readiness
from bus.runner import Runner
from tests.waiting import wait_until

#: Longest a test waits for the server to close a connection it must close.
CLOSED_WITHIN_S = 10.0


@asynccontextmanager
async def serving(settings: HttpSettings, **kwargs: Any) -> AsyncIterator[HttpServer]:
    async with HttpServer(port=0, metrics=Metrics(), settings=settings, **kwargs) as server:
        yield server


async def connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (fails if it does not)."""
    return await asyncio.wait_for(reader.read(), CLOSED_WITHIN_S)


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response.status


async def test_clients_that_never_finish_their_headers_are_cut_off() -> None:
    settings = HttpSettings(header_timeout_s=0.5, idle_timeout_s=60.0)
    async with serving(settings) as server:
        clients = [await connect(server) for _ in range(50)]
        for _, writer in clients:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never ends
            await writer.drain()
        answers = await asyncio.gather(*(closed_by_server(reader) for reader, _ in clients))
        assert all(a == b"" for a in answers), "a slow-header client got an answer"
        assert server.connections.stats.header_timeouts == 50
        await wait_until(lambda: server.connections.stats.open == 0, timeout_s=5, what="0 open")
        assert await get(f"{server.url}/healthz") == 200
        for _, writer in clients:
            writer.close()


async def test_idle_keep_alive_connections_and_silent_ones_are_closed() -> None:
    settings = HttpSettings(header_timeout_s=60.0, idle_timeout_s=0.5)
    async with serving(settings) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # keep-alive
        await writer.drain()
        answered = await closed_by_server(reader)
        assert answered.startswith(b"HTTP/1.1 200"), answered[:100]
        silent_reader, silent_writer = await connect(server)  # never sends a byte
        assert await closed_by_server(silent_reader) == b""
        await wait_until(lambda: server.connections.stats.open == 0, timeout_s=5, what="0 open")
        for w in (writer, silent_writer):
            w.close()


async def test_connections_over_the_cap_are_refused_while_the_served_ones_go_on() -> None:
    settings = HttpSettings(max_connections=10, header_timeout_s=60.0, idle_timeout_s=60.0)
    async with serving(settings) as server:
        held = [await connect(server) for _ in range(10)]
        await wait_until(
            lambda: server.connections.stats.open == 10, timeout_s=5, what="10 connections"
        )
        extra = [await connect(server) for _ in range(40)]
        refusals = await asyncio.gather(*(closed_by_server(reader) for reader, _ in extra))
        assert all(r.startswith(b"HTTP/1.1 503") for r in refusals), refusals[0][:100]
        assert server.connections.stats.refused == 40
        assert server.connections.stats.open == 10
        # a connection being served is not disturbed by the flood
        reader, writer = held[0]
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200")
        # once a slot is free, new clients are served again
        await wait_until(lambda: server.connections.stats.open == 9, timeout_s=5, what="9 open")
        assert await get(f"{server.url}/healthz") == 200
        for _, w in held + extra:
            w.close()


class CountingTransport(MemoryTransport):
    """The memory transport, counting the probes ``/readyz`` makes."""

    probes = 0

    async def probe(self, timeout_s: float = 2.0) -> bool:
        self.probes += 1
        await asyncio.sleep(0.05)  # a round trip: concurrent callers arrive meanwhile
        return await super().probe(timeout_s)


async def test_a_burst_of_readyz_calls_probes_the_transport_once_per_interval() -> None:
    transport = CountingTransport(MemoryBroker(default_partitions=1))
    await transport.start()
    runner = cast(Runner, SimpleNamespace(transport=transport, workers=[]))
    settings = HttpSettings(readiness_interval_s=60.0)
    try:
        async with serving(settings, readiness=runner_readiness(runner)) as server:
            connector = aiohttp.TCPConnector(limit=20)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def ready() -> int:
                    async with session.get(f"{server.url}/readyz") as response:
                        await response.read()
                        return response.status

                statuses = await asyncio.gather(*(ready() for _ in range(100)))
        assert statuses == [200] * 100
        assert transport.probes == 1
    finally:
        await transport.stop()
