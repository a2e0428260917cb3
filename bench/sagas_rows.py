"""What one onboarding saga writes, for the baselines of ``bench/sagas.py`` (shared).

The timed sagas are all the 4-step path of ``sagas/definitions/onboarding.py``: a member
(no approval wait), not in engineering (no repository step), an employee (payroll step):
create_account -> assign_licenses -> notify_manager -> create_payroll_record. The rows are
what those four handlers' systems keep (an account, the licenses, the manager's note, the
payroll record) plus, for the plain-INSERT baseline, the saga's own state row (a JSON
document of the size the coordinator stores). DBOS keeps its workflow state in its own
system tables, so its workflow writes the four business rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

#: One schema per run, so rounds never meet each other's rows.
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    employee_id text PRIMARY KEY, login text NOT NULL, email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {schema}.licenses (
    employee_id text PRIMARY KEY, email text NOT NULL, products text[] NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {schema}.notifications (
    employee_id text PRIMARY KEY, manager_email text NOT NULL, body text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {schema}.payroll_records (
    employee_id text PRIMARY KEY, payroll_id text NOT NULL, full_name text NOT NULL,
    start_date date NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {schema}.sagas (
    saga_id text PRIMARY KEY, status text NOT NULL, state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
"""

INSERT_ACCOUNT = "INSERT INTO {schema}.accounts (employee_id, login, email) VALUES ($1, $2, $3)"
INSERT_LICENSES = "INSERT INTO {schema}.licenses (employee_id, email, products) VALUES ($1, $2, $3)"
INSERT_NOTIFICATION = (
    "INSERT INTO {schema}.notifications (employee_id, manager_email, body) VALUES ($1, $2, $3)"
)
INSERT_PAYROLL = (
    "INSERT INTO {schema}.payroll_records (employee_id, payroll_id, full_name, start_date) "
    "VALUES ($1, $2, $3, $4)"
)
INSERT_SAGA = "INSERT INTO {schema}.sagas (saga_id, status, state) VALUES ($1, $2, $3::jsonb)"


def letters(n: int) -> str:
    """``n`` in letters: the directory makes logins from a name's letters only, so names
    differing only in digits would collide on one login."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out = chr(ord("a") + digit) + out
        if n == 0:
            return out


@dataclass(frozen=True, slots=True)
class Hire:
    """One timed hire (the fields of ``EmployeeHired`` the 4-step path uses)."""

    employee_id: str
    full_name: str
    manager_email: str
    start_date: date
    department: str = "finance"
    email_domain: str = "example.com"

    @property
    def login(self) -> str:
        return self.full_name.lower().replace(" ", ".")

    @property
    def email(self) -> str:
        return f"{self.login}@{self.email_domain}"

    @property
    def products(self) -> list[str]:
        return ["office", "chat"]  # licensing's DEFAULT_PRODUCTS (not sales/engineering)

    @property
    def note(self) -> str:
        return (
            f"{self.full_name} starts on {self.start_date}: {self.email} is ready with "
            f"{', '.join(self.products)}"
        )

    @property
    def payroll_id(self) -> str:
        return f"pay-{self.employee_id}"

    def saga_state(self) -> str:
        """A completed saga's state document, about the size the coordinator stores."""
        steps = ("create_account", "assign_licenses", "notify_manager", "create_payroll_record")
        return json.dumps(
            {
                "saga_id": f"onboarding:{self.employee_id}",
                "name": "onboarding",
                "version": 1,
                "status": "completed",
                "data": {
                    "employee_id": self.employee_id,
                    "full_name": self.full_name,
                    "email": self.email,
                    "login": self.login,
                    "products": self.products,
                    "payroll_id": self.payroll_id,
                    "manager_email": self.manager_email,
                    "start_date": str(self.start_date),
                },
                "steps": {s: {"status": "completed", "attempts": 1} for s in steps},
                "history": [{"step": s, "event": e} for s in steps for e in ("sent", "completed")],
            }
        )


def hires(n: int, run: str) -> list[Hire]:
    """``n`` distinct hires; ``run`` makes the ids unique across rounds."""
    return [
        Hire(
            employee_id=f"e-{run}-{i}",
            full_name=f"Person {letters(i)} {run}",
            manager_email="manager@example.com",
            start_date=date(2027, 1, 4),
        )
        for i in range(n)
    ]
