"""The public surface and the layering rules, pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import bus

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = [
    "Acked", "App", "BusConfig", "BusError", "Command", "CommitFailedError", "ConfigError",
    "Consumer", "Context", "DeadLetter", "DeadLetterFilter", "DecodeError", "DedupEntry",
    "DedupKey", "DedupStore", "DedupTransaction", "DefinitionError", "Delivery",
    "DuplicateMessageError", "Envelope", "Event", "HandlerResultError", "HttpServer",
    "MemoryBroker", "MemoryDedupStore", "MemoryTransport", "Message", "MessageTooLargeError",
    "MetricSpec", "Metrics", "MigratedStore", "Migration", "OutgoingRecord", "PayloadInvalidError",
    "PermanentError", "PostgresDatabase", "PostgresDedupStore", "Publisher", "Readiness",
    "RebalanceListener", "Record", "RecordError", "RecordMetadata", "Registry", "RegistryError",
    "ReplayPlan", "RetryPolicy", "Runner", "SchemaVersionError", "SqliteDatabase",
    "SqliteDedupStore", "SqliteTransaction", "StoreError", "TestBus", "TopicNotFoundError",
    "TopicPartition", "TopicSpec", "TopicState", "Transport", "TransportClosedError",
    "TransportError", "UnknownTypeError", "UnknownTypePolicy", "Worker", "WorkerSettings",
    "WorkerStats", "dead_letter", "dead_letter_topic", "decode", "default_metrics",
    "default_registry", "encode", "envelope_for", "murmur2", "new_id", "partition_for_key",
    "plan_replay", "read_dead_letters", "record_for", "replay_dead_letters", "tune_gc", "utc_now",
    "without_original",
]  # fmt: skip

# The functional core: no event loop, no broker client, no database driver.
PURE = ["codec", "envelope", "ids", "message", "registry", "partitioning", "offsets", "routing",
        "dead_letters", "record", "types", "errors", "ingest", "retry_topics", "dedup/base",
        "dedup/outputs", "sql/migrations"]  # fmt: skip
IMPURE_IMPORTS = {"asyncio", "aiokafka", "sqlite3", "psycopg", "asyncpg", "socket", "threading"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_public_names_are_pinned_and_sorted() -> None:
    assert bus.__all__ == sorted(bus.__all__)
    assert bus.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(bus, name) is not None


def test_pure_modules_import_no_io() -> None:
    for name in PURE:
        roots = {i.split(".")[0] for i in imports_of(ROOT / "bus" / f"{name}.py")}
        assert not roots & IMPURE_IMPORTS, f"bus/{name}.py imports {roots & IMPURE_IMPORTS}"


def test_handlers_and_sagas_use_only_the_public_api_and_bus_imports_neither() -> None:
    for package in ("handlers", "sagas"):
        for path in (ROOT / package).rglob("*.py"):
            for module in imports_of(path):
                if module.startswith("bus"):
                    assert module == "bus", f"{path} imports internal {module}"
    for path in (ROOT / "bus").rglob("*.py"):
        roots = {i.split(".")[0] for i in imports_of(path)}
        assert not roots & {"handlers", "sagas"}, f"{path} imports a layer above it"


def test_handler_packages_do_not_import_each_others_handler_code() -> None:
    for path in (ROOT / "handlers").rglob("*.py"):
        package = path.relative_to(ROOT / "handlers").parts[0]
        for module in imports_of(path):
            parts = module.split(".")
            if parts[0] == "handlers" and len(parts) > 2 and parts[1] != package:
                assert parts[2] == "contracts" or path.name == "demo.py", f"{path} imports {module}"
