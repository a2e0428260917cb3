"""Every metric bus exports, defined here and nowhere else (Prometheus conventions).

:data:`CATALOG` lists each metric once: name, type, labels, meaning. The README's table,
the dashboards and alert rules (``deploy/``) and the tests all check against it.

Two kinds of recording, chosen by cost:

- the consume hot path (one call per record) adds to plain counters on a
  :class:`HandlerStats` pre-bound per (app, topic, handler) - an int increment and a
  ``bisect`` into fixed buckets, no lock, no label lookup - and a collector turns them
  into Prometheus samples when ``/metrics`` is scraped (everything runs on one event
  loop, so a scrape never sees half an update);
- rare events (commits, errors, saga transitions, outbox checks) use ``prometheus_client``
  metrics directly.

Example::

    metrics = Metrics()                       # its own registry (tests); or default_metrics()
    stats = metrics.handler_stats("identity", "hr.events", "create_account")
    stats.handled(duration_s=0.002, publish_s=0.0001, records=emitted_records)
    metrics.saga_started("onboarding")
    print(metrics.render().decode())
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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

from bus.record import OutgoingRecord, TopicPartition

__all__ = [
    "CATALOG",
    "DURATION_BUCKETS_S",
    "HandlerStats",
    "MetricSpec",
    "Metrics",
    "WorkerView",
    "default_metrics",
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
    """One exported metric, as the README's table shows it."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str


def _spec(name: str, type: MetricType, labels: str, help: str) -> MetricSpec:
    return MetricSpec(name, type, tuple(labels.split()), help)


#: Every metric bus exports (histograms also export ``_bucket`` with ``le``, ``_sum``, ``_count``).
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
    _spec("bus_sagas_started_total", "counter", "saga", "Saga instances started."),
    _spec("bus_sagas_finished_total", "counter", "saga status",
          "Saga instances that reached a terminal status: completed, compensated, failed or "
          "cancelled."),
    _spec("bus_sagas_needs_attention_total", "counter", "saga",
          "Times a saga instance stopped in needs_attention (an operator must act)."),
    _spec("bus_sagas_active", "gauge", "saga state",
          "Saga instances not finished, by current state (as last counted by the coordinator)."),
    _spec("bus_saga_oldest_active_age_seconds", "gauge", "saga",
          "Age of the oldest unfinished saga instance (stuck sagas grow it)."),
    _spec("bus_saga_step_duration_seconds", "histogram", "saga step outcome",
          "Time from a step's command (or compensation) to its reply (outcome: succeeded, "
          "failed, compensated, timed_out)."),
    _spec("bus_saga_duration_seconds", "histogram", "saga status",
          "Time from a saga's start to its terminal status."),
    _spec("bus_saga_timeouts_total", "counter", "saga step", "Step deadlines that fired."),
    _spec("bus_outbox_backlog", "gauge", "store",
          "Outbox entries saved and not yet published by the relay."),
    _spec("bus_outbox_oldest_age_seconds", "gauge", "store",
          "Age of the oldest outbox entry not yet published (0 when empty)."),
    _spec("bus_event_loop_lag_seconds", "gauge", "",
          "How late the HTTP server's heartbeat woke up last (a blocked loop raises it)."),
)  # fmt: skip
_BY_NAME = {spec.name: spec for spec in CATALOG}


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
    The saga coordinator and the outbox relay call the ``saga_*`` and ``outbox_*`` hooks.

    Example::

        metrics = Metrics()
        metrics.saga_finished("onboarding", "completed", duration_s=12.5)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._handlers: dict[tuple[str, str, str], HandlerStats] = {}
        self._watched: list[WorkerView] = []
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._dead_letters: dict[tuple[str, str, str], int] = {}
        self._errors: dict[tuple[str, str, str], int] = {}
        self._retries: dict[tuple[str, str], int] = {}
        self._saga_states: dict[str, set[str]] = {}
        #: Set by the HTTP server's heartbeat.
        self.event_loop_lag_s = 0.0
        r = self.registry
        self._commit = Histogram(
            *_names("bus_commit_duration_seconds"), registry=r, buckets=DURATION_BUCKETS_S
        )
        self._sagas_started = Counter(*_names("bus_sagas_started_total"), registry=r)
        self._sagas_finished = Counter(*_names("bus_sagas_finished_total"), registry=r)
        self._sagas_attention = Counter(*_names("bus_sagas_needs_attention_total"), registry=r)
        self._sagas_active = Gauge(*_names("bus_sagas_active"), registry=r)
        self._saga_oldest = Gauge(*_names("bus_saga_oldest_active_age_seconds"), registry=r)
        self._step_duration = Histogram(
            *_names("bus_saga_step_duration_seconds"), registry=r, buckets=DURATION_BUCKETS_S
        )
        self._saga_duration = Histogram(
            *_names("bus_saga_duration_seconds"),
            registry=r,
            buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400),
        )
        self._saga_timeouts = Counter(*_names("bus_saga_timeouts_total"), registry=r)
        self._outbox_backlog = Gauge(*_names("bus_outbox_backlog"), registry=r)
        self._outbox_age = Gauge(*_names("bus_outbox_oldest_age_seconds"), registry=r)
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
        for topic, handler in routes:
            self.handler_stats(app, topic, handler)
            self._retries.setdefault((app, handler), 0)
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

    # -- sagas (called by the coordinator) ----------------------------------------------
    def saga_started(self, saga: str) -> None:
        self._sagas_started.labels(saga).inc()

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None:
        """A saga instance reached terminal ``status`` (completed, compensated, failed, cancelled)."""
        self._sagas_finished.labels(saga, status).inc()
        self._saga_duration.labels(saga, status).observe(duration_s)

    def saga_needs_attention(self, saga: str) -> None:
        """A saga instance stopped in needs_attention (not terminal: a retry resumes it)."""
        self._sagas_attention.labels(saga).inc()

    def saga_step_finished(self, saga: str, step: str, outcome: str, duration_s: float) -> None:
        """A step's reply (or timeout) arrived ``duration_s`` after its command was sent."""
        self._step_duration.labels(saga, step, outcome).observe(duration_s)

    def saga_timeout_fired(self, saga: str, step: str) -> None:
        self._saga_timeouts.labels(saga, step).inc()

    def sagas_active(
        self, saga: str, by_state: Mapping[str, int], *, oldest_age_s: float = 0.0
    ) -> None:
        """The coordinator's latest count of unfinished instances per state (states absent: 0)."""
        known = self._saga_states.setdefault(saga, set())
        for state in known - set(by_state):
            self._sagas_active.labels(saga, state).set(0)
        for state, count in by_state.items():
            self._sagas_active.labels(saga, state).set(count)
        known.update(by_state)
        self._saga_oldest.labels(saga).set(oldest_age_s)

    def outbox_observed(self, store: str, *, backlog: int, oldest_age_s: float) -> None:
        """The relay's latest look at the outbox of ``store`` (e.g. "sqlite", "postgres")."""
        self._outbox_backlog.labels(store).set(backlog)
        self._outbox_age.labels(store).set(oldest_age_s)

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
        yield from (in_flight, lag, loop)


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
    spec = _BY_NAME[name]
    base = name.removesuffix("_total") if spec.type == "counter" else name
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
