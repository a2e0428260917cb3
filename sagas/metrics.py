"""The saga metrics: defined here, on bus's registry, through its public metrics API.

:data:`CATALOG` lists each saga metric once (bus's own are ``bus.metrics.CATALOG``); the
table of docs/operating.md, the dashboards and alert rules in ``deploy/`` and the tests check against
both. :class:`SagaMetrics` is the coordinator's :class:`~sagas.coordinator.SagaObserver`
that records them. The names keep bus's ``bus_`` prefix and naming rules: one process
serves them all on one ``/metrics``.

Example::

    observer = SagaMetrics(default_metrics())      # or default_saga_metrics()
    Coordinator(catalog, store, transport, observer=observer)
"""

from __future__ import annotations

from collections.abc import Mapping

from bus import Metrics, MetricSpec, default_metrics

__all__ = ["CATALOG", "SagaMetrics", "default_saga_metrics"]

#: Every saga metric (histograms also export ``_bucket`` with ``le``, ``_sum``, ``_count``).
CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec("bus_sagas_started_total", "counter", ("saga",), "Saga instances started."),
    MetricSpec("bus_sagas_finished_total", "counter", ("saga", "status"),
               "Saga instances that reached a terminal status: completed, compensated, failed "
               "or cancelled."),
    MetricSpec("bus_sagas_needs_attention_total", "counter", ("saga",),
               "Times a saga instance stopped in needs_attention (an operator must act)."),
    MetricSpec("bus_sagas_active", "gauge", ("saga", "state"),
               "Saga instances not finished, by current state (as last counted by the "
               "coordinator)."),
    MetricSpec("bus_saga_oldest_active_age_seconds", "gauge", ("saga",),
               "Age of the oldest unfinished saga instance (stuck sagas grow it)."),
    MetricSpec("bus_saga_step_duration_seconds", "histogram", ("saga", "step", "outcome"),
               "Time from a step's command (or compensation) to its reply (outcome: "
               "succeeded, failed, compensated, timed_out)."),
    MetricSpec("bus_saga_duration_seconds", "histogram", ("saga", "status"),
               "Time from a saga's start to its terminal status."),
    MetricSpec("bus_saga_timeouts_total", "counter", ("saga", "step"),
               "Step deadlines that fired."),
    MetricSpec("bus_sagas_late_total", "counter", ("saga",),
               "Saga instances whose deadline (SagaDefinition deadline=) passed before they "
               "ended."),
    MetricSpec("bus_outbox_backlog", "gauge", ("store",),
               "Outbox entries saved and not yet published by the relay."),
    MetricSpec("bus_outbox_oldest_age_seconds", "gauge", ("store",),
               "Age of the oldest outbox entry not yet published (0 when empty)."),
    MetricSpec("bus_saga_store_waits_total", "counter", ("outcome",),
               "Saga store writes that waited, mostly for a saga row another replica holds "
               "locked: longer than 2 s and written (outcome written), or given up at the "
               "store's lock timeout and tried again alone (outcome lock_timeout)."),
    MetricSpec("bus_saga_early_inputs_total", "counter", ("saga", "outcome"),
               "Events for a saga not started yet (an approval before the hire's trigger): "
               "kept by the store (outcome kept), applied when the saga started (applied)."),
)  # fmt: skip
_BY_NAME = {spec.name: spec for spec in CATALOG}

#: Outcomes of ``bus_saga_store_waits_total`` (:meth:`SagaMetrics.saga_store_waited`).
STORE_WAIT_OUTCOMES = ("written", "lock_timeout")

#: Upper bounds (seconds) of a whole saga's duration: a second to a week (people approve).
SAGA_DURATION_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)


