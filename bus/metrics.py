"""Every metric bus exports, defined here and nowhere else (Prometheus conventions).

:data:`CATALOG` lists each metric once: name, type, labels, meaning. docs/operating.md's table,
the dashboards and alert rules (``deploy/``) and the tests all check against it.

Two kinds of recording, chosen by cost:

- the consume hot path (one call per record) adds to plain counters on a
  :class:`HandlerStats` pre-bound per (app, topic, handler) - an int increment and a
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
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast

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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bus.errors import ConfigError
from bus.record import OutgoingRecord, TopicPartition

__all__ = [
    "CATALOG",
    "DURATION_BUCKETS_S",
    "HandlerStats",
    "MetricSpec",
    "Metrics",
    "WorkerView",
    "default_metrics",
    "naming_problems",
]

MetricType = Literal["counter", "gauge", "histogram"]

#: Upper bounds (seconds) of every duration histogram: 0.5 ms to 60 s.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_INF_INDEX = len(DURATION_BUCKETS_S)

#: Handler label of records that reached no handler (undecodable, unknown or skipped type).
NO_HANDLER = "none"
#: Every dead-letter reason the runtime gives (bus.errors.RecordError reasons and its own).
DEAD_LETTER_REASONS = (
    "handler_failed", "permanent_error", "output_rejected", "decode", "unknown_type", "invalid",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric, as docs/operating.md's table shows it.

    Example::

        MetricSpec("bus_sagas_started_total", "counter", ("saga",), "Saga instances started.")
    """

    #: ``bus_`` + what it measures; a counter ends in ``_total``, a duration or age in
    #: ``_seconds`` (:func:`naming_problems`).
    name: str
    type: MetricType
    #: Label names, low-cardinality only: no ids.
    labels: tuple[str, ...]
    #: One sentence: what is counted or measured, and when.
    help: str


#: Label names that would make a series per message or entity.
_ID_LABELS = frozenset({"id", "message_id", "correlation_id", "key"})


def naming_problems(spec: MetricSpec) -> list[str]:
    """What breaks the naming rules every bus metric follows (Prometheus conventions).

    >>> naming_problems(MetricSpec("bus_x_total", "gauge", (), "x"))
    ["a gauge's name must not end in _total"]
    """
    problems = []
    if not spec.name.startswith("bus_"):
        problems.append("the name must start with bus_")
    if spec.type == "counter" and not spec.name.endswith("_total"):
        problems.append("a counter's name must end in _total")
    if spec.type != "counter" and spec.name.endswith("_total"):
        problems.append(f"a {spec.type}'s name must not end in _total")
    timed = "_duration" in spec.name or "_age" in spec.name or "loop_lag" in spec.name
    if timed and not spec.name.endswith("_seconds"):
        problems.append("a duration or age is in seconds: the name must end in _seconds")
    if not spec.help.strip():
        problems.append("the help text is empty")
    if _ID_LABELS & set(spec.labels):
        problems.append(f"no id labels ({', '.join(sorted(_ID_LABELS & set(spec.labels)))})")
    return problems


def _spec(name: str, type: MetricType, labels: str, help: str) -> MetricSpec:
    return MetricSpec(name, type, tuple(labels.split()), help)


