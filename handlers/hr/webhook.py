"""The HR system publishes over HTTP: its own webhook JSON, signed, mapped to HR events.

The HR system (a SaaS product: it cannot speak CloudEvents or Kafka) posts every change
of a worker to ``/hooks/hr``, signed GitHub-style with a shared secret
(``X-Hub-Signature-256: sha256=<HMAC of the body>``) and with its delivery id in
``X-HR-Delivery``, so a re-delivery becomes the same event id (a duplicate). Its payload::

    {"event": "worker.hired", "delivery": "...",
     "worker": {"id": "W-1001", "name": {"given": "Ada", "family": "Lovelace"},
                "department": "Engineering", "manager": {"email": "grace@example.com"},
                "contract": {"kind": "FULL_TIME", "starts_on": "2027-01-04"},
                "privileged": false}}

``worker.hired`` becomes :class:`EmployeeHired`, ``worker.terminated`` :class:`EmployeeLeft`,
``worker.hire_cancelled`` :class:`HireWithdrawn`; any other event is answered 422.

Serve it (``app`` is only the registry of HR's events: the ingress accepts those)::

    HR_WEBHOOK_SECRET=... BUS_INGRESS_TOKENS_FILE=tokens.toml \\
        bus ingress handlers.hr.webhook --webhooks handlers.hr.webhook:ingress --transport kafka
"""

from __future__ import annotations

from typing import Any

from bus import App, Ingress, Message
from handlers.hr.contracts import EmployeeHired, EmployeeLeft, HireWithdrawn

__all__ = ["app", "hr_system_event", "ingress"]

#: The HR events (this module's imports register them); no handlers: HR only publishes.
app = App("hr-ingress")
ingress = Ingress()
_CONTRACTORS = frozenset({"CONTRACTOR", "FREELANCE"})


@ingress.webhook(
    "/hooks/hr",
    secret_env="HR_WEBHOOK_SECRET",
    signature="sha256",
    source="bus://hr",
    id_header="X-HR-Delivery",
)
def hr_system_event(payload: dict[str, Any]) -> Message:
    """One HR system notification as the bus event it means (KeyError/ValueError: 422)."""
    kind = payload["event"]
    worker = payload["worker"]
    if kind == "worker.hired":
        name = worker["name"]
        contract = worker["contract"]
        return EmployeeHired(
            employee_id=worker["id"],
            full_name=f"{name['given']} {name['family']}".strip(),
            department=worker["department"],
            manager_email=worker["manager"]["email"],
            employment_type="contractor" if contract["kind"] in _CONTRACTORS else "employee",
            role="admin" if worker.get("privileged") else "member",
            start_date=contract["starts_on"],
        )
    if kind == "worker.terminated":
        return EmployeeLeft(employee_id=worker["id"])
    if kind == "worker.hire_cancelled":
        return HireWithdrawn(employee_id=worker["id"], reason=payload.get("reason", ""))
    raise ValueError(f"HR event {kind!r} is not published to the bus")
