"""The public surface and the layering rules, pinned."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bus

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = [
    "Acked", "App", "BackgroundTask", "BatchContext", "BusConfig", "BusError", "Command",
    "CommitFailedError", "ConfigError", "Consumer", "Context", "DeadLetter", "DeadLetterFilter",
    "DecodeError", "DedupEntry", "DedupKey", "DedupStore", "DedupTransaction",
    "DefinitionError", "Delivery", "DuplicateMessageError", "Envelope", "Event", "Fence",
    "HandlerResultError", "HttpServer", "Ingress", "LockTimeoutError", "MemoryBroker",
    "MemoryDedupStore", "MemoryTransport", "Message", "MessageTooLargeError", "MetricSpec",
    "Metrics", "MigratedStore", "Migration", "NamespacedTransport", "OutgoingRecord",
    "PartitionLag", "PayloadInvalidError", "PermanentError", "PostgresDatabase",
    "PostgresDedupStore", "PostgresTimeouts", "PublishRefusedError", "Publisher", "Readiness",
    "RebalanceListener", "Record", "RecordError", "RecordMetadata", "Registry", "RegistryError",
    "ReplayPlan", "RetryPolicy", "Runner", "SchemaVersionError", "Secret", "SecurityError",
    "SqliteDatabase", "SqliteDedupStore", "SqliteTransaction", "StoreError", "TestBus",
    "TokenFile", "TokenGrant", "TopicNotFoundError", "TopicPartition", "TopicSpec", "TopicState",
    "Transport",
    "TransportClosedError", "TransportError", "UnknownTypeError", "UnknownTypePolicy",
    "VirtualClock", "Worker", "WorkerSettings", "WorkerStats", "asyncapi_document",
    "build_trace", "dead_letter", "dead_letter_topic", "decode", "default_metrics",
    "default_registry", "encode", "envelope_for", "group_lag", "hash_token",
    "list_dead_letter_topics",
    "load_apps", "murmur2", "new_id", "parse_since", "parse_tokens",
    "partition_for_key", "plan_replay",
    "read_dead_letters", "read_hops", "record_for", "render_trace", "replay_dead_letters",
    "tune_gc", "utc_now", "wait_for_event", "without_original",
]  # fmt: skip

# The functional core: no event loop, broker client, database driver, clock or randomness.
# Which modules are pure is said once, in docs/architecture.md's module table ("pure?").
ARCHITECTURE = ROOT / "docs" / "architecture.md"
IMPURE_IMPORTS = {"asyncio", "aiokafka", "sqlite3", "psycopg", "asyncpg", "socket", "threading",
                  "time", "random", "os", "secrets", "uuid", "subprocess", "anyio"}  # fmt: skip
#: Calls that read the clock: ``datetime.now()``, ``date.today()``, bus's own clock and ids.
CLOCK_ATTRIBUTES = {"now", "utcnow", "today", "time_ns", "monotonic", "perf_counter"}
CLOCK_FUNCTIONS = {"utc_now", "new_id", "stamp"}
_ROW = re.compile(r"^\| `([^`]+)` \|.*\| (yes|no) \|$")


def module_table() -> dict[str, bool]:
    """docs/architecture.md's module table: path under ``bus/`` -> pure?"""
    rows: dict[str, bool] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        path, pure = match[1], match[2] == "yes"
        braces = re.fullmatch(r"(.*)\{(.*)\}(.*)", path)
        for one in [braces[1] + n + braces[3] for n in braces[2].split(",")] if braces else [path]:
            assert one not in rows, f"docs/architecture.md lists bus/{one} twice"
            rows[one] = pure
    return rows


def pure_modules() -> list[str]:
    return sorted(path for path, pure in module_table().items() if pure)


def bus_module_path(module: str) -> str:
    """``bus.dlq.letters`` -> ``dlq/letters.py``; a package is its ``__init__.py``."""
    parts = module.split(".")[1:]
    path = "/".join(parts)
    return f"{path}.py" if (ROOT / "bus" / f"{path}.py").exists() else f"{path}/__init__.py"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def runtime_imports_of(path: Path) -> set[str]:
    """:func:`imports_of` without the imports under ``if TYPE_CHECKING:`` (types only)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        for child in ast.walk(statement)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "bus":  # from bus import tracing: a module of bus
                names.update(f"bus.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def clock_calls_of(path: Path) -> set[str]:
    calls: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_ATTRIBUTES:
                calls.add(f"{ast.unparse(func)}()")
            elif isinstance(func, ast.Name) and func.id in CLOCK_FUNCTIONS:
                calls.add(f"{func.id}()")
    return calls


def test_public_names_are_pinned_and_sorted() -> None:
    assert bus.__all__ == sorted(bus.__all__)
    assert bus.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(bus, name) is not None


def test_the_module_table_names_every_module_of_bus_once() -> None:
    modules = {
        str(path.relative_to(ROOT / "bus"))
        for path in (ROOT / "bus").rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    listed = set(module_table())
    assert not modules - listed, f"not in docs/architecture.md's module table: {modules - listed}"
    assert not listed - modules, f"in docs/architecture.md but not in bus/: {listed - modules}"


def test_pure_modules_import_no_io() -> None:
    pure = pure_modules()
    assert "codec.py" in pure  # the table was read
    assert "dlq/letters.py" in pure
    for name in pure:
        path = ROOT / "bus" / name
        imports = imports_of(path)
        roots = {i.split(".")[0] for i in imports}
        assert not roots & IMPURE_IMPORTS, f"bus/{name} imports {roots & IMPURE_IMPORTS}"
        runtime = runtime_imports_of(path)
        impure_bus = {i for i in runtime if i.startswith("bus.") and bus_module_path(i) not in pure}
        assert not impure_bus, f"bus/{name} (pure) imports modules that are not: {impure_bus}"
        assert not clock_calls_of(path), f"bus/{name} reads the clock: {clock_calls_of(path)}"


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
