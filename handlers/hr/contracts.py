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
    start_date: date


class EmployeeLeft(Event, type="hr.employee.left.v1", topic="hr.events", key="employee_id"):
    """A person's last day passed."""

    employee_id: str
