"""Every metric bus exports, defined here and nowhere else (Prometheus conventions).

:data:`CATALOG` lists each metric once: name, type, labels, meaning. docs/operating.md's table,
the dashboards and alert rules (``deploy/``) and the tests all check against it.

Two kinds of recording, chosen by cost:

- the consume hot path (one call per record) adds to plain counters on a
  :class:`~bus.handler_stats.HandlerStats` pre-bound per (app, topic, handler) - an int increment and a
  ``bisect`` into fixed buckets, no lock, no label lookup - and a collector turns them
  into Prometheus samples when ``/metrics`` is scraped (everything runs on one event
  loop, so a scrape never sees half an update);
- rare events (commits) use ``prometheus_client`` metrics directly.

Packages on top of bus define their own metrics on the same registry, under the same
naming rules, with :meth:`Metrics.counter`, :meth:`Metrics.gauge` and
:meth:`Metrics.histogram` (``sagas.metrics`` does: bus knows nothing of sagas).

Example::

    metrics = Metrics()                       # its own registry (tests); or default_metrics()
    stats = metrics.handler_stats("identity", "hr.events", "create_account")
    stats.handled(duration_s=0.002, publish_s=0.0001, records=emitted_records)
    started = metrics.counter(MetricSpec("bus_orders_taken_total", "counter", ("shop",), "Orders."))
    started.labels("eu").inc()
    print(metrics.render().decode())

The catalog (:mod:`bus.metric_catalog`), the hot-path counters (:mod:`bus.handler_stats`)
and the scrape (:mod:`bus.metrics_scrape`) live in their own modules; their public names
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import Metric

from bus.errors import ConfigError
from bus.handler_stats import HandlerStats
from bus.metric_catalog import (
    BY_NAME,
    CATALOG,
    DEAD_LETTER_REASONS,
    DURATION_BUCKETS_S,
    NO_HANDLER,
    MetricSpec,
    MetricType,
    naming_problems,
)
from bus.metrics_scrape import HotPathCollector, WorkerView, hot_path_families
from bus.record import TopicPartition

__all__ = [
    "CATALOG",
    "DEAD_LETTER_REASONS",
    "DURATION_BUCKETS_S",
    "NO_HANDLER",
    "HandlerStats",
    "MetricSpec",
    "Metrics",
    "WorkerView",
    "default_metrics",
    "naming_problems",
]

_Defined = Counter | Gauge | Histogram
_C = TypeVar("_C", Counter, Gauge, Histogram)


class Metrics:
    """All of one process's metrics on one registry; hooks for every component.

    Workers take their :class:`HandlerStats` from :meth:`handler_stats` once per
    (app, topic, handler) and register with :meth:`watch` for the scrape-time gauges.
    Packages on top of bus add metrics of their own with :meth:`counter`, :meth:`gauge`
    and :meth:`histogram`.

    Example::

        metrics = Metrics()
        metrics.handler_stats("shop", "orders", "take_order").handled(0.002, 0.0)
        metrics.sample("bus_handler_duration_seconds_count",
                       {"app": "shop", "topic": "orders", "handler": "take_order"})  # 1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._handlers: dict[tuple[str, str, str], HandlerStats] = {}
        self._watched: list[WorkerView] = []
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._dead_letters: dict[tuple[str, str, str], int] = {}
        self._errors: dict[tuple[str, str, str], int] = {}
        self._retries: dict[tuple[str, str], int] = {}
        self._worker_failures: dict[str, int] = {}
        self._store_faults: dict[tuple[str, str], int] = {}
        #: Metrics defined by packages on top of bus: name -> (spec, buckets), collector.
        self._defined: dict[str, tuple[tuple[MetricSpec, tuple[float, ...]], _Defined]] = {}
        #: Set by the HTTP server's heartbeat.
        self.event_loop_lag_s = 0.0
        r = self.registry
        self._commit = Histogram(
            *_names("bus_commit_duration_seconds"), registry=r, buckets=DURATION_BUCKETS_S
        )
        r.register(HotPathCollector(self.collect_hot_path))

    # -- consume path -------------------------------------------------------------------
    def handler_stats(self, app: str, topic: str, handler: str) -> HandlerStats:
        """The pre-bound counters of one (app, topic, handler); the same object every call."""
        key = (app, topic, handler)
        stats = self._handlers.get(key)
        if stats is None:
            stats = self._handlers[key] = HandlerStats(app, topic, handler)
        return stats

    def expect(self, app: str, routes: Iterable[tuple[str, str]]) -> None:
        """Export zeros for the (topic, handler) pairs ``app`` will handle, before any record.

        Why: Prometheus cannot see an increase of a series whose first sample is already
        above zero, so an alert on the first dead letter needs the series at 0 first.
        """
        self._worker_failures.setdefault(app, 0)
        for topic, handler in routes:
            self.handler_stats(app, topic, handler)
            self._retries.setdefault((app, handler), 0)
            self._store_faults.setdefault((app, handler), 0)
            for reason in DEAD_LETTER_REASONS:
                self._dead_letters.setdefault((app, topic, reason), 0)

    def dead_lettered(self, app: str, topic: str, reason: str) -> None:
        self._dead_letters[(app, topic, reason)] = (
            self._dead_letters.get((app, topic, reason), 0) + 1
        )

    def handler_error(self, app: str, handler: str, error: BaseException) -> None:
        """A handler try failed with ``error`` (counted by its class name)."""
        key = (app, handler, type(error).__name__)
        self._errors[key] = self._errors.get(key, 0) + 1

    def worker_failed(self, app: str) -> None:
        """The worker of ``app`` stopped with an error."""
        self._worker_failures[app] = self._worker_failures.get(app, 0) + 1

    def store_fault(self, app: str, handler: str) -> None:
        """A dedup store operation for ``handler`` failed (the record is retried)."""
        self._store_faults[(app, handler)] = self._store_faults.get((app, handler), 0) + 1

    def handler_retry(self, app: str, handler: str) -> None:
        self._retries[(app, handler)] = self._retries.get((app, handler), 0) + 1

    def committed(self, app: str, offsets: Mapping[TopicPartition, int], duration_s: float) -> None:
        """A commit of ``offsets`` (next offsets to read) took ``duration_s``."""
        self._commit.labels(app).observe(duration_s)
        for tp, offset in offsets.items():
            self._committed[(app, tp)] = offset

    def watch(self, worker: WorkerView) -> None:
        """Report ``worker``'s in-flight records and lag at each scrape until :meth:`unwatch`."""
        self._watched.append(worker)

    def unwatch(self, worker: WorkerView) -> None:
        if worker in self._watched:
            self._watched.remove(worker)

    # -- metrics defined by packages on top of bus -------------------------------------
    def counter(self, spec: MetricSpec) -> Counter:
        """The counter ``spec`` describes, on this registry (defined on the first call; the
        same object for the same spec after). Record with ``.labels(*values).inc()``.

        Raises :class:`ConfigError` listing every problem: a name against the naming rules
        (:func:`naming_problems`), a spec of another type, a name bus uses, or a name
        already defined differently.

        Example::

            timeouts = metrics.counter(
                MetricSpec("bus_saga_timeouts_total", "counter", ("saga", "step"), "Step deadlines that fired.")
            )
            timeouts.labels("onboarding", "approve").inc()
        """
        name, help, labels = _collector_names(spec)
        return self._define(
            spec, "counter", (), lambda: Counter(name, help, labels, registry=self.registry)
        )

    def gauge(self, spec: MetricSpec) -> Gauge:
        """The gauge ``spec`` describes, like :meth:`counter`; ``.labels(*values).set(x)``."""
        name, help, labels = _collector_names(spec)
        return self._define(
            spec, "gauge", (), lambda: Gauge(name, help, labels, registry=self.registry)
        )

    def histogram(
        self, spec: MetricSpec, *, buckets: Sequence[float] = DURATION_BUCKETS_S
    ) -> Histogram:
        """The histogram ``spec`` describes, like :meth:`counter`, with ``buckets`` as upper
        bounds (default: :data:`DURATION_BUCKETS_S`); ``.labels(*values).observe(x)``."""
        name, help, labels = _collector_names(spec)
        bounds = tuple(buckets)
        return self._define(
            spec, "histogram", bounds,
            lambda: Histogram(name, help, labels, registry=self.registry, buckets=bounds),
        )  # fmt: skip

    def catalog(self) -> tuple[MetricSpec, ...]:
        """Every metric this registry exports: bus's :data:`CATALOG`, then those defined on it."""
        return (*CATALOG, *(spec for (spec, _), _ in self._defined.values()))

    def _define(
        self, spec: MetricSpec, type: MetricType, buckets: tuple[float, ...], make: Callable[[], _C]
    ) -> _C:
        problems = naming_problems(spec)
        if spec.type != type:
            problems.append(f"the spec is a {spec.type}, not a {type}")
        if spec.name in BY_NAME:
            problems.append("bus itself exports a metric of that name")
        known = self._defined.get(spec.name)
        if known is not None and known[0] != (spec, buckets):
            problems.append("it is already defined with another type, labels, help or buckets")
        if problems:
            raise ConfigError(f"metric {spec.name}: " + "; ".join(problems))
        if known is not None:
            return cast(_C, known[1])
        collector = make()
        self._defined[spec.name] = ((spec, buckets), collector)
        return collector

    # -- exposition ---------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format of every metric (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's current value (tests, the CLI); None when it has none yet."""
        return self.registry.get_sample_value(name, dict(labels or {}))

    def collect_hot_path(self) -> Iterator[Metric]:
        """The hot-path and scrape-time metrics as Prometheus families."""
        return hot_path_families(
            self._handlers.values(),
            handler_errors=self._errors,
            handler_retries=self._retries,
            dead_letters=self._dead_letters,
            worker_failures=self._worker_failures,
            store_faults=self._store_faults,
            watched=self._watched,
            committed=self._committed,
            event_loop_lag_s=self.event_loop_lag_s,
        )


def _names(name: str) -> tuple[str, str, tuple[str, ...]]:
    return _collector_names(BY_NAME[name])


def _collector_names(spec: MetricSpec) -> tuple[str, str, tuple[str, ...]]:
    """prometheus_client's (name, help, labels) of ``spec``: it adds ``_total`` itself."""
    base = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
    return base, spec.help, spec.labels


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process's metrics: what ``bus run`` serves on ``/metrics`` and workers record into.

    It also exports prometheus_client's standard ``process_*`` and ``python_*`` series.
    """
    global _default
    if _default is None:
        _default = Metrics()
        # the standard process_* (CPU, memory, fds), python_gc_* and python_info series
        ProcessCollector(registry=_default.registry)
        PlatformCollector(registry=_default.registry)
        GCCollector(registry=_default.registry)
    return _default
