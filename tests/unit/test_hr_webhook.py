"""The HR system's webhook JSON mapped to HR events (handlers/hr/webhook.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from handlers.hr.contracts import EmployeeHired, EmployeeLeft, HireWithdrawn
from handlers.hr.webhook import hr_system_event, ingress


def hired(**worker: Any) -> dict[str, Any]:
    base = {
        "id": "W-1001",
        "name": {"given": "Ada", "family": "Lovelace"},
        "department": "Engineering",
        "manager": {"email": "grace@example.com"},
        "contract": {"kind": "FULL_TIME", "starts_on": "2027-01-04"},
    }
    return {"event": "worker.hired", "worker": {**base, **worker}}


def test_a_hire_becomes_employee_hired_with_contract_and_privilege_mapped() -> None:
    assert hr_system_event(hired()) == EmployeeHired(
        employee_id="W-1001",
        full_name="Ada Lovelace",
        department="Engineering",
        manager_email="grace@example.com",
        start_date=date(2027, 1, 4),
    )
    contractor = hr_system_event(
        hired(contract={"kind": "CONTRACTOR", "starts_on": "2027-02-01"}, privileged=True)
    )
    assert isinstance(contractor, EmployeeHired)
    assert (contractor.employment_type, contractor.role) == ("contractor", "admin")


def test_terminations_and_cancellations_map_and_other_events_are_refused() -> None:
    assert hr_system_event({"event": "worker.terminated", "worker": {"id": "W-1"}}) == EmployeeLeft(
        employee_id="W-1"
    )
    assert hr_system_event(
        {"event": "worker.hire_cancelled", "worker": {"id": "W-2"}, "reason": "declined"}
    ) == HireWithdrawn(employee_id="W-2", reason="declined")
    with pytest.raises(ValueError, match=r"worker\.promoted"):
        hr_system_event({"event": "worker.promoted", "worker": {"id": "W-3"}})
    with pytest.raises(KeyError):
        hr_system_event({"event": "worker.hired", "worker": {"id": "W-4"}})


def test_the_webhook_is_signed_and_keyed_by_the_hr_delivery_id() -> None:
    hook = ingress.webhooks["/hooks/hr"]
    assert (hook.signature, hook.secret_env, hook.id_header) == (
        "sha256",
        "HR_WEBHOOK_SECRET",
        "X-HR-Delivery",
    )
