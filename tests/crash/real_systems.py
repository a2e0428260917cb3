"""The real handler apps of onboarding v1 (handlers/), each with an effects ledger.

The apps a deployment runs for the onboarding saga (deploy/Procfile): identity's,
licensing's and notifications' command apps, payroll's and repositories' apps, built by
their own ``build_*app`` functions around their simulated systems, the same handler code.
Two things are added for a crash test across processes, which cannot count what in-memory
systems did:

- a **ledger**: each handler runs in the dedup transaction of a SQLite store (the apps'
  own deployment has none), and writes one effects row ``(command id, type, employee id,
  ok)`` in that transaction after the real handler returned, so the row commits with the
  dedup record or not at all (a killed process loses its in-memory system with it);
- **seats for everyone** but a hire whose name says it fails (``... Fail``, so its login,
  made of the name's letters, says ``fail``): the real license manager refuses it with its
  own ``NoSeatsLeftError``
  and the real handler answers ``LicenseGrantFailed`` (the saga compensates). Its default
  seat pool (100 CRM seats per process) would refuse hundreds of the test's hires.

``slow_s`` makes a system slow for every 10th hire (employee ids ending in 2): each of
their commands takes that long before the real handler runs, so a short step timeout
fires while the first attempt is still running (the re-send test of
tests/crash/test_scale_out.py).

``bus run tests.crash.real_handlers:identity`` runs one (tests/crash/real_handlers.py).
"""

from __future__ import annotations

import asyncio
import functools
import operator
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from bus import App, Context, SqliteDedupStore
from handlers.identity.contracts import (
    IdentityAccountActivationFailed,
    IdentityAccountProvisioningFailed,
)
from handlers.identity.handler import build_command_app as identity_app
from handlers.identity.system import Directory
from handlers.licensing.contracts import LicenseGrantFailed
from handlers.licensing.handler import build_command_app as licensing_app
from handlers.licensing.system import LicenseManager, NoSeatsLeftError
from handlers.notifications.handler import build_command_app as notifications_app
from handlers.notifications.system import Mailer
from handlers.payroll.contracts import FinalPayrollRejected, PayrollRecordRejected
from handlers.payroll.handler import build_app as payroll_app
from handlers.payroll.system import Payroll
from handlers.repositories.contracts import RepositoryAccessDenied
from handlers.repositories.handler import build_app as repositories_app
from handlers.repositories.system import CodeHost

__all__ = ["REAL_APPS", "effects_file", "ledgered_app"]

SCHEMA = "CREATE TABLE IF NOT EXISTS effects (id TEXT, type TEXT, employee_id TEXT, ok INTEGER)"
#: Replies that say the system refused: their effects row has ok = 0.
REFUSALS = (
    IdentityAccountProvisioningFailed,
    IdentityAccountActivationFailed,
    LicenseGrantFailed,
    RepositoryAccessDenied,
    PayrollRecordRejected,
    FinalPayrollRejected,
)


class Seats(LicenseManager):
    """Seats for every hire, none for one whose name says it fails (``crash.test.fail2@``)."""

    def __init__(self) -> None:
        super().__init__(seats={p: 10**9 for p in ("office", "chat", "crm", "code-hosting")})

    def assign(self, email: str, department: str) -> list[str]:
        if "fail" in email.partition("@")[0]:
            raise NoSeatsLeftError("no seats left (test)")
        return super().assign(email, department)


#: Short name -> the real app as deployed (its name is its consumer group).
REAL_APPS: dict[str, Callable[[], App]] = {
    "identity": lambda: identity_app(Directory()),
    "licensing": lambda: licensing_app(Seats()),
    "notifications": lambda: notifications_app(Mailer()),
    "payroll": lambda: payroll_app(Payroll()),
    "repositories": lambda: repositories_app(CodeHost()),
}


def effects_file(effects: Path, name: str) -> Path:
    """The ledger of app ``name`` under the folder ``effects`` (one per app: fewer
    processes wait on one SQLite write lock)."""
    return effects / f"{name}.db"


def ledgered_app(name: str, effects: Path, *, slow_s: float = 0.0) -> App:
    """The real app ``name`` (a key of :data:`REAL_APPS`), its handlers deduplicated and
    their effects written in ``effects_file(effects, name)``; ``slow_s``: see above."""
    path = effects_file(effects, name)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(SCHEMA)
    real = REAL_APPS[name]()
    app = App(real.name, dedup=SqliteDedupStore(str(path)))
    for route in {id(r): r for r in real.routes.values()}.values():
        ledgered = _ledgered(route.handler, route.message_type, route.emits, route.name, slow_s)
        app.handler(retry=route.retry, name=route.name)(ledgered)
    return app


def _ledgered(
    real: Callable[..., Any],
    message: type[Any],
    emits: tuple[type[Any], ...],
    name: str,
    slow_s: float,
) -> Callable[..., Any]:
    """``real``, then its effects row in the same dedup transaction."""

    async def handler(command: Any, ctx: Context) -> Any:
        if slow_s and command.employee_id.endswith("2"):
            await asyncio.sleep(slow_s)  # a slow system: the reply comes after the timeout
        reply = await real(command, ctx)
        row = (ctx.envelope.id, ctx.envelope.type, command.employee_id,
               int(not isinstance(reply, REFUSALS)))  # fmt: skip
        await ctx.transaction.run(
            lambda db: db.execute("INSERT INTO effects VALUES (?,?,?,?)", row)
        )
        return reply

    handler.__name__ = handler.__qualname__ = name  # its dedup key and metric label
    handler.__annotations__ = {
        "command": message,
        "ctx": Context,
        "return": functools.reduce(operator.or_, emits),
    }
    return handler
