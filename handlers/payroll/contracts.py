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
    #: The payroll country (lowercase ISO code); older senders mean the US.
    country: str = "us"


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


class RunFinalPayroll(
    Command, type="payroll.final.run.v1", topic="payroll.commands", key="employee_id"
):
    """Pay the leaver's last salary and close their record (idempotent by employee id)."""

    employee_id: str


class FinalPayrollRun(
    Event, type="payroll.final.ran.v1", topic="payroll.events", key="employee_id"
):
    """Reply to RunFinalPayroll: the last salary is paid; ``payroll_id`` is closed ("" if the
    person had no record, e.g. a contractor)."""

    employee_id: str
    payroll_id: str


class FinalPayrollRejected(
    Event, type="payroll.final.rejected.v1", topic="payroll.events", key="employee_id"
):
    """Reply to RunFinalPayroll: payroll refused (a permanent reason)."""

    employee_id: str
    reason: str
