"""A simulated payroll system: records effects, and fails on request (for tests and demos).

Failures come per employee (``reject``: a permanent refusal) or by rate (``failure_rate``,
drawn from a seeded generator so a run can be replayed; ``PayrollUnavailableError`` is
transient and the bus retries it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date


class PayrollUnavailableError(Exception):
    """Payroll did not answer (transient: worth retrying)."""


class PayrollRejectedError(Exception):
    """Payroll refuses the record (permanent: the saga compensates)."""


@dataclass
class Payroll:
    """Records by employee id: ``(payroll_id, full_name, start_date)``."""

    records: dict[str, tuple[str, str, date]] = field(default_factory=dict)
    #: Employee ids whose record is refused.
    reject: set[str] = field(default_factory=set)
    #: Why the record of a rejected employee id is refused (default: a generic reason).
    reject_reasons: dict[str, str] = field(default_factory=dict)
    #: Probability that a call raises PayrollUnavailableError.
    failure_rate: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    #: Employee ids whose final payroll ran (their record is closed).
    closed: set[str] = field(default_factory=set)

    def create_record(self, employee_id: str, full_name: str, start_date: date) -> str:
        """Create (or return the existing) payroll id: idempotent by employee id."""
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise PayrollUnavailableError("payroll did not answer")
        if employee_id in self.reject:
            raise PayrollRejectedError(
                self.reject_reasons.get(employee_id, f"payroll refuses a record for {employee_id}")
            )
        if employee_id not in self.records:
            self.records[employee_id] = (f"pr-{len(self.records) + 1:05d}", full_name, start_date)
        return self.records[employee_id][0]

    def run_final_payroll(self, employee_id: str) -> str:
        """Pay the last salary and close the record; returns its payroll id ("" when there
        was none, e.g. a contractor). Idempotent: a closed record is closed again."""
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise PayrollUnavailableError("payroll did not answer")
        if employee_id in self.reject:
            raise PayrollRejectedError(
                self.reject_reasons.get(
                    employee_id, f"payroll refuses the final pay of {employee_id}"
                )
            )
        record = self.records.get(employee_id)
        self.closed.add(employee_id)
        return record[0] if record is not None else ""
