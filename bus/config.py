"""A process's settings: :class:`BusConfig`, and the one import of every settings class.

Every setting has a ``BUS_*`` variable; the ones a command takes also a CLI flag (flags
win). Values are validated once, with an error naming the variable and what it accepts.

| variable | default | meaning |
|---|---|---|
| ``BUS_TRANSPORT`` | ``memory`` | ``memory`` (in-process) or ``kafka`` |
| ``BUS_PARTITIONS`` | ``3`` | partitions of topics the memory transport creates |
| ``BUS_MEMORY_RETENTION_RECORDS`` | ``100000`` | records the memory transport keeps per partition |
| ``BUS_MAX_CONCURRENCY`` | ``16`` | partitions handled at once per app |
| ``BUS_COMMIT_INTERVAL_S`` | ``0.5`` | seconds between offset commits |
| ``BUS_SHUTDOWN_DEADLINE_S`` | ``10`` | longest graceful shutdown, seconds |
| ``BUS_OFFSET_RESET`` | ``earliest`` | where a new group starts: ``earliest``/``latest`` |
| ``BUS_LOG_LEVEL`` | ``INFO`` | log level |
| ``BUS_LOG_JSON`` | ``false`` | JSON log lines |
| ``BUS_HTTP`` | ``true`` | serve ``/metrics``, ``/healthz``, ``/readyz`` in ``bus run`` |
| ``BUS_HTTP_HOST`` | ``127.0.0.1`` | address they listen on (``0.0.0.0`` in a container) |
| ``BUS_HTTP_PORT`` | ``9400`` | their port (``0``: any free port, logged at start) |
| ``BUS_HTTP_HEADER_TIMEOUT_S`` | ``10`` | seconds a request may take from its first byte to the end of its headers |
| ``BUS_HTTP_IDLE_TIMEOUT_S`` | ``30`` | seconds a connection may stay open without a request (keep-alive) |
| ``BUS_HTTP_MAX_CONNECTIONS`` | ``100`` | connections served at once; more are answered 503 and closed |
| ``BUS_HTTP_READINESS_INTERVAL_S`` | ``2`` | ``/readyz`` probes the transport at most once per this many seconds |
| ``BUS_OTEL`` | ``true`` | OpenTelemetry spans per handled message (when the ``otel`` extra is installed) |
| ``BUS_GC_YOUNG`` | ``50000`` | allocations between young garbage collections; ``0`` keeps Python's (``bus.gc_tuning``) |
| ``BUS_DEDUP_RETENTION_S`` | ``604800`` | seconds ``bus run`` keeps dedup completions (7 days; ``0``: forever) |

The Kafka transport's settings are :class:`~bus.kafka_config.KafkaConfig`
(``BUS_KAFKA_*``), the HTTP ingress's :class:`~bus.ingress_config.IngressConfig`
(``BUS_INGRESS_*``); both are importable from here. The variables are read by
:mod:`bus.environment`, the only module of bus that reads ``os.environ``.

The saga settings (``BUS_SAGA_STORE``, ``BUS_SAGA_RETENTION_S``, ``BUS_FAULT_POINT``) are
read by ``sagas.config``: bus knows nothing of sagas.

Example::

    config = BusConfig.from_env()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from bus.environment import Secret, env_secret, settings_from_env
from bus.errors import ConfigError
from bus.http_connections import HttpSettings
from bus.ingress_config import IngressConfig
from bus.kafka_config import KafkaConfig
from bus.types import OffsetReset
from bus.worker import WorkerSettings

__all__ = ["BusConfig", "IngressConfig", "KafkaConfig", "Secret", "TransportName", "env_secret"]

TransportName = Literal["memory", "kafka"]


@dataclass(frozen=True, slots=True)
class BusConfig:
    """One process's settings (see the module docstring for the variables)."""

    #: Where records travel: ``memory`` is an in-process partitioned log (the embedded
    #: default, one process), ``kafka`` the brokers of ``BUS_KAFKA_*``.
    transport: TransportName = "memory"
    #: Partitions of each topic the memory transport creates.
    partitions: int = 3
    #: Records the memory transport keeps per partition, oldest dropped first as with
    #: Kafka's retention (a consumer that fell behind resumes at the oldest kept record).
    memory_retention_records: int = 100_000
    #: Partitions an app handles at once (records within one partition stay in order).
    max_concurrency: int = 16
    #: Seconds between offset commits.
    commit_interval_s: float = 0.5
    #: Longest graceful shutdown, in seconds: stop fetching, finish in-flight records, commit.
    shutdown_deadline_s: float = 10.0
    #: Where a consumer group with no committed offset starts.
    offset_reset: OffsetReset = "earliest"
    #: Log level (``DEBUG`` shows every handled record).
    log_level: str = "INFO"
    #: One JSON object per log line (stderr), instead of lines for people.
    log_json: bool = False
    #: Serve /metrics, /healthz and /readyz while apps run.
    http: bool = True
    #: Address the HTTP endpoints listen on; ``0.0.0.0`` in a container.
    http_host: str = "127.0.0.1"
    #: Port of the HTTP endpoints; 0 = any free port (the log line ``serving /metrics
    #: /healthz /readyz on http://...`` names it).
    http_port: int = 9400
    #: Seconds a request may take from its first byte to the end of its headers; then the
    #: connection is closed (a slow or stalled client holds no descriptor for long).
    http_header_timeout_s: float = 10.0
    #: Seconds a connection may stay open without a request (keep-alive, or never used).
    http_idle_timeout_s: float = 30.0
    #: Connections the HTTP server serves at once; more are answered 503 and closed.
    http_max_connections: int = 100
    #: ``/readyz`` answers from a transport probe at most this many seconds old: one
    #: broker round trip per interval however often it is called.
    http_readiness_interval_s: float = 2.0
    #: OpenTelemetry spans per handled message, when the ``otel`` extra is installed.
    otel: bool = True
    #: Allocations between young garbage collections in ``bus run`` / ``bus sagas``
    #: processes, which also freeze their start-up heap; 0 keeps Python's (700, which cost
    #: the saga coordinator about 40% of its throughput; bus.gc_tuning).
    gc_young: int = 50_000
    #: Seconds a dedup store remembers a completed message; older completions are purged
    #: by ``bus run`` (hourly at most). Keep it above the topics' retention (Kafka's
    #: default, 7 days, is this default): a redelivered record older than it would run
    #: its handler again. 0 keeps everything.
    dedup_retention_s: float = 7 * 24 * 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> BusConfig:
        """Settings from ``env`` (default ``os.environ``), then ``overrides`` that are not None."""
        return cls(**settings_from_env(cls, "BUS_", env, overrides)).validated()

    def validated(self) -> BusConfig:
        problems = []
        if self.transport not in ("memory", "kafka"):
            problems.append(f"transport must be 'memory' or 'kafka', not {self.transport!r}")
        if self.partitions < 1:
            problems.append("partitions must be at least 1")
        if self.memory_retention_records < 1:
            problems.append("memory_retention_records must be at least 1")
        if self.max_concurrency < 1:
            problems.append("max_concurrency must be at least 1")
        if self.commit_interval_s <= 0:
            problems.append("commit_interval_s must be positive")
        if self.shutdown_deadline_s < 0:
            problems.append("shutdown_deadline_s must not be negative")
        if self.offset_reset not in ("earliest", "latest"):
            problems.append("offset_reset must be 'earliest' or 'latest'")
        if self.dedup_retention_s < 0:
            problems.append("dedup_retention_s must be 0 (keep everything) or more seconds")
        if self.gc_young < 0:
            problems.append("gc_young must be 0 (Python's default) or more allocations")
        if not 0 <= self.http_port <= 65535:
            problems.append("http_port must be 0-65535 (0 = any free port)")
        for name in ("http_header_timeout_s", "http_idle_timeout_s", "http_max_connections"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.http_readiness_interval_s < 0:
            problems.append("http_readiness_interval_s must be 0 (probe every call) or more")
        if problems:
            raise ConfigError("bad settings: " + "; ".join(problems))
        return self

    def http_settings(self) -> HttpSettings:
        """The limits of the process's HTTP server (:class:`bus.http.HttpServer`)."""
        return HttpSettings(
            header_timeout_s=self.http_header_timeout_s,
            idle_timeout_s=self.http_idle_timeout_s,
            max_connections=self.http_max_connections,
            readiness_interval_s=self.http_readiness_interval_s,
        )

    def worker_settings(self) -> WorkerSettings:
        return replace(
            WorkerSettings(),
            max_concurrency=self.max_concurrency,
            commit_interval_s=self.commit_interval_s,
            shutdown_deadline_s=self.shutdown_deadline_s,
            offset_reset=self.offset_reset,
            tracing=self.otel,
        )
