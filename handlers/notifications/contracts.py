"""Messages of the notification automation."""

from __future__ import annotations

from bus import Command, Event


class ManagerNotified(
    Event, type="notifications.manager.notified.v1", topic="notifications.events", key="employee_id"
):
    """The manager got a message about their new report."""

    employee_id: str
    manager_email: str
    text: str


# -- the commands the onboarding saga sends, and their replies ---------------------------


class NotifyManager(
    Command, type="notifications.manager.notify.v1", topic="notifications.commands",
    key="employee_id",
):  # fmt: skip
    """Tell the manager their new report is ready."""

    employee_id: str
    manager_email: str
    text: str


class ManagerNotificationSent(
    Event, type="notifications.manager.notification-sent.v1", topic="notifications.events",
    key="employee_id",
):  # fmt: skip
    """Reply to NotifyManager."""

    employee_id: str
    manager_email: str


class NotifyCancellation(
    Command, type="notifications.cancellation.notify.v1", topic="notifications.commands",
    key="employee_id",
):  # fmt: skip
    """Tell the manager the onboarding was called off (undoes NotifyManager)."""

    employee_id: str
    manager_email: str
    text: str


class CancellationNotificationSent(
    Event, type="notifications.cancellation.notification-sent.v1", topic="notifications.events",
    key="employee_id",
):  # fmt: skip
    """Reply to NotifyCancellation."""

    employee_id: str
    manager_email: str
