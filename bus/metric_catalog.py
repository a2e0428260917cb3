"""The catalog of every metric bus exports (Prometheus conventions), and the naming rules.

:data:`CATALOG` lists each metric once: name, type, labels, meaning. docs/operating.md's table,
the dashboards and alert rules (``deploy/``) and the tests all check against it;
:class:`bus.metrics.Metrics` records them.

Example::

    [spec.name for spec in CATALOG if spec.type == "histogram"]
    naming_problems(MetricSpec("bus_x_total", "gauge", (), "x"))  # ["a gauge's name ..."]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BY_NAME",
    "CATALOG",
    "DEAD_LETTER_REASONS",
    "DURATION_BUCKETS_S",
    "NO_HANDLER",
    "MetricSpec",
    "MetricType",
    "naming_problems",
]

MetricType = Literal["counter", "gauge", "histogram"]

#: Upper bounds (seconds) of every duration histogram: 0.5 ms to 60 s.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

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
#: Each spec of :data:`CATALOG` by its name.
BY_NAME = {spec.name: spec for spec in CATALOG}
