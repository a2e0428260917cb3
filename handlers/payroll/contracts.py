"""Messages of the payroll automation: the command it serves and its replies."""

from __future__ import annotations

from datetime import date

from bus import Command, Event


class CreatePayrollRecord(
    Command, type="payroll.record.create.v1", topic="payroll.commands", key="employee_id"
):
    """Open a payroll record for the employee (idempotent by employee id)."""

    employee_id: str
    full_name: str
    start_date: date


class PayrollRecordCreated(
    Event, type="payroll.record.created.v1", topic="payroll.events", key="employee_id"
):
    """Reply to CreatePayrollRecord: the record exists."""

    employee_id: str
    payroll_id: str


class PayrollRecordRejected(
    Event, type="payroll.record.rejected.v1", topic="payroll.events", key="employee_id"
):
    """Reply to CreatePayrollRecord: payroll refused the record (a permanent reason)."""

    employee_id: str
    reason: str
