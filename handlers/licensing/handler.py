"""Assigns SaaS licenses to every new directory account."""

from __future__ import annotations

from bus import App, Context, RetryPolicy
from handlers.identity.contracts import IdentityAccountCreated
from handlers.licensing.contracts import LicenseAssigned
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


licenses = LicenseManager()
app = build_app(licenses)
