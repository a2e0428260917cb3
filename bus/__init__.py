"""bus: typed CloudEvents on Kafka for automation (handlers) and orchestration (sagas).

The public API; ``handlers/`` and ``sagas/`` import only from here.

Example::

    from bus import App, Context, Event

    class EmployeeHired(Event, type="hr.employee.hired.v1", topic="hr.events",
                        key="employee_id"):
        employee_id: str

    app = App("greeter")

    @app.handler
    async def greet(event: EmployeeHired, ctx: Context) -> None:
        ctx.logger.info("welcome %s", event.employee_id)
"""

from bus.app import App, BackgroundTask, UnknownTypePolicy
from bus.asyncapi import asyncapi_document
from bus.clock import VirtualClock
from bus.codec import decode, encode
from bus.config import BusConfig, Secret
from bus.context import BatchContext, Context
from bus.dead_letters import dead_letter, dead_letter_topic, without_original
from bus.dedup import (
    DedupEntry,
    DedupKey,
    DedupStore,
    DedupTransaction,
    MemoryDedupStore,
    PostgresDedupStore,
    SqliteDedupStore,
)
from bus.dlq import (
    DeadLetter,
    DeadLetterFilter,
    ReplayPlan,
    list_dead_letter_topics,
    parse_since,
    plan_replay,
    read_dead_letters,
    replay_dead_letters,
)
from bus.envelope import Envelope
from bus.errors import (
    BusError,
    CommitFailedError,
    ConfigError,
    DecodeError,
    DefinitionError,
    DuplicateMessageError,
    HandlerResultError,
    LockTimeoutError,
    MessageTooLargeError,
    PayloadInvalidError,
    PermanentError,
    RecordError,
    RegistryError,
    SchemaVersionError,
    SecurityError,
    StoreError,
    TopicNotFoundError,
    TransportClosedError,
    TransportError,
    UnknownTypeError,
)
from bus.gc_tuning import tune_gc
from bus.http import HttpServer, Readiness
from bus.ids import new_id
from bus.lag import PartitionLag, group_lag
from bus.message import Command, Event, Message
from bus.metrics import Metrics, MetricSpec, default_metrics
from bus.partitioning import murmur2, partition_for_key
from bus.progress import Fence
from bus.publisher import Publisher, envelope_for, record_for
from bus.record import OutgoingRecord, Record, RecordMetadata, TopicPartition
from bus.registry import Registry, default_registry
from bus.retries import RetryPolicy
from bus.runner import Runner
from bus.sql import (
    MigratedStore,
    Migration,
    PostgresDatabase,
    PostgresTimeouts,
    SqliteDatabase,
    SqliteTransaction,
)
from bus.stamping import utc_now
from bus.testing import TestBus
from bus.trace import build_tree as build_trace
from bus.trace import read_hops
from bus.trace import render as render_trace
from bus.transports.base import (
    Acked,
    Consumer,
    Delivery,
    RebalanceListener,
    TopicSpec,
    TopicState,
    Transport,
)
from bus.transports.memory import MemoryBroker, MemoryTransport
from bus.transports.namespace import NamespacedTransport
from bus.worker import Worker, WorkerSettings, WorkerStats

__all__ = [
    "Acked",
    "App",
    "BackgroundTask",
    "BatchContext",
    "BusConfig",
    "BusError",
    "Command",
    "CommitFailedError",
    "ConfigError",
    "Consumer",
    "Context",
    "DeadLetter",
    "DeadLetterFilter",
    "DecodeError",
    "DedupEntry",
    "DedupKey",
    "DedupStore",
    "DedupTransaction",
    "DefinitionError",
    "Delivery",
    "DuplicateMessageError",
    "Envelope",
    "Event",
    "Fence",
    "HandlerResultError",
    "HttpServer",
    "LockTimeoutError",
    "MemoryBroker",
    "MemoryDedupStore",
    "MemoryTransport",
    "Message",
    "MessageTooLargeError",
    "MetricSpec",
    "Metrics",
    "MigratedStore",
    "Migration",
    "NamespacedTransport",
    "OutgoingRecord",
    "PartitionLag",
    "PayloadInvalidError",
    "PermanentError",
    "PostgresDatabase",
    "PostgresDedupStore",
    "PostgresTimeouts",
    "Publisher",
    "Readiness",
    "RebalanceListener",
    "Record",
    "RecordError",
    "RecordMetadata",
    "Registry",
    "RegistryError",
    "ReplayPlan",
    "RetryPolicy",
    "Runner",
    "SchemaVersionError",
    "Secret",
    "SecurityError",
    "SqliteDatabase",
    "SqliteDedupStore",
    "SqliteTransaction",
    "StoreError",
    "TestBus",
    "TopicNotFoundError",
    "TopicPartition",
    "TopicSpec",
    "TopicState",
    "Transport",
    "TransportClosedError",
    "TransportError",
    "UnknownTypeError",
    "UnknownTypePolicy",
    "VirtualClock",
    "Worker",
    "WorkerSettings",
    "WorkerStats",
    "asyncapi_document",
    "build_trace",
    "dead_letter",
    "dead_letter_topic",
    "decode",
    "default_metrics",
    "default_registry",
    "encode",
    "envelope_for",
    "group_lag",
    "list_dead_letter_topics",
    "murmur2",
    "new_id",
    "parse_since",
    "partition_for_key",
    "plan_replay",
    "read_dead_letters",
    "read_hops",
    "record_for",
    "render_trace",
    "replay_dead_letters",
    "tune_gc",
    "utc_now",
    "without_original",
]
