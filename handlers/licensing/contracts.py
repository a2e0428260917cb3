"""Messages of the licensing automation."""

from __future__ import annotations

from bus import Event


class LicenseAssigned(
    Event, type="licensing.license.assigned.v1", topic="licensing.events", key="employee_id"
):
    """SaaS seats were assigned to the employee's account."""

    employee_id: str
    email: str
    products: list[str]
    manager_email: str
