"""A constant-rate HTTP/1.1 load generator for latency runs (a process of its own).

``wrk`` keeps every connection busy (a closed loop): its latencies hide the queueing a
server causes at a given rate. This client sends request ``n`` at ``start + n / rate``
whatever the answers do, and measures each latency from that scheduled time, so a slow
server is charged for the requests waiting behind a slow one (no coordinated omission).

It speaks just enough HTTP/1.1 for a keep-alive POST and its answer (a ``Content-Length``
body), on asyncio protocols with the requests encoded in advance: an aiohttp client took
half a core of the 2 at 1,000 requests/s, which the server under test then lacked.

Example::

    found = await constant_rate(
        "http://127.0.0.1:8080/events", {"Content-Type": "application/cloudevents+json"},
        lambda n: orjson.dumps({...event n...}), rate=1000, seconds=10,
    )
    found["p99_ms"]
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["constant_rate"]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, answered: Callable[[_Connection, int, float], None]) -> None:
        self._answered = answered
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._due = 0.0
        #: A request was sent and its answer has not arrived.
        self.busy = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due: float) -> None:
        assert self._transport is not None
        self._due = due
        self.busy = True
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        start = head.find(b"content-length:")
        length = 0
        if start >= 0:
            line_end = head.find(b"\r\n", start)
            length = int(head[start + 15 : line_end if line_end >= 0 else None])
        if len(self._buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self._buffer[: end + 4 + length]
        self.busy = False
        self._answered(self, status, self._due)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.busy:  # closed by the server before it answered: a failed request
            self.busy = False
            self._answered(self, 0, self._due)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def constant_rate(
    url: str,
    headers: dict[str, str],
    bodies: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    max_connections: int = 64,
) -> dict[str, float]:
    """POST ``bodies(n)`` at ``rate`` per second for ``seconds``: the latency percentiles
    (ms, from each request's scheduled time) and how many answers were not 202."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    prefix = f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}".encode()
    total = int(rate * seconds)
    requests = [
        prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body
        for body in (bodies(n) for n in range(total))
    ]
    latencies: list[float] = []
    failures = 0
    idle: collections.deque[_Connection] = collections.deque()
    waiting: collections.deque[tuple[bytes, float]] = collections.deque()
    connections: list[_Connection] = []
    finished = loop.create_future()

    def answered(connection: _Connection, status: int, due: float) -> None:
        nonlocal failures
        latencies.append(time.perf_counter() - due)
        if status != 202:
            failures += 1
        if connection.closed.done():
            connections.remove(connection)  # the next request opens another
        elif waiting:
            connection.send(*waiting.popleft())
        else:
            idle.append(connection)
        if len(latencies) == total and not finished.done():
            finished.set_result(None)

    start = time.perf_counter()
    for n, request in enumerate(requests):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle:
            idle.popleft().send(request, due)
        elif len(connections) < max_connections:
            _, connection = await loop.create_connection(lambda: _Connection(answered), host, port)
            connections.append(connection)
            connection.send(request, due)
        else:
            waiting.append((request, due))
    if total:
        try:  # a request left waiting when every connection closed is never answered
            await asyncio.wait_for(finished, timeout=seconds + 60)
        except TimeoutError:
            raise RuntimeError(f"{total - len(latencies)} requests got no answer") from None
    for connection in connections:
        connection.close()
    await asyncio.gather(*(c.closed for c in connections))
    latencies.sort()

    def pct(p: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"p50_ms": pct(0.5), "p99_ms": pct(0.99), "failures": failures, "sent": total}