class SagaMetrics:
    """The coordinator's observer that records the saga metrics on ``metrics``' registry.

    Every hook runs after the transaction that made the change committed, and is cheap (a
    labelled prometheus_client update). Two of these on one registry record into the
    same metrics.

    Example::

        metrics = Metrics()
        observer = SagaMetrics(metrics)
        observer.saga_finished("onboarding", "completed", duration_s=12.5)
        metrics.sample("bus_sagas_finished_total", {"saga": "onboarding", "status": "completed"})
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        spec = _BY_NAME
        self._started = metrics.counter(spec["bus_sagas_started_total"])
        self._finished = metrics.counter(spec["bus_sagas_finished_total"])
        self._attention = metrics.counter(spec["bus_sagas_needs_attention_total"])
        self._active = metrics.gauge(spec["bus_sagas_active"])
        self._oldest = metrics.gauge(spec["bus_saga_oldest_active_age_seconds"])
        self._step_duration = metrics.histogram(spec["bus_saga_step_duration_seconds"])
        self._duration = metrics.histogram(
            spec["bus_saga_duration_seconds"], buckets=SAGA_DURATION_BUCKETS_S
        )
        self._timeouts = metrics.counter(spec["bus_saga_timeouts_total"])
        self._late = metrics.counter(spec["bus_sagas_late_total"])
        self._backlog = metrics.gauge(spec["bus_outbox_backlog"])
        self._outbox_age = metrics.gauge(spec["bus_outbox_oldest_age_seconds"])
        self._store_waits = metrics.counter(spec["bus_saga_store_waits_total"])
        for outcome in STORE_WAIT_OUTCOMES:  # exported at 0: the first wait is an increase
            self._store_waits.labels(outcome)
        self._early = metrics.counter(spec["bus_saga_early_inputs_total"])
        #: saga -> the states it was last reported with (a state no longer counted drops to 0)
        self._states: dict[str, set[str]] = {}

    def saga_started(self, saga: str) -> None:
        self._started.labels(saga).inc()

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None:
        """A saga instance reached terminal ``status`` (completed, compensated, failed, cancelled)."""
        self._finished.labels(saga, status).inc()
        self._duration.labels(saga, status).observe(duration_s)

    def saga_needs_attention(self, saga: str) -> None:
        """A saga instance stopped in needs_attention (not terminal: a retry resumes it)."""
        self._attention.labels(saga).inc()

    def saga_step_finished(self, saga: str, step: str, outcome: str, duration_s: float) -> None:
        """A step's reply (or timeout) arrived ``duration_s`` after its command was sent."""
        self._step_duration.labels(saga, step, outcome).observe(duration_s)

    def saga_timeout_fired(self, saga: str, step: str) -> None:
        self._timeouts.labels(saga, step).inc()

    def saga_late(self, saga: str) -> None:
        """A saga instance's deadline passed before it ended."""
        self._late.labels(saga).inc()

    def sagas_active(
        self, saga: str, by_state: Mapping[str, int], *, oldest_age_s: float = 0.0
    ) -> None:
        """The coordinator's latest count of unfinished instances per state (states absent: 0)."""
        known = self._states.setdefault(saga, set())
        for state in known - set(by_state):
            self._active.labels(saga, state).set(0)
        for state, count in by_state.items():
            self._active.labels(saga, state).set(count)
        known.update(by_state)
        self._oldest.labels(saga).set(oldest_age_s)

    def outbox_observed(self, store: str, *, backlog: int, oldest_age_s: float) -> None:
        """The relay's latest look at the outbox of ``store`` (e.g. "sqlite", "postgres")."""
        self._backlog.labels(store).set(backlog)
        self._outbox_age.labels(store).set(oldest_age_s)

    def saga_store_waited(self, outcome: str, duration_s: float) -> None:
        """A store write waited ``duration_s`` (outcome ``written`` or ``lock_timeout``)."""
        self._store_waits.labels(outcome).inc()

    def saga_early_input(self, saga: str, outcome: str) -> None:
        """An event for a saga not started yet was ``kept``, or ``applied`` at its start."""
        self._early.labels(saga, outcome).inc()


_default: SagaMetrics | None = None


def default_saga_metrics() -> SagaMetrics:
    """The saga metrics on the process's metrics (:func:`bus.default_metrics`), made once:
    what ``bus sagas run`` records and serves on ``/metrics``."""
    global _default
    if _default is None:
        _default = SagaMetrics(default_metrics())
    return _default
