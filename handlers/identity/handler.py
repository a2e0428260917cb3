"""Creates a directory account for every hire and announces it."""

from __future__ import annotations

from bus import App, Context
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import IdentityAccountCreated
from handlers.identity.system import Directory


def build_app(directory: Directory) -> App:
    """The identity App, wired to ``directory``."""
    app = App("identity")

    @app.handler
    async def create_account(event: EmployeeHired, ctx: Context) -> IdentityAccountCreated:
        login = directory.create_account(event.employee_id, event.full_name)
        ctx.logger.info("account %s created for %s", login, event.employee_id)
        return IdentityAccountCreated(
            employee_id=event.employee_id,
            login=login,
            email=f"{login}@{event.email_domain}",
            department=event.department,
            manager_email=event.manager_email,
        )

    return app


directory = Directory()
app = build_app(directory)
