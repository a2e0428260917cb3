"""Settings from the environment: the only module of bus that reads ``os.environ``.

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

The saga settings (``BUS_SAGA_STORE``, ``BUS_SAGA_RETENTION_S``, ``BUS_FAULT_POINT``) are
read by ``sagas.config``: bus knows nothing of sagas.

Example::

    config = BusConfig.from_env()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from bus.errors import ConfigError
from bus.http_connections import HttpSettings
from bus.types import OffsetReset
from bus.worker import WorkerSettings

__all__ = ["BusConfig", "IngressConfig", "KafkaConfig", "Secret", "TransportName", "env_secret"]

TransportName = Literal["memory", "kafka"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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
        return cls(**_settings_from_env(cls, "BUS_", env, overrides)).validated()

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


def _settings_from_env(
    cls: type[Any],
    prefix: str,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Field values of dataclass ``cls`` from ``<prefix><FIELD>`` variables, then overrides.

    Every unparsable variable is reported at once, by name: values are never echoed (some
    are secrets).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = dict(defaults or {})
    problems: list[str] = []
    for f in fields(cls):
        var = prefix + f.name.upper()
        if var in env:
            try:
                values[f.name] = _parse(env[var], f.type)
            except ValueError as exc:
                problems.append(f"{var}: {exc}")
    if problems:
        raise ConfigError("bad environment: " + "; ".join(problems))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def _parse(text: str, type_name: object) -> Any:
    kind = str(type_name).replace(" | None", "")
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"expected {'a whole number' if kind == 'int' else 'a number'}") from None
    return text.strip()


class Secret:
    """A credential that never shows itself in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