#: Every metric bus itself exports (histograms also export ``_bucket`` with ``le``, ``_sum``,
#: ``_count``); packages on top of bus define theirs with :meth:`Metrics.counter` & co.
CATALOG: tuple[MetricSpec, ...] = (
    _spec("bus_messages_consumed_total", "counter", "app topic handler outcome",
          "Records finished, by outcome: handled, dead_lettered, skipped (no handler for a "
          "known type), delayed (sent to a retry topic, consumed again later) or duplicate "
          "(deduplicated: handled before)."),
    _spec("bus_messages_produced_total", "counter", "app topic type",
          "Messages handlers emitted (returned or published), by destination topic and type."),
    _spec("bus_handler_duration_seconds", "histogram", "app topic handler",
          "Time a handler took to return, every try and retry wait included."),
    _spec("bus_handler_errors_total", "counter", "app handler error_type",
          "Failed handler tries, by exception class name (retried or not)."),
    _spec("bus_handler_retries_total", "counter", "app handler",
          "Handler tries that failed and were tried again in process."),
    _spec("bus_messages_dead_lettered_total", "counter", "app topic reason",
          "Records sent to the dead-letter topic, by source topic and reason "
          "(handler_failed, permanent_error, output_rejected, decode, unknown_type, invalid)."),
    _spec("bus_messages_in_flight", "gauge", "app",
          "Records fetched and not settled yet: buffered in a lane, being handled, or "
          "handled with outputs not yet acknowledged."),
    _spec("bus_consumer_lag", "gauge", "app topic partition",
          "Records in an owned partition after the group's last commit by this process "
          "(end offset as last seen minus committed offset)."),
    _spec("bus_commit_duration_seconds", "histogram", "app",
          "Time of one offset commit to the transport (every commit_interval_s)."),
    _spec("bus_publish_duration_seconds", "histogram", "app",
          "Time to hand one handled record's outputs to the transport (memory: appended and "
          "acknowledged; Kafka: queued in the producer, acknowledged before the commit)."),
    _spec("bus_worker_failures_total", "counter", "app",
          "Workers that stopped with an error (their partitions are no longer consumed by "
          "this process; /healthz fails until it restarts)."),
    _spec("bus_store_faults_total", "counter", "app handler",
          "Failures of bus's own dedup store (not the handler's): the record is kept, "
          "retried with backoff and never dead-lettered for it; /readyz is 503 meanwhile."),
    _spec("bus_event_loop_lag_seconds", "gauge", "",
          "How late the HTTP server's heartbeat woke up last (a blocked loop raises it)."),
)  # fmt: skip
_BY_NAME = {spec.name: spec for spec in CATALOG}


_Defined = Counter | Gauge | Histogram
_C = TypeVar("_C", Counter, Gauge, Histogram)


class HandlerStats:
    """Counters of one (app, topic, handler), updated on the hot path without labels.

    ``produced`` counts emitted records by their ``ce_type`` header, a tuple the codec
    shares between all records of a type (so no label is built per record; a type always
    goes to its one topic, kept in ``produced_topics``); ``*_buckets`` are per-bucket (not
    cumulative) counts over :data:`DURATION_BUCKETS_S` plus +Inf.
    """

    __slots__ = (
        "app",
        "dead_lettered",
        "delayed",
        "duplicates",
        "duration_buckets",
        "duration_sum_s",
        "handler",
        "produced",
        "produced_topics",
        "publish_buckets",
        "publish_sum_s",
        "skipped",
        "topic",
    )

    def __init__(self, app: str, topic: str, handler: str) -> None:
        self.app = app
        self.topic = topic
        self.handler = handler
        self.dead_lettered = 0
        self.skipped = 0
        self.delayed = 0
        self.duplicates = 0
        self.duration_buckets = [0] * (_INF_INDEX + 1)
        self.duration_sum_s = 0.0
        self.publish_buckets = [0] * (_INF_INDEX + 1)
        self.publish_sum_s = 0.0
        self.produced: dict[tuple[str, bytes], int] = {}
        self.produced_topics: dict[tuple[str, bytes], str] = {}

    def handled(
        self,
        duration_s: float,
        publish_s: float,
        records: Sequence[OutgoingRecord] = (),
        _bisect: Callable[[Sequence[float], float], int] = bisect_left,
        _bounds: tuple[float, ...] = DURATION_BUCKETS_S,
    ) -> None:
        """One record handled: handler time, time to send its outputs, the outputs.

        The hot path (once per record): globals bound as defaults, no label building.
        """
        self.duration_buckets[_bisect(_bounds, duration_s)] += 1
        self.duration_sum_s += duration_s
        if records:
            self.publish_buckets[_bisect(_bounds, publish_s)] += 1
            self.publish_sum_s += publish_s
            counts = self.produced
            for record in records:
                header = record[3][3]  # codec.encode puts ce_type fourth
                if header[0] != "ce_type":
                    header = _type_header(record[3])
                n = counts.get(header)
                if n is None:
                    counts[header] = 1
                    self.produced_topics[header] = record[0]
                else:
                    counts[header] = n + 1

    @property
    def handled_count(self) -> int:
        """Records handled (every one is in exactly one duration bucket)."""
        return sum(self.duration_buckets)


