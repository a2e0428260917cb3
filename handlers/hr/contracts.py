"""Events the HR system publishes."""

from __future__ import annotations

from datetime import date
from typing import Literal

from bus import Event


class EmployeeHired(Event, type="hr.employee.hired.v1", topic="hr.events", key="employee_id"):
    """A person signed a contract and starts on ``start_date``."""

    employee_id: str
    full_name: str
    email_domain: str = "example.com"
    department: str
    manager_email: str
    employment_type: Literal["employee", "contractor"] = "employee"
    #: "admin" needs a manager's approval of privileged access during onboarding.
    role: Literal["member", "admin"] = "member"
    start_date: date
    #: Where payroll runs the hire (ISO 3166 alpha-2, lowercase); the saga picks a path by it.
    country: str = "us"


class EmployeeLeft(Event, type="hr.employee.left.v1", topic="hr.events", key="employee_id"):
    """A person's last day passed.

    The fields after ``employee_id`` came later, with defaults, so older producers' events
    still read: ``legal_hold`` keeps the account (legal is told instead of it being removed).
    """

    employee_id: str
    full_name: str = ""
    login: str = ""
    email: str = ""
    manager_email: str = ""
    #: The person's data is under a legal hold: the account is kept, not removed.
    legal_hold: bool = False


class HireWithdrawn(Event, type="hr.hire.withdrawn.v1", topic="hr.events", key="employee_id"):
    """The hire was called off before the start date (cancels the onboarding)."""

    employee_id: str
    reason: str = ""


class HireChanged(Event, type="hr.hire.changed.v1", topic="hr.events", key="employee_id"):
    """A running hire changed: a moved start date, another department (None: unchanged)."""

    employee_id: str
    department: str | None = None
    start_date: date | None = None


class PrivilegedAccessApproved(
    Event, type="hr.privileged-access.approved.v1", topic="hr.events", key="employee_id"
):
    """The manager approved privileged access for a new hire."""

    employee_id: str
    approver: str


class PrivilegedAccessRejected(
    Event, type="hr.privileged-access.rejected.v1", topic="hr.events", key="employee_id"
):
    """The manager refused privileged access for a new hire."""

    employee_id: str
    approver: str
    reason: str = ""


class EquipmentRequested(
    Event, type="hr.equipment.requested.v1", topic="hr.events", key="employee_id"
):
    """HR asks IT to issue a person's equipment (the onboarding does it as a child saga)."""

    employee_id: str
    full_name: str = ""
    manager_email: str = ""


class EquipmentRecoveryRequested(
    Event, type="hr.equipment.recovery-requested.v1", topic="hr.events", key="employee_id"
):
    """HR asks a manager to get a leaver's equipment back (the offboarding's child saga)."""

    employee_id: str
    full_name: str = ""
    manager_email: str = ""
