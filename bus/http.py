"""Each process's HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz`` (aiohttp).

- ``/metrics``: every metric of :mod:`bus.metrics`, Prometheus text format.
- ``/healthz``: the event loop is responsive: 200 while a heartbeat task on the loop keeps
  waking up on time, 503 when it is, or last woke up, ``unhealthy_after_s`` late (a
  handler that blocks the loop), or when ``liveness`` names a worker that stopped with an
  error (``Runner.failure``). Restart the process when it fails; a loop blocked for
  good cannot answer at all, which the probe's timeout catches.
- ``/readyz``: the process can do its work: 200 when the transport answers a probe and
  every worker joined its group; 503 otherwise. Take the process out of rotation, do not
  restart it. Answered from a cached probe: at most one transport round trip per
  ``readiness_interval_s``, however often it is called (concurrent calls share one probe).

Both health bodies are JSON saying which check failed. Every connection is held to the
limits of :mod:`bus.http_connections` (header and idle timeouts, a connection cap): this
server is the one place they live, for whatever it serves.

Example::

    async with HttpServer(port=0, readiness=runner_readiness(runner)) as server:
        print(server.url)   # http://127.0.0.1:<port>
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from bus.errors import ConfigError
from bus.http_connections import GuardedConnections, HttpSettings
from bus.metrics import Metrics, default_metrics
from bus.runner import Runner

__all__ = ["CachedReadiness", "HttpServer", "HttpSettings", "Readiness", "runner_readiness"]

_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of ``/readyz``: ready or not, and each check's finding."""

    ready: bool
    #: Check name -> what it found, e.g. {"transport": "ok", "identity": "not running"}.
    checks: dict[str, str] = field(default_factory=dict)


ReadinessCheck = Callable[[], Awaitable[Readiness]]


async def _always_ready() -> Readiness:
    return Readiness(True, {})


def runner_readiness(runner: Runner, *, probe_timeout_s: float = 2.0) -> ReadinessCheck:
    """``/readyz`` of ``bus run``: the transport answers and every worker has joined.

    The partition count per app is reported, not required: a group with more members
    than partitions leaves some members idle, and they are still ready to take over.
    """

    async def check() -> Readiness:
        checks: dict[str, str] = {}
        reachable = await runner.transport.probe(timeout_s=probe_timeout_s)
        checks["transport"] = f"{runner.transport.name} ok" if reachable else "no answer"
        ready = reachable
        for worker in runner.workers:
            if worker.running and worker.store_fault is not None:
                checks[worker.app.name] = f"dedup store failing: {worker.store_fault}"
                ready = False
            elif worker.running:
                checks[worker.app.name] = f"running, {len(worker.end_offsets())} partition(s)"
            else:
                checks[worker.app.name] = "not running"
                ready = False
        return Readiness(ready, checks)

    return check


class CachedReadiness:
    """A readiness check run at most once per ``interval_s``; callers in between get its
    last answer, and callers during a probe wait for that probe, not a new one.

    ``probes`` counts the checks run.
    """

    def __init__(self, check: ReadinessCheck, interval_s: float) -> None:
        self._check = check
        self._interval_s = interval_s
        self._last: Readiness | None = None
        self._at = 0.0
        self._probe: asyncio.Task[Readiness] | None = None
        self.probes = 0

    async def __call__(self) -> Readiness:
        if self._last is not None and time.monotonic() - self._at < self._interval_s:
            return self._last
        if self._probe is None:
            self._probe = asyncio.create_task(self._run(), name="http-readiness-probe")
        # shielded: a client that hangs up must not cancel the probe the others wait on
        return await asyncio.shield(self._probe)

    async def _run(self) -> Readiness:
        try:
            self.probes += 1
            result = await self._check()
            self._last, self._at = result, time.monotonic()
            return result
        finally:
            self._probe = None

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe


class HttpServer:
    """The endpoints above on ``host:port`` (``port=0``: any free port, see :attr:`port`).

    Lives as long as its ``async with`` block; its heartbeat task too.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 9400,
        metrics: Metrics | None = None,
        readiness: ReadinessCheck = _always_ready,
        liveness: Callable[[], str | None] = lambda: None,
        heartbeat_interval_s: float = 0.25,
        unhealthy_after_s: float = 10.0,
        settings: HttpSettings | None = None,
        routes: Sequence[Callable[[web.Application], None]] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        #: Adds more endpoints to the application (the ingress's), before it starts.
        self._routes = routes
        #: Serve HTTPS with this context (certificate and key loaded) instead of HTTP.
        self.ssl_context = ssl_context
        self.metrics = metrics or default_metrics()
        self.settings = settings or HttpSettings()
        self._requested_port = port
        self.readiness = CachedReadiness(readiness, self.settings.readiness_interval_s)
        #: Why the process cannot do its work any more (a worker stopped), or None.
        self._liveness = liveness
        self._connections: GuardedConnections | None = None
        self._server: asyncio.Server | None = None
        self._interval_s = heartbeat_interval_s
        self._unhealthy_after_s = unhealthy_after_s
        self._last_beat = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.port = port

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def connections(self) -> GuardedConnections:
        """The connections and their counters (``connections.stats``), once started."""
        if self._connections is None:
            raise ConfigError("the HTTP server is not started: use 'async with HttpServer(...)'")
        return self._connections

    async def __aenter__(self) -> HttpServer:
        app = web.Application(middlewares=[self._track_requests])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for add_routes in self._routes:
            add_routes(app)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.settings.idle_timeout_s)
        await runner.setup()
        assert runner.server is not None
        connections = GuardedConnections(runner.server, self.settings)
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                connections,
                self.host,
                self._requested_port,
                reuse_address=True,
                ssl=self.ssl_context,
            )
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot serve HTTP on {self.host}:{self._requested_port}: {exc.strerror}; "
                "choose another port with --http-port / BUS_HTTP_PORT (0 = any free port)"
            ) from exc
        self._runner, self._server, self._connections = runner, server, connections
        self.port = int(server.sockets[0].getsockname()[1])
        self._last_beat = time.monotonic()
        self._heartbeat = asyncio.create_task(self._beat(), name="http-heartbeat")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.readiness.close()
        if self._server is not None:
            self._server.close()  # no new connections; the runner closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _track_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # headers complete: the header timer of this connection stops until its next request
        transport = request.transport
        self.connections.request_started(transport)
        try:
            return await handler(request)
        finally:
            self.connections.request_done(transport)

    async def _beat(self) -> None:
        # why a task: a blocked loop cannot answer /healthz at all; the task also reports
        # how late it woke up, which shows a loop that blocks for a while and recovers
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._interval_s)
            now = time.monotonic()
            self.metrics.event_loop_lag_s = max(0.0, now - before - self._interval_s)
            self._last_beat = now

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": _METRICS_CONTENT_TYPE}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        silent_s = time.monotonic() - self._last_beat
        beating = self._heartbeat is not None and not self._heartbeat.done()
        # late now (silent) or late at its last wake-up (lag): both mean a starved loop
        lag_s = self.metrics.event_loop_lag_s
        stopped = self._liveness()
        healthy = beating and max(silent_s, lag_s) < self._unhealthy_after_s and stopped is None
        body = {
            "healthy": healthy,
            "event_loop_lag_s": round(lag_s, 6),
            "last_heartbeat_s_ago": round(silent_s, 3),
            "stopped": stopped,
        }
        return _json(body, 200 if healthy else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        result = await self.readiness()
        return _json({"ready": result.ready, "checks": result.checks}, 200 if result.ready else 503)


def _json(body: object, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