class WorkerView(Protocol):
    """What the collector reads from a running worker at scrape time (nothing on the hot path)."""

    @property
    def app_name(self) -> str: ...

    def in_flight(self) -> int:
        """Records fetched and not settled yet."""

    def end_offsets(self) -> Mapping[TopicPartition, int | None]:
        """Owned partitions and their end offsets as last seen (None: not known yet)."""


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
        r.register(_HotPathCollector(self))

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
        if spec.name in _BY_NAME:
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
        consumed = _counter("bus_messages_consumed_total")
        produced = _counter("bus_messages_produced_total")
        duration = _histogram("bus_handler_duration_seconds")
        publish: dict[str, tuple[list[int], float]] = {}
        for s in self._handlers.values():
            for outcome, n in (
                ("handled", s.handled_count),
                ("dead_lettered", s.dead_lettered),
                ("skipped", s.skipped),
                ("delayed", s.delayed),
                ("duplicate", s.duplicates),
            ):
                if n or outcome == "handled":
                    consumed.add_metric([s.app, s.topic, s.handler, outcome], n)
            for header, n in s.produced.items():
                topic = s.produced_topics[header]
                produced.add_metric([s.app, topic, header[1].decode(errors="replace")], n)
            if s.handler != NO_HANDLER:
                duration.add_metric(
                    [s.app, s.topic, s.handler], _buckets(s.duration_buckets), s.duration_sum_s
                )
            buckets, total = publish.get(s.app, ([0] * (_INF_INDEX + 1), 0.0))
            publish[s.app] = (
                [a + b for a, b in zip(buckets, s.publish_buckets, strict=True)],
                total + s.publish_sum_s,
            )
        publish_family = _histogram("bus_publish_duration_seconds")
        for app, (buckets, total) in publish.items():
            publish_family.add_metric([app], _buckets(buckets), total)
        errors = _counter("bus_handler_errors_total")
        for labels, n in self._errors.items():
            errors.add_metric(list(labels), n)
        retries = _counter("bus_handler_retries_total")
        for (app, handler), n in self._retries.items():
            retries.add_metric([app, handler], n)
        dead = _counter("bus_messages_dead_lettered_total")
        for labels, n in self._dead_letters.items():
            dead.add_metric(list(labels), n)
        failures = _counter("bus_worker_failures_total")
        for app, n in self._worker_failures.items():
            failures.add_metric([app], n)
        faults = _counter("bus_store_faults_total")
        for (app, handler), n in self._store_faults.items():
            faults.add_metric([app, handler], n)
        in_flight = _gauge("bus_messages_in_flight")
        lag = _gauge("bus_consumer_lag")
        for worker in self._watched:
            app = worker.app_name
            in_flight.add_metric([app], worker.in_flight())
            for tp, end in sorted(worker.end_offsets().items()):
                if end is not None:
                    done = self._committed.get((app, tp), 0)
                    lag.add_metric([app, tp.topic, str(tp.partition)], max(0, end - done))
        loop = _gauge("bus_event_loop_lag_seconds")
        loop.add_metric([], self.event_loop_lag_s)
        yield from (consumed, produced, duration, publish_family, errors, retries, dead)
        yield from (failures, faults, in_flight, lag, loop)


class _HotPathCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.collect_hot_path()


def _type_header(headers: Sequence[tuple[str, bytes]]) -> tuple[str, bytes]:
    for header in headers:
        if header[0] == "ce_type":
            return header
    return ("ce_type", b"unknown")


def _names(name: str) -> tuple[str, str, tuple[str, ...]]:
    return _collector_names(_BY_NAME[name])


def _collector_names(spec: MetricSpec) -> tuple[str, str, tuple[str, ...]]:
    """prometheus_client's (name, help, labels) of ``spec``: it adds ``_total`` itself."""
    base = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
    return base, spec.help, spec.labels


def _counter(name: str) -> CounterMetricFamily:
    spec = _BY_NAME[name]
    return CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=spec.labels)


def _gauge(name: str) -> GaugeMetricFamily:
    spec = _BY_NAME[name]
    return GaugeMetricFamily(name, spec.help, labels=spec.labels)


def _histogram(name: str) -> HistogramMetricFamily:
    spec = _BY_NAME[name]
    return HistogramMetricFamily(name, spec.help, labels=spec.labels)


def _buckets(counts: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus's cumulative ``le`` buckets."""
    out = []
    running = 0
    for bound, n in zip((*DURATION_BUCKETS_S, float("inf")), counts, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return out


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
