"""Idempotent handlers: remember which (handler, source, id) completed, with its outputs.

``base.py`` says what a store is; ``memory.py``, ``sqlite.py`` and ``postgres.py`` are the
backends; ``outputs.py`` keeps a handler's emitted records byte for byte. See docs/dedup.md.
"""

import sqlite3
from collections.abc import Hashable
from typing import Any

from bus.dedup.base import (
    IDEMPOTENCY_KEY,
    DedupEntry,
    DedupKey,
    DedupStore,
    DedupTransaction,
)
from bus.dedup.memory import MemoryDedupStore
from bus.dedup.postgres import PostgresDedupStore
from bus.dedup.sqlite import SqliteDedupStore

__all__ = [
    "IDEMPOTENCY_KEY",
    "DedupEntry",
    "DedupKey",
    "DedupStore",
    "DedupTransaction",
    "MemoryDedupStore",
    "PostgresDedupStore",
    "SqliteDedupStore",
]


def _backends_meet_the_protocol(
    memory: MemoryDedupStore, sqlite: SqliteDedupStore, postgres: PostgresDedupStore
) -> list[DedupStore[Any]]:
    """Never called: mypy checks here that every backend is a ``DedupStore``."""
    checked: list[DedupStore[Any]] = [memory, sqlite, postgres]
    typed_sqlite: DedupStore[sqlite3.Connection] = sqlite
    typed_memory: DedupStore[dict[Hashable, Any]] = memory
    return [*checked, typed_sqlite, typed_memory]
