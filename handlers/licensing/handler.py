"""Assigns SaaS licenses to every new directory account."""

from __future__ import annotations

from bus import App, Context, RetryPolicy
from handlers.identity.contracts import IdentityAccountCreated
from handlers.licensing.contracts import (
    AssignLicenses,
    LicenseAssigned,
    LicenseGrantFailed,
    LicensesGranted,
    LicensesRevoked,
    RevokeLicenses,
)
from handlers.licensing.system import LicenseManager, NoSeatsLeftError


def build_app(licenses: LicenseManager) -> App:
    """The licensing App, wired to ``licenses``. No seats left is not worth retrying."""
    app = App("licensing", retry=RetryPolicy(max_attempts=3, permanent=(NoSeatsLeftError,)))

    @app.handler
    async def assign_licenses(event: IdentityAccountCreated, ctx: Context) -> LicenseAssigned:
        products = licenses.assign(event.email, event.department)
        ctx.logger.info("licenses %s assigned to %s", ",".join(products), event.email)
        return LicenseAssigned(
            employee_id=event.employee_id,
            email=event.email,
            products=products,
            manager_email=event.manager_email,
        )

    return app


def build_command_app(licenses: LicenseManager) -> App:
    """The licensing App serving the onboarding saga's commands (its own consumer group).

    No seats left is a business answer: a LicenseGrantFailed reply, not a retry.
    """
    app = App("licensing-commands")

    @app.handler
    async def assign(command: AssignLicenses, ctx: Context) -> LicensesGranted | LicenseGrantFailed:
        try:
            products = licenses.assign(command.email, command.department)
        except NoSeatsLeftError as exc:
            return LicenseGrantFailed(employee_id=command.employee_id, reason=str(exc))
        ctx.logger.info("licenses %s granted to %s", ",".join(products), command.email)
        return LicensesGranted(
            employee_id=command.employee_id, email=command.email, products=products
        )

    @app.handler
    async def revoke(command: RevokeLicenses, ctx: Context) -> LicensesRevoked:
        products = licenses.revoke(command.email)
        ctx.logger.info("licenses %s of %s revoked", ",".join(products), command.email)
        return LicensesRevoked(
            employee_id=command.employee_id, email=command.email, products=products
        )

    return app


licenses = LicenseManager()
app = build_app(licenses)
commands_app = build_command_app(licenses)
