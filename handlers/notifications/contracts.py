"""Messages of the notification automation."""

from __future__ import annotations

from bus import Event


class ManagerNotified(
    Event, type="notifications.manager.notified.v1", topic="notifications.events", key="employee_id"
):
    """The manager got a message about their new report."""

    employee_id: str
    manager_email: str
    text: str
