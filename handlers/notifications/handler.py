"""Tells the manager once their new report has an account and licenses."""

from __future__ import annotations

from bus import App, Context
from handlers.licensing.contracts import LicenseAssigned
from handlers.notifications.contracts import (
    CancellationNotificationSent,
    ManagerNotificationSent,
    ManagerNotified,
    NotifyCancellation,
    NotifyManager,
)
from handlers.notifications.system import Mailer


def build_app(mailer: Mailer) -> App:
    """The notifications App, wired to ``mailer``."""
    app = App("notifications")

    @app.handler
    async def notify_manager(event: LicenseAssigned, ctx: Context) -> ManagerNotified:
        text = f"{event.email} is ready with {', '.join(event.products)}"
        mailer.send(event.manager_email, text)
        ctx.logger.info("told %s: %s", event.manager_email, text)
        return ManagerNotified(
            employee_id=event.employee_id, manager_email=event.manager_email, text=text
        )

    return app


def build_command_app(mailer: Mailer) -> App:
    """The notifications App serving the onboarding saga's commands (its own consumer group)."""
    app = App("notifications-commands")

    @app.handler
    async def notify(command: NotifyManager, ctx: Context) -> ManagerNotificationSent:
        mailer.send(command.manager_email, command.text)
        return ManagerNotificationSent(
            employee_id=command.employee_id, manager_email=command.manager_email
        )

    @app.handler
    async def notify_cancellation(
        command: NotifyCancellation, ctx: Context
    ) -> CancellationNotificationSent:
        mailer.send(command.manager_email, command.text)
        return CancellationNotificationSent(
            employee_id=command.employee_id, manager_email=command.manager_email
        )

    return app


mailer = Mailer()
app = build_app(mailer)
commands_app = build_command_app(mailer)
