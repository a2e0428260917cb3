"""The limits of the HTTP server's connections: header timeout, idle timeout, a cap.

A client that opens connections and never finishes a request held a file descriptor each
for as long as it liked (300 such connections: 619 fds for 95 s). The one HTTP server of a
process (:class:`bus.http.HttpServer`: ``/metrics`` and the probes now, ingress later)
serves every connection through :class:`GuardedConnections`, which:

- closes a connection whose request headers are not complete ``header_timeout_s`` after
  its first byte (a slow or stalled client, "slowloris");
- closes a connection idle ``idle_timeout_s`` between requests (aiohttp's keep-alive
  timeout; also a connection that never sends a byte);
- answers a connection beyond ``max_connections`` open at once with ``503`` and closes it
  at once, so the process keeps its descriptors and the connections it already serves.

Example::

    guard = GuardedConnections(runner.server, HttpSettings(max_connections=50))
    server = await loop.create_server(guard, "127.0.0.1", 9400)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConnectionStats", "GuardedConnections", "HttpSettings"]

_REFUSED_BODY = b"too many open connections\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Limits of the HTTP server (``BUS_HTTP_*`` in :class:`bus.BusConfig`)."""

    #: Seconds a request may take from its first byte to the end of its headers.
    header_timeout_s: float = 10.0
    #: Seconds a connection may stay open without a request (keep-alive, or never used).
    idle_timeout_s: float = 30.0
    #: Connections served at once; more are answered 503 and closed.
    max_connections: int = 100
    #: ``/readyz`` answers from a probe at most this old (one transport round trip per
    #: interval however often it is called).
    readiness_interval_s: float = 2.0


@dataclass(slots=True)
class ConnectionStats:
    """Counters of :class:`GuardedConnections` (for tests and ``statistics()``)."""

    open: int = 0
    refused: int = 0
    header_timeouts: int = 0


class GuardedConnections:
    """A protocol factory for ``loop.create_server``: aiohttp's, behind the limits above.

    ``inner`` is aiohttp's protocol factory (``web.AppRunner.server``), which applies the
    idle timeout itself (``keepalive_timeout``). :meth:`request_started` and
    :meth:`request_done` come from the server's middleware: they say when a connection's
    headers are complete and when it is between requests again.
    """

    def __init__(self, inner: Callable[[], asyncio.Protocol], settings: HttpSettings) -> None:
        self._inner = inner
        self.settings = settings
        self.stats = ConnectionStats()
        self._guards: dict[asyncio.BaseTransport, _Guard] = {}

    def __call__(self) -> asyncio.Protocol:
        return _Guard(self, self._inner())

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        guard = self._guards.get(transport) if transport is not None else None
        if guard is not None:
            guard.in_request = True
            guard.disarm()

    def request_done(self, transport: asyncio.BaseTransport | None) -> None:
        guard = self._guards.get(transport) if transport is not None else None
        if guard is not None:
            guard.in_request = False


class _Guard(asyncio.Protocol):
    """One connection: aiohttp's protocol, with the header timer and the cap around it."""

    def __init__(self, owner: GuardedConnections, inner: Any) -> None:
        self._owner = owner
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False
        self.in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        stats = self._owner.stats
        if stats.open >= self._owner.settings.max_connections:
            stats.refused += 1
            transport.write(_REFUSAL)
            transport.close()
            return
        stats.open += 1
        self._counted = True
        self._transport = transport
        self._owner._guards[transport] = self
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return  # refused: whatever it sends is dropped
        if not self.in_request and self._timer is None:
            # the first byte of a request: its headers have header_timeout_s from now
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(
                self._owner.settings.header_timeout_s, self._headers_too_slow
            )
        self._inner.data_received(data)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self._transport is not None and not self.in_request:
            self._owner.stats.header_timeouts += 1
            self._transport.abort()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if not self._counted:
            return
        self._owner.stats.open -= 1
        if self._transport is not None:
            self._owner._guards.pop(self._transport, None)
        self._inner.connection_lost(exc)
