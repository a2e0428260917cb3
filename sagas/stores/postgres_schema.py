"""The PostgreSQL saga store's schema: its migrations, applied in order on open (under an
advisory lock, by :class:`bus.MigratedStore`).

Example::

    [m.version for m in MIGRATIONS]     # 1, 2, 3, 4
"""

from __future__ import annotations

from bus import Migration
from sagas.stores.early_rows import EARLY_TABLE
from sagas.stores.task_rows import TASK_TABLE

__all__ = ["MIGRATIONS"]

MIGRATIONS = (
    Migration(
        1,
        "create saga_state, saga_outbox, saga_timers, saga_requests",
        (
            "CREATE TABLE saga_state (saga_id TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " status TEXT NOT NULL, revision BIGINT NOT NULL, started_at_ms BIGINT NOT NULL,"
            " updated_at_ms BIGINT NOT NULL, state TEXT NOT NULL)",
            "CREATE INDEX saga_state_started ON saga_state (started_at_ms)",
            "CREATE INDEX saga_state_status ON saga_state (status, started_at_ms)",
            "CREATE TABLE saga_outbox (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " saga_id TEXT NOT NULL, topic TEXT NOT NULL, key BYTEA, value BYTEA NOT NULL,"
            " headers BYTEA NOT NULL, created_at_ms BIGINT NOT NULL,"
            " claimed_until_ms BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE saga_timers (id TEXT PRIMARY KEY, saga_id TEXT NOT NULL,"
            " due_at_ms BIGINT NOT NULL, claimed_until_ms BIGINT NOT NULL DEFAULT 0)",
            "CREATE INDEX saga_timers_due ON saga_timers (due_at_ms)",
            "CREATE TABLE saga_requests (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " saga_id TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL,"
            " requested_at_ms BIGINT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "quarantine of unreadable sagas: saga_state.quarantine, saga_set_aside",
        (
            "ALTER TABLE saga_state ADD COLUMN quarantine TEXT",
            "CREATE TABLE saga_set_aside (seq BIGSERIAL PRIMARY KEY, saga_id TEXT NOT NULL,"
            " set_aside_at_ms BIGINT NOT NULL, timer_id TEXT, topic TEXT, key BYTEA,"
            " value BYTEA, headers BYTEA)",
            "CREATE INDEX saga_set_aside_saga ON saga_set_aside (saga_id, seq)",
        ),
    ),
    Migration(3, "tasks for people: saga_tasks", tuple(s.format(int="BIGINT") for s in TASK_TABLE)),
    Migration(
        4,
        "inputs kept for sagas not started yet: saga_early",
        tuple(s.format(int="BIGINT", serial="BIGSERIAL") for s in EARLY_TABLE),
    ),
)
