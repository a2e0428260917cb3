"""Versioned schema migrations: what to apply, decided without a database (pure).

A *component* (``"bus.dedup"``, later ``"sagas.store"``) owns an ordered list of
migrations, one per schema version starting at 1. Each database keeps one row per
component in a ``schema_version`` table; the backends (``bus/sql/sqlite.py``,
``bus/sql/postgres.py``) apply :func:`pending` migrations one transaction each, the
version row updated in the same transaction, so a crash mid-way leaves a consistent
version and the next start carries on. Migrations are never edited once released: a
change is a new version.

Example::

    DEDUP = (
        Migration(1, "create bus_dedup", ("CREATE TABLE bus_dedup (...)",)),
        Migration(2, "index by time", ("CREATE INDEX ...",)),
    )
    pending("bus.dedup", DEDUP, current=1)   # -> (DEDUP[1],)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bus.errors import DefinitionError, SchemaVersionError

__all__ = ["SCHEMA_VERSION_TABLE", "Migration", "pending", "validate_migrations"]

#: The table every component's version lives in: ``(component TEXT PRIMARY KEY, version INT,
#: applied_at_ms BIGINT)``.
SCHEMA_VERSION_TABLE = "schema_version"


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version of one component."""

    #: The version this migration brings the schema to; 1 for the first.
    version: int
    #: What it does, for people (kept in the code, logged when applied).
    name: str
    #: SQL statements run in order inside one transaction (one statement each: the
    #: SQLite driver runs one at a time).
    statements: tuple[str, ...]


def validate_migrations(component: str, migrations: Sequence[Migration]) -> None:
    """Raise :class:`DefinitionError` listing every problem: versions must be 1, 2, 3, ..."""
    problems: list[str] = []
    if not component:
        problems.append("the component name is empty; name the owner, e.g. 'bus.dedup'")
    for index, migration in enumerate(migrations):
        if migration.version != index + 1:
            problems.append(
                f"migration {migration.name!r} has version {migration.version} at position "
                f"{index}; versions must be 1, 2, 3, ... in order"
            )
        if not migration.statements:
            problems.append(f"migration {migration.version} ({migration.name!r}) has no statements")
    if problems:
        raise DefinitionError(f"migrations of {component!r}", problems)


def pending(component: str, migrations: Sequence[Migration], current: int) -> tuple[Migration, ...]:
    """The migrations to apply to a database at schema version ``current`` (0: none yet).

    Raises :class:`SchemaVersionError` when the database is newer than the code.
    """
    validate_migrations(component, migrations)
    if current > len(migrations):
        raise SchemaVersionError(
            f"the database's {component!r} schema is at version {current} but this code knows "
            f"only up to {len(migrations)}: run the newer version of the code (or restore the "
            "database); an older one must not write to it"
        )
    return tuple(migrations[current:])
