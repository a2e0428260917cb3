"""Messages of the licensing automation."""

from __future__ import annotations

from bus import Command, Event


class LicenseAssigned(
    Event, type="licensing.license.assigned.v1", topic="licensing.events", key="employee_id"
):
    """SaaS seats were assigned to the employee's account."""

    employee_id: str
    email: str
    products: list[str]
    manager_email: str


# -- the commands the onboarding saga sends, and their replies ---------------------------


class AssignLicenses(
    Command, type="licensing.licenses.assign.v1", topic="licensing.commands", key="employee_id"
):
    """Assign the department's SaaS seats to ``email`` (idempotent by email)."""

    employee_id: str
    email: str
    department: str


class LicensesGranted(
    Event, type="licensing.licenses.granted.v1", topic="licensing.events", key="employee_id"
):
    """Reply to AssignLicenses: the seats are assigned."""

    employee_id: str
    email: str
    products: list[str]


class LicenseGrantFailed(
    Event, type="licensing.licenses.grant-failed.v1", topic="licensing.events", key="employee_id"
):
    """Reply to AssignLicenses: no seat could be assigned (e.g. none left)."""

    employee_id: str
    reason: str


class RevokeLicenses(
    Command, type="licensing.licenses.revoke.v1", topic="licensing.commands", key="employee_id"
):
    """Give back every seat assigned to ``email`` (idempotent: none assigned is fine)."""

    employee_id: str
    email: str


class LicensesRevoked(
    Event, type="licensing.licenses.revoked.v1", topic="licensing.events", key="employee_id"
):
    """Reply to RevokeLicenses: the seats are free again."""

    employee_id: str
    email: str
    products: list[str]