Acks = Literal["all", "1", "0"]


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Settings of the Kafka transport; each is also ``BUS_KAFKA_<NAME>`` in the environment.

    Example::

        KafkaConfig.from_env(bootstrap_servers="127.0.0.1:9092")
    """

    #: Comma-separated ``host:port`` list.
    bootstrap_servers: str = "127.0.0.1:9092"
    #: Client id shown in broker logs and quotas.
    client_id: str = "bus"
    #: How clients talk to the brokers: plain, TLS, SASL, or SASL over TLS.
    security_protocol: SecurityProtocol = "PLAINTEXT"
    #: SASL mechanism; required with ``SASL_*``.
    sasl_mechanism: SaslMechanism | None = None
    #: SASL user (the password is ``BUS_KAFKA_SASL_PASSWORD``).
    sasl_username: str | None = None
    #: From ``BUS_KAFKA_SASL_PASSWORD`` only (a flag would show in ``ps``).
    sasl_password: Secret | None = None
    #: CA bundle to verify the brokers (SSL, SASL_SSL); system CAs when unset.
    ssl_cafile: str | None = None
    #: Client certificate for mutual TLS (with ``ssl_keyfile``).
    ssl_certfile: str | None = None
    #: Client key for mutual TLS (with ``ssl_certfile``).
    ssl_keyfile: str | None = None
    #: Acknowledgement the producer waits for: all replicas, the leader, or none.
    acks: Acks = "all"
    #: How long the producer waits to fill a batch, in milliseconds.
    linger_ms: int = 5
    #: Largest batch per partition, in bytes.
    max_batch_bytes: int = 262_144
    #: Largest request, in bytes: a bigger record is refused (MessageTooLargeError).
    max_request_bytes: int = 1_048_576
    #: Producer compression; ``snappy``, ``lz4`` and ``zstd`` need ``cramjam``.
    compression: Compression = "none"
    #: Idempotent producer (Apache Kafka; Tansu does not support it with aiokafka).
    enable_idempotence: bool = False
    #: Refused when set: bus begins no Kafka transaction, and a transactional producer
    #: refuses every send outside one. Exactly-once effects come from the dedup store
    #: (docs/dedup.md). Kept only to say so to whoever sets BUS_KAFKA_TRANSACTIONAL_ID.
    transactional_id: str | None = None
    #: Consumer group session timeout, in milliseconds.
    session_timeout_ms: int = 10_000
    #: Consumer heartbeat interval, in milliseconds (about a third of the session timeout).
    heartbeat_interval_ms: int = 3_000
    #: Longest time between polls before the member is considered stuck, in milliseconds.
    max_poll_interval_ms: int = 300_000
    #: Longest wait of a fetch request on the broker, in milliseconds (latency vs. requests).
    fetch_max_wait_ms: int = 100
    #: Longest wait for a broker answer, in milliseconds (must exceed a group join).
    request_timeout_ms: int = 40_000
    #: How long start() keeps retrying an unreachable broker, in seconds.
    connect_timeout_s: float = 60.0
    #: Longest wait of ``publish`` / ``publish_many`` for the broker's acknowledgement, in
    #: seconds; then TransportError (the record may still be delivered later). Also the
    #: longest ``stop()`` flushes unacknowledged sends before dropping them.
    publish_timeout_s: float = 30.0
    #: Create missing topics when an app starts.
    auto_ensure_topics: bool = False
    #: Partitions of topics bus creates without an explicit TopicSpec.
    default_partitions: int = 3
    #: Replication factor of topics bus creates without an explicit TopicSpec.
    default_replication_factor: int = 1

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> KafkaConfig:
        """Settings from ``defaults``, then ``BUS_KAFKA_*`` in ``env`` (default
        ``os.environ``), then ``overrides`` that are not None.

        ``defaults`` replace the class's defaults for one kind of caller (a one-shot CLI
        command's short ``connect_timeout_s``) while a variable still wins over them.
        """
        values = _settings_from_env(cls, "BUS_KAFKA_", env, overrides, defaults)
        if isinstance(values.get("sasl_password"), str):
            values["sasl_password"] = Secret(values["sasl_password"])
        return cls(**values).validated()

    def validated(self) -> KafkaConfig:
        """This config, or :class:`ConfigError` listing every problem."""
        problems = []
        if not self.bootstrap_servers.strip():
            problems.append("bootstrap_servers is empty: set BUS_KAFKA_BOOTSTRAP_SERVERS=host:port")
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                problems.append(f"bootstrap server {server.strip()!r} must be host:port")
        choices: dict[str, tuple[str, ...]] = {
            "security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
            "acks": ("all", "1", "0"),
            "compression": ("none", "gzip", "snappy", "lz4", "zstd"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                problems.append("SASL needs sasl_mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            if not self.sasl_username or self.sasl_password is None:
                problems.append("SASL needs sasl_username and BUS_KAFKA_SASL_PASSWORD")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not os.path.exists(path):
                problems.append(f"{name} {path!r} does not exist")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            problems.append("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        for name in ("linger_ms", "fetch_max_wait_ms"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        for name in ("max_batch_bytes", "max_request_bytes", "session_timeout_ms",
                     "heartbeat_interval_ms", "request_timeout_ms", "default_partitions",
                     "default_replication_factor"):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if self.transactional_id is not None:
            problems.append(
                "transactional_id is not supported (BUS_KAFKA_TRANSACTIONAL_ID): bus begins no "
                "Kafka transaction, and a transactional producer refuses every send outside "
                "one. For exactly-once effects use a dedup store (docs/dedup.md): a handler's "
                "effect and its completion commit in one database transaction"
            )
        if self.publish_timeout_s <= 0:
            problems.append("publish_timeout_s must be positive (BUS_KAFKA_PUBLISH_TIMEOUT_S)")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            problems.append("heartbeat_interval_ms must be below session_timeout_ms")
        if self.request_timeout_ms <= self.session_timeout_ms:
            problems.append(
                "request_timeout_ms must exceed session_timeout_ms (a group join is held up "
                "to the session timeout)"
            )
        if problems:
            raise ConfigError("bad kafka settings: " + "; ".join(problems))
        return self


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """Settings of the HTTP ingress (``bus ingress``); each is ``BUS_INGRESS_<NAME>``.

    It listens where the process's HTTP server does (``BUS_HTTP_HOST``/``BUS_HTTP_PORT``,
    with the same connection limits), beside ``/metrics`` and the probes.

    Example::

        IngressConfig.from_env(tokens_file="/run/secrets/tokens.toml")
    """

    #: The token file (TOML or JSON, see :mod:`bus.ingress.tokens`); re-read on change.
    tokens_file: str | None = None
    #: Accept requests without a token (no auth, no rate limit): trusted networks only.
    allow_anonymous: bool = False
    #: Seconds between looks at the token file's modification time.
    tokens_check_interval_s: float = 1.0
    #: Serve HTTPS with this certificate chain (PEM) and key; both or neither.
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    #: Largest request body, bytes; larger is answered 413.
    max_body_bytes: int = 1_048_576
    #: Most events in one batch request; more is answered 413.
    max_batch_events: int = 1_000
    #: Events being published at once; beyond it requests are answered 503 (the producer
    #: queue is full) with ``Retry-After``.
    max_pending_events: int = 20_000
    #: Seconds a 503 asks the caller to wait (``Retry-After``).
    retry_after_s: float = 1.0
    #: Seconds a request's body may take to arrive once its headers have (a client that
    #: trickles it holds a connection and a pending slot): beyond it, 408 and closed.
    body_timeout_s: float = 30.0
    #: Dedup store of accepted events: ``""`` (none), ``memory``, ``sqlite:PATH`` or a
    #: ``postgresql://`` DSN (shared by replicas).
    dedup_store: str = ""
    #: Seconds a re-post of an accepted event (same source and id) is a duplicate.
    dedup_window_s: float = 24 * 3600.0
    #: Seconds an event recorded but not yet acknowledged is taken to be in flight at
    #: another replica (a re-post meanwhile is answered 503); after it, a re-post
    #: publishes the recorded event again. Keep it above ``BUS_KAFKA_PUBLISH_TIMEOUT_S``.
    dedup_lease_s: float = 35.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> IngressConfig:
        """Settings from ``env`` (default ``os.environ``), then ``overrides`` that are not None."""
        return cls(**_settings_from_env(cls, "BUS_INGRESS_", env, overrides)).validated()

    def validated(self) -> IngressConfig:
        problems = []
        if self.tokens_file is None and not self.allow_anonymous:
            problems.append(
                "set BUS_INGRESS_TOKENS_FILE (who may publish), or BUS_INGRESS_ALLOW_ANONYMOUS=true "
                "for a trusted network"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            problems.append("TLS needs both BUS_INGRESS_TLS_CERTFILE and BUS_INGRESS_TLS_KEYFILE")
        for name in (
            "max_body_bytes",
            "max_batch_events",
            "max_pending_events",
            "retry_after_s",
            "body_timeout_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive (BUS_INGRESS_{name.upper()})")
        if self.dedup_window_s <= 0 or self.dedup_lease_s <= 0:
            problems.append("dedup_window_s and dedup_lease_s must be positive")
        if self.dedup_store and not (
            self.dedup_store == "memory"
            or self.dedup_store.startswith(("sqlite:", "postgresql://", "postgres://"))
        ):
            problems.append(
                "dedup_store must be '', 'memory', 'sqlite:PATH' or 'postgresql://...' "
                "(BUS_INGRESS_DEDUP_STORE)"
            )
        if problems:
            raise ConfigError("bad ingress settings: " + "; ".join(problems))
        return self


def env_secret(name: str, env: Mapping[str, str] | None = None) -> Secret:
    """The secret in environment variable ``name`` (a webhook's HMAC key);
    :class:`ConfigError` naming the variable when it is unset or empty."""
    value = (os.environ if env is None else env).get(name, "")
    if not value:
        raise ConfigError(f"environment variable {name} (a secret) is not set")
    return Secret(value)
