"""Messages of the identity automation."""

from __future__ import annotations

from bus import Event


class IdentityAccountCreated(
    Event, type="identity.account.created.v1", topic="identity.events", key="employee_id"
):
    """A directory account exists for the employee."""

    employee_id: str
    login: str
    email: str
    department: str
    manager_email: str
