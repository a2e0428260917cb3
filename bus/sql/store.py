"""The lifecycle every SQL-backed store shares: connect, bring the schema up to date, close.

Example::

    class SqliteThingStore(MigratedStore[SqliteDatabase]):
        component = "things"
        migrations = (Migration(1, "create things", ("CREATE TABLE things (id TEXT)",)),)

        def __init__(self, path: str) -> None:
            self.database = SqliteDatabase(path)

    async with SqliteThingStore("bus.db") as store:   # opened and migrated
        ...
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import ClassVar, Generic, Protocol, Self, TypeVar

from bus.sql.migrations import Migration

__all__ = ["MigratedStore"]


class _Database(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> object: ...


D = TypeVar("D", bound=_Database)


class MigratedStore(Generic[D]):
    """``open`` connects and applies ``migrations`` for ``component``; ``close``; ``async with``."""

    #: The schema's owner in the ``schema_version`` table (one row per component).
    component: ClassVar[str]
    #: Ordered, versioned migrations of that component.
    migrations: ClassVar[Sequence[Migration]]
    #: The store's database (set by the subclass).
    database: D

    async def open(self) -> None:
        """Connect and bring the schema up to date (idempotent)."""
        await self.database.open()
        await self.database.migrate(self.component, self.migrations)

    async def close(self) -> None:
        """Release connections and threads (idempotent)."""
        await self.database.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
