"""The console's health and metrics: what ``/readyz`` checks and what ``/metrics`` adds.

The endpoints themselves are bus's (:class:`bus.HttpServer` serves ``/healthz``, ``/readyz``
and ``/metrics`` for every bus process, the console included); this module gives them the
console's parts:

- :func:`store_readiness`: ready while the saga store answers a read (a primary-key
  lookup) within ``timeout_s``; the console needs nothing else to show sagas;
- :class:`ConsoleMetrics`: requests by route, method and status (a counter and a latency
  histogram, recorded by its middleware) and whether the store answered its last probe.

Example::

    observer = ConsoleMetrics(default_metrics())
    async with HttpServer(port=0, readiness=store_readiness(store, observer)) as http: ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from bus import Metrics, MetricSpec, Readiness
from sagas.stores.base import SagaStore

__all__ = ["CATALOG", "ConsoleMetrics", "store_readiness"]

#: Every console metric (the histogram also exports ``_bucket`` with ``le``, ``_sum``, ``_count``).
CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec("bus_console_requests_total", "counter", ("route", "method", "status"),
               "Requests the operator console answered, by route (its path pattern), method "
               "and HTTP status."),
    MetricSpec("bus_console_request_duration_seconds", "histogram", ("route", "method", "status"),
               "Time the operator console took to answer a request, by route, method and "
               "status."),
    MetricSpec("bus_console_store_up", "gauge", (),
               "1 when the saga store answered the console's last probe (a read), else 0."),
)  # fmt: skip
_BY_NAME = {spec.name: spec for spec in CATALOG}
#: An id no saga has: the probe reads one row by primary key and finds none.
_PROBE_ID = "console-readiness-probe"
_METHODS = frozenset(("GET", "HEAD", "POST"))
#: The route of a request no route matched (a 404 or 405): one label, not one per path.
UNMATCHED = "unmatched"


class ConsoleMetrics:
    """Records the console's metrics on ``metrics``' registry; :meth:`middleware` times
    every request.

    Example::

        metrics = Metrics()
        observer = ConsoleMetrics(metrics)
        observer.request_done("/sagas", "GET", 200, duration_s=0.01)
        metrics.sample("bus_console_requests_total",
                       {"route": "/sagas", "method": "GET", "status": "200"})   # 1.0
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._requests = metrics.counter(_BY_NAME["bus_console_requests_total"])
        self._duration = metrics.histogram(_BY_NAME["bus_console_request_duration_seconds"])
        self._store_up = metrics.gauge(_BY_NAME["bus_console_store_up"])

    def request_done(self, route: str, method: str, status: int, *, duration_s: float) -> None:
        labels = (route, method if method in _METHODS else "other", str(status))
        self._requests.labels(*labels).inc()
        self._duration.labels(*labels).observe(duration_s)

    def store_answered(self, answered: bool) -> None:
        self._store_up.set(1 if answered else 0)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts and times every request, the redirects and refusals the console raises too."""
        began = time.perf_counter()
        status = 500  # what aiohttp answers for an exception that is not an HTTP one
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.request_done(
                route_of(request), request.method, status, duration_s=time.perf_counter() - began
            )


def route_of(request: web.Request) -> str:
    """The matched route's pattern (``/sagas/{saga_id}``), never the path: ids stay out of
    the labels."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def store_readiness(
    store: SagaStore, observer: ConsoleMetrics, *, timeout_s: float = 2.0, name: str = "store"
) -> Callable[[], Awaitable[Readiness]]:
    """``/readyz`` of the console: the saga store answers a read within ``timeout_s``.

    ``name`` says which store (a URL without its password) in the answer's checks.
    """

    async def check() -> Readiness:
        try:
            async with asyncio.timeout(timeout_s):
                await store.load(_PROBE_ID)
        # any failure of the read means the same thing here: not ready, said in the answer
        except Exception as exc:
            observer.store_answered(False)
            why = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            return Readiness(False, {"saga_store": f"{name}: {why}"})
        observer.store_answered(True)
        return Readiness(True, {"saga_store": f"{name} ok"})

    return check
