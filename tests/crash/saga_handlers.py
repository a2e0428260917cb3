"""The onboarding saga's simulated systems for the saga crash tests, with durable effects.

``bus run tests.crash.saga_handlers`` serves every command of the onboarding saga in one
App whose dedup store is the SQLite file ``SAGA_CRASH_EFFECTS``. Each command's effect is a
row of its ``effects`` table written in the dedup transaction, so it commits with the dedup
record or not at all: a re-published command (same CloudEvents id) leaves no second row,
nor does a re-send after a reply timeout (same ``idempotencykey``) whose first attempt ran.

A hire whose employee id ends in ``-fail`` gets no licenses (the saga's step 3 fails and
compensation runs). The real handler packages keep their systems in memory, which a test
across processes cannot count: this module records what they would have done instead.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from bus import App, Context, SqliteDedupStore
from handlers.identity.contracts import (
    CreateAccount,
    DeprovisionAccount,
    IdentityAccountDeprovisioned,
    IdentityAccountProvisioned,
)
from handlers.licensing.contracts import (
    AssignLicenses,
    LicenseGrantFailed,
    LicensesGranted,
    LicensesRevoked,
    RevokeLicenses,
)
from handlers.notifications.contracts import (
    CancellationNotificationSent,
    ManagerNotificationSent,
    NotifyCancellation,
    NotifyManager,
)
from handlers.payroll.contracts import CreatePayrollRecord, PayrollRecordCreated
from handlers.repositories.contracts import (
    GrantRepositoryAccess,
    RepositoryAccessGranted,
    RepositoryAccessRevoked,
    RevokeRepositoryAccess,
)

EFFECTS = os.environ.get("SAGA_CRASH_EFFECTS", "saga-crash-effects.db")
SCHEMA = "CREATE TABLE IF NOT EXISTS effects (id TEXT, type TEXT, employee_id TEXT, ok INTEGER)"

with sqlite3.connect(EFFECTS) as _db:
    _db.execute(SCHEMA)
_db.close()

store = SqliteDedupStore(EFFECTS)
app = App("saga-crash-systems", dedup=store)


async def _effect(ctx: Context, command: Any, ok: bool = True) -> None:
    row = (ctx.envelope.id, ctx.envelope.type, command.employee_id, int(ok))
    # in the dedup transaction: the effect commits with the dedup record or not at all
    await ctx.transaction.run(lambda db: db.execute("INSERT INTO effects VALUES (?,?,?,?)", row))


@app.handler
async def create_account(c: CreateAccount, ctx: Context) -> IdentityAccountProvisioned:
    await _effect(ctx, c)
    login = c.employee_id.lower()
    return IdentityAccountProvisioned(
        employee_id=c.employee_id, login=login, email=f"{login}@{c.email_domain}"
    )


@app.handler
async def deprovision(c: DeprovisionAccount, ctx: Context) -> IdentityAccountDeprovisioned:
    await _effect(ctx, c)
    return IdentityAccountDeprovisioned(employee_id=c.employee_id)


@app.handler
async def assign(c: AssignLicenses, ctx: Context) -> LicensesGranted | LicenseGrantFailed:
    if c.employee_id.endswith("-fail"):
        await _effect(ctx, c, ok=False)
        return LicenseGrantFailed(employee_id=c.employee_id, reason="no seats left (test)")
    await _effect(ctx, c)
    return LicensesGranted(employee_id=c.employee_id, email=c.email, products=["office"])


@app.handler
async def revoke(c: RevokeLicenses, ctx: Context) -> LicensesRevoked:
    await _effect(ctx, c)
    return LicensesRevoked(employee_id=c.employee_id, email=c.email, products=["office"])


@app.handler
async def grant(c: GrantRepositoryAccess, ctx: Context) -> RepositoryAccessGranted:
    await _effect(ctx, c)
    return RepositoryAccessGranted(employee_id=c.employee_id, login=c.login, repositories=["app"])


@app.handler
async def revoke_repos(c: RevokeRepositoryAccess, ctx: Context) -> RepositoryAccessRevoked:
    await _effect(ctx, c)
    return RepositoryAccessRevoked(employee_id=c.employee_id, login=c.login)


@app.handler
async def notify(c: NotifyManager, ctx: Context) -> ManagerNotificationSent:
    await _effect(ctx, c)
    return ManagerNotificationSent(employee_id=c.employee_id, manager_email=c.manager_email)


@app.handler
async def notify_off(c: NotifyCancellation, ctx: Context) -> CancellationNotificationSent:
    await _effect(ctx, c)
    return CancellationNotificationSent(employee_id=c.employee_id, manager_email=c.manager_email)


@app.handler
async def payroll(c: CreatePayrollRecord, ctx: Context) -> PayrollRecordCreated:
    await _effect(ctx, c)
    return PayrollRecordCreated(employee_id=c.employee_id, payroll_id=f"p-{c.employee_id}")
