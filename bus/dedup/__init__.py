"""Idempotent handlers: remember which (handler, source, id) completed, with its outputs.

``base.py`` says what a store is; ``memory.py``, ``sqlite.py`` and ``postgres.py`` are the
backends; ``outputs.py`` keeps a handler's emitted records byte for byte. See docs/dedup.md.
"""

from bus.dedup.base import DedupEntry, DedupKey, DedupStore, DedupTransaction
from bus.dedup.memory import MemoryDedupStore
from bus.dedup.postgres import PostgresDedupStore
from bus.dedup.sqlite import SqliteDedupStore

__all__ = [
    "DedupEntry",
    "DedupKey",
    "DedupStore",
    "DedupTransaction",
    "MemoryDedupStore",
    "PostgresDedupStore",
    "SqliteDedupStore",
]
