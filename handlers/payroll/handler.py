"""Serves CreatePayrollRecord and RunFinalPayroll: a reply event for every command, a failure reply for refusals."""

from __future__ import annotations

from bus import App, Context
from handlers.payroll.contracts import (
    CreatePayrollRecord,
    FinalPayrollRejected,
    FinalPayrollRun,
    PayrollRecordCreated,
    PayrollRecordRejected,
    RunFinalPayroll,
)
from handlers.payroll.system import Payroll, PayrollRejectedError


def build_app(payroll: Payroll) -> App:
    """The payroll App, wired to ``payroll``. Transient errors raise (the bus retries)."""
    app = App("payroll")

    @app.handler
    async def create_record(
        command: CreatePayrollRecord, ctx: Context
    ) -> PayrollRecordCreated | PayrollRecordRejected:
        try:
            payroll_id = payroll.create_record(
                command.employee_id, command.full_name, command.start_date
            )
        except PayrollRejectedError as exc:
            ctx.logger.info("payroll refused %s: %s", command.employee_id, exc)
            return PayrollRecordRejected(employee_id=command.employee_id, reason=str(exc))
        ctx.logger.info("payroll record %s for %s", payroll_id, command.employee_id)
        return PayrollRecordCreated(employee_id=command.employee_id, payroll_id=payroll_id)

    @app.handler
    async def final_payroll(
        command: RunFinalPayroll, ctx: Context
    ) -> FinalPayrollRun | FinalPayrollRejected:
        try:
            payroll_id = payroll.run_final_payroll(command.employee_id)
        except PayrollRejectedError as exc:
            ctx.logger.info("final payroll refused %s: %s", command.employee_id, exc)
            return FinalPayrollRejected(employee_id=command.employee_id, reason=str(exc))
        ctx.logger.info("final payroll ran for %s", command.employee_id)
        return FinalPayrollRun(employee_id=command.employee_id, payroll_id=payroll_id)

    return app


payroll = Payroll()
app = build_app(payroll)
