"""What every console page reads: the store, the definitions, the apps, the transport."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from bus import App, Transport
from sagas.definition import SagaDefinition
from sagas.stores.base import SagaStore
from sagas.web.access import ConsoleTokens, Session, Sessions
from sagas.web.queries import AuditRecord, ConsoleQueries

__all__ = ["CONSOLE", "Console", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Console:
    """The console's shared parts (one per application)."""

    store: SagaStore
    queries: ConsoleQueries
    #: Saga definitions by name (the diagrams, the waits an operator can answer).
    definitions: Mapping[str, SagaDefinition]
    apps: Sequence[App]
    #: Where dead letters are read and replayed, approvals published, lag measured
    #: (None: those pages say so).
    transport: Transport | None
    #: Who may log in (the token file, kept current).
    tokens: ConsoleTokens
    sessions: Sessions = field(default_factory=Sessions)
    max_replays: int = 3
    #: The saga coordinator's consumer group (Coordinator's ``group``), for the catalog.
    saga_group: str = "sagas"
    source: str = "bus://console"
    now: Callable[[], datetime] = utc_now
    new_secret: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(32))

    async def audit(
        self, session: Session, action: str, target: str, reason: str, **detail: object
    ) -> None:
        """Store who did ``action`` to ``target``, now, and why."""
        p = session.principal
        record = AuditRecord(self.now(), p.subject, p.role, action, target, reason, dict(detail))
        await self.queries.add_audit(record)


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
