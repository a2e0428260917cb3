"""Creates a directory account for every hire and announces it."""

from __future__ import annotations

from bus import App, Context
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import (
    ActivateAccount,
    CreateAccount,
    DeprovisionAccount,
    IdentityAccountActivated,
    IdentityAccountActivationFailed,
    IdentityAccountCreated,
    IdentityAccountDeprovisioned,
    IdentityAccountProvisioned,
    IdentityAccountProvisioningFailed,
)
from handlers.identity.system import AccountRefusedError, Directory


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


def build_command_app(directory: Directory) -> App:
    """The identity App serving the onboarding saga's commands, wired to ``directory``.

    Separate from :func:`build_app` (its own consumer group) so the choreography demo and
    the saga can run side by side without one reacting to the other's messages.
    """
    app = App("identity-commands")

    @app.handler
    async def create(
        command: CreateAccount, ctx: Context
    ) -> IdentityAccountProvisioned | IdentityAccountProvisioningFailed:
        try:
            login = directory.create_account(command.employee_id, command.full_name)
        except AccountRefusedError as exc:
            return IdentityAccountProvisioningFailed(
                employee_id=command.employee_id, reason=str(exc)
            )
        ctx.logger.info("account %s provisioned for %s", login, command.employee_id)
        return IdentityAccountProvisioned(
            employee_id=command.employee_id, login=login, email=f"{login}@{command.email_domain}"
        )

    @app.handler
    async def deprovision(
        command: DeprovisionAccount, ctx: Context
    ) -> IdentityAccountDeprovisioned:
        directory.remove_account(command.employee_id)
        ctx.logger.info("account of %s deprovisioned", command.employee_id)
        return IdentityAccountDeprovisioned(employee_id=command.employee_id)

    @app.handler
    async def activate(
        command: ActivateAccount, ctx: Context
    ) -> IdentityAccountActivated | IdentityAccountActivationFailed:
        try:
            login = directory.activate_account(command.employee_id)
        except AccountRefusedError as exc:
            return IdentityAccountActivationFailed(employee_id=command.employee_id, reason=str(exc))
        ctx.logger.info("account %s activated for %s", login, command.employee_id)
        return IdentityAccountActivated(employee_id=command.employee_id, login=login)

    return app


directory = Directory()
app = build_app(directory)
commands_app = build_command_app(directory)
