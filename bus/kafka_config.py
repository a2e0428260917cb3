"""Settings of the Kafka transport: :class:`KafkaConfig`, one ``BUS_KAFKA_*`` variable a field.

Validated once, with one :class:`~bus.errors.ConfigError` listing every problem; the SASL
password is a :class:`~bus.environment.Secret`. Re-exported by :mod:`bus.config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bus.environment import Secret, settings_from_env
from bus.errors import ConfigError

__all__ = ["Acks", "Compression", "KafkaConfig", "SaslMechanism", "SecurityProtocol"]

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
        values = settings_from_env(cls, "BUS_KAFKA_", env, overrides, defaults)
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
