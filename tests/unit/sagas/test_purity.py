"""The saga core is pure: no event loop, driver, clock or randomness in its modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PURE = [
    "definition",
    "stages",
    "stage_types",
    "step",
    "waits",
    "task_stage",
    "choice",
    "deadline",
    "validate",
    "state",
    "triggers",
    "effects",
    "core",
    "run",
    "paths",
    "undo",
    "draft",
    "timing",
    "updates",
    "children",
    "child_runs",
    "early",
    "versions",
    "render",
    "operations",
    "observer",
    "quarantine",
    "story",
]
FORBIDDEN = {"asyncio", "sqlite3", "aiokafka", "asyncpg", "psycopg", "time", "random", "socket", "threading", "anyio"}  # fmt: skip


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_import_no_io_clock_or_randomness() -> None:
    for name in PURE:
        roots = {i.split(".")[0] for i in imports_of(ROOT / "sagas" / f"{name}.py")}
        assert not roots & FORBIDDEN, f"sagas/{name}.py imports {roots & FORBIDDEN}"


def test_core_modules_never_read_the_wall_clock() -> None:
    for name in PURE:
        source = (ROOT / "sagas" / f"{name}.py").read_text()
        for call in ("datetime.now(", "utcnow(", "uuid4(", "uuid1(", "new_id("):
            assert call not in source, f"sagas/{name}.py calls {call}"


#: The README demo's composition root wires the handler apps beside the coordinator in one
#: process (as handlers/demo.py does for the choreography); the library never imports it.
COMPOSITION_ROOTS = {ROOT / "sagas" / "demo.py"}


def test_sagas_use_handler_contracts_only() -> None:
    for path in (ROOT / "sagas").rglob("*.py"):
        if path in COMPOSITION_ROOTS:
            continue
        for module in imports_of(path):
            if module.startswith("handlers."):
                assert module.endswith(".contracts"), f"{path} imports {module}"
            assert module != "sagas.demo" or path.name == "cli.py", f"{path} imports the demo"


#: Modules every store backend may import: the protocol and what the SQL backends share.
# task_rows: the task table's row type and SQL, shared like sql.py (not a backend); rows and
# writes: the values base.py re-exports; early_rows: the early inputs' rows and SQL
STORE_SHARED = {
    "sagas.stores.base",
    "sagas.stores.sql",
    "sagas.stores.task_rows",
    "sagas.stores.rows",
    "sagas.stores.writes",
    "sagas.stores.early_rows",
}


def _backend(module: str) -> str:
    """The backend a module is part of: ``sagas.stores.sqlite_writes`` is sqlite's."""
    return module.split("_", 1)[0]


def test_no_saga_store_backend_imports_another() -> None:
    stores = ROOT / "sagas" / "stores"
    backends = {f"sagas.stores.{p.stem}" for p in stores.glob("*.py")} - STORE_SHARED
    backends -= {"sagas.stores.__init__", "sagas.stores.url"}  # they pick a backend by name
    for module in backends:
        path = stores / f"{module.rsplit('.', 1)[1]}.py"
        others = {i for i in imports_of(path) if i.startswith("sagas.stores.")} - STORE_SHARED
        others = {i for i in others if _backend(i) != _backend(module)}  # its own parts
        assert not others, f"{path.name} imports {others}: share it through sql.py or base.py"


def test_only_the_config_module_reads_the_environment() -> None:
    for path in (ROOT / "sagas").rglob("*.py"):
        if path == ROOT / "sagas" / "config.py":
            continue
        source = path.read_text()
        for read in ("os.environ", "getenv("):
            assert read not in source, f"{path} reads the environment: use sagas.config"
