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

from typing import TYPE_CHECKING

# Names load on first use (PEP 562): `import bus` stays cheap for the `bus` command's
# start-up (`bus --help` imports no aiokafka, aiohttp or pydantic). For type checkers the
# imports are the ones below; _LAZY says the same at run time (tests/unit/test_public_api.py
# checks both against __all__).
if TYPE_CHECKING:
    from bus.app import App, BackgroundTask, UnknownTypePolicy
    from bus.asyncapi import asyncapi_document
    from bus.cli.common import load_apps
    from bus.clock import VirtualClock
    from bus.codec import decode
    from bus.config import BusConfig
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
    from bus.encoding import encode
    from bus.envelope import Envelope
    from bus.environment import Secret
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
        PublishRefusedError,
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
    from bus.ingress.access import TokenFile
    from bus.ingress.tokens import TokenGrant, hash_token, parse_tokens
    from bus.ingress.webhooks import Ingress
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
    from bus.waits import wait_for_event
    from bus.worker import Worker, WorkerSettings, WorkerStats

#: name -> the module that defines it (``module:attr`` when bus exports it under another name)
_LAZY: dict[str, str] = {
    "asyncapi_document": "bus.asyncapi",
    "App": "bus.app",
    "BackgroundTask": "bus.app",
    "UnknownTypePolicy": "bus.app",
    "VirtualClock": "bus.clock",
    "load_apps": "bus.cli.common",
    "decode": "bus.codec",
    "encode": "bus.encoding",
    "BusConfig": "bus.config",
    "BatchContext": "bus.context",
    "Context": "bus.context",
    "dead_letter": "bus.dead_letters",
    "dead_letter_topic": "bus.dead_letters",
    "without_original": "bus.dead_letters",
    "DedupEntry": "bus.dedup",
    "DedupKey": "bus.dedup",
    "DedupStore": "bus.dedup",
    "DedupTransaction": "bus.dedup",
    "MemoryDedupStore": "bus.dedup",
    "PostgresDedupStore": "bus.dedup",
    "SqliteDedupStore": "bus.dedup",
    "DeadLetter": "bus.dlq",
    "DeadLetterFilter": "bus.dlq",
    "ReplayPlan": "bus.dlq",
    "plan_replay": "bus.dlq",
    "list_dead_letter_topics": "bus.dlq",
    "parse_since": "bus.dlq",
    "read_dead_letters": "bus.dlq",
    "replay_dead_letters": "bus.dlq",
    "Envelope": "bus.envelope",
    "Secret": "bus.environment",
    "BusError": "bus.errors",
    "CommitFailedError": "bus.errors",
    "ConfigError": "bus.errors",
    "DecodeError": "bus.errors",
    "DefinitionError": "bus.errors",
    "DuplicateMessageError": "bus.errors",
    "HandlerResultError": "bus.errors",
    "LockTimeoutError": "bus.errors",
    "MessageTooLargeError": "bus.errors",
    "PayloadInvalidError": "bus.errors",
    "PermanentError": "bus.errors",
    "PublishRefusedError": "bus.errors",
    "RecordError": "bus.errors",
    "RegistryError": "bus.errors",
    "SchemaVersionError": "bus.errors",
    "SecurityError": "bus.errors",
    "StoreError": "bus.errors",
    "TopicNotFoundError": "bus.errors",
    "TransportClosedError": "bus.errors",
    "TransportError": "bus.errors",
    "UnknownTypeError": "bus.errors",
    "tune_gc": "bus.gc_tuning",
    "HttpServer": "bus.http",
    "Readiness": "bus.http",
    "new_id": "bus.ids",
    "PartitionLag": "bus.lag",
    "group_lag": "bus.lag",
    "TokenFile": "bus.ingress.access",
    "TokenGrant": "bus.ingress.tokens",
    "hash_token": "bus.ingress.tokens",
    "parse_tokens": "bus.ingress.tokens",
    "Ingress": "bus.ingress.webhooks",
    "Command": "bus.message",
    "Event": "bus.message",
    "Message": "bus.message",
    "Metrics": "bus.metrics",
    "MetricSpec": "bus.metrics",
    "default_metrics": "bus.metrics",
    "murmur2": "bus.partitioning",
    "partition_for_key": "bus.partitioning",
    "Fence": "bus.progress",
    "Publisher": "bus.publisher",
    "envelope_for": "bus.publisher",
    "record_for": "bus.publisher",
    "OutgoingRecord": "bus.record",
    "Record": "bus.record",
    "RecordMetadata": "bus.record",
    "TopicPartition": "bus.record",
    "Registry": "bus.registry",
    "default_registry": "bus.registry",
    "RetryPolicy": "bus.retries",
    "Runner": "bus.runner",
    "MigratedStore": "bus.sql",
    "Migration": "bus.sql",
    "PostgresDatabase": "bus.sql",
    "PostgresTimeouts": "bus.sql",
    "SqliteDatabase": "bus.sql",
    "SqliteTransaction": "bus.sql",
    "utc_now": "bus.stamping",
    "TestBus": "bus.testing",
    "build_trace": "bus.trace:build_tree",
    "read_hops": "bus.trace",
    "render_trace": "bus.trace:render",
    "Acked": "bus.transports.base",
    "Consumer": "bus.transports.base",
    "Delivery": "bus.transports.base",
    "RebalanceListener": "bus.transports.base",
    "TopicSpec": "bus.transports.base",
    "TopicState": "bus.transports.base",
    "Transport": "bus.transports.base",
    "MemoryBroker": "bus.transports.memory",
    "MemoryTransport": "bus.transports.memory",
    "NamespacedTransport": "bus.transports.namespace",
    "Worker": "bus.worker",
    "WorkerSettings": "bus.worker",
    "WorkerStats": "bus.worker",
    "wait_for_event": "bus.waits",
}

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
    "Ingress",
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
    "PublishRefusedError",
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
    "TokenFile",
    "TokenGrant",
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
    "hash_token",
    "list_dead_letter_topics",
    "load_apps",
    "murmur2",
    "new_id",
    "parse_since",
    "parse_tokens",
    "partition_for_key",
    "plan_replay",
    "read_dead_letters",
    "read_hops",
    "record_for",
    "render_trace",
    "replay_dead_letters",
    "tune_gc",
    "utc_now",
    "wait_for_event",
    "without_original",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:  # an AttributeError lets `from bus import tracing` import the module
        raise AttributeError(f"module 'bus' has no attribute {name!r}")
    import importlib

    module, _, attr = module.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
