"""SQL databases shared by bus's stores (dedup now, saga stores next).

``migrations.py`` decides which schema versions to apply (pure); ``sqlite.py`` and
``postgres.py`` connect, run transactions and apply them, each translating its driver's
faults into :class:`~bus.errors.StoreError` once.
"""

from bus.sql.migrations import Migration
from bus.sql.postgres import PostgresDatabase, PostgresTimeouts
from bus.sql.sqlite import SqliteDatabase, SqliteTransaction
from bus.sql.store import MigratedStore

__all__ = [
    "MigratedStore",
    "Migration",
    "PostgresDatabase",
    "PostgresTimeouts",
    "SqliteDatabase",
    "SqliteTransaction",
]
