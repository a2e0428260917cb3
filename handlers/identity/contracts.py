"""Messages of the identity automation."""

from __future__ import annotations

from bus import Command, Event


class IdentityAccountCreated(
    Event, type="identity.account.created.v1", topic="identity.events", key="employee_id"
):
    """A directory account exists for the employee."""

    employee_id: str
    login: str
    email: str
    department: str
    manager_email: str


# -- the commands the onboarding saga sends, and their replies ---------------------------


class CreateAccount(
    Command, type="identity.account.create.v1", topic="identity.commands", key="employee_id"
):
    """Create a directory account (idempotent by employee id)."""

    employee_id: str
    full_name: str
    email_domain: str = "example.com"


class IdentityAccountProvisioned(
    Event, type="identity.account.provisioned.v1", topic="identity.events", key="employee_id"
):
    """Reply to CreateAccount: the account exists."""

    employee_id: str
    login: str
    email: str


class IdentityAccountProvisioningFailed(
    Event, type="identity.account.provisioning-failed.v1", topic="identity.events",
    key="employee_id",
):  # fmt: skip
    """Reply to CreateAccount: the directory refused (a permanent reason)."""

    employee_id: str
    reason: str


class DeprovisionAccount(
    Command, type="identity.account.deprovision.v1", topic="identity.commands", key="employee_id"
):
    """Remove the employee's directory account (idempotent: no account is fine)."""

    employee_id: str


class IdentityAccountDeprovisioned(
    Event, type="identity.account.deprovisioned.v1", topic="identity.events", key="employee_id"
):
    """Reply to DeprovisionAccount: no account is left."""

    employee_id: str


class ActivateAccount(
    Command, type="identity.account.activate.v1", topic="identity.commands", key="employee_id"
):
    """Let the employee sign in from now on (idempotent: an active account stays active)."""

    employee_id: str


class IdentityAccountActivated(
    Event, type="identity.account.activated.v1", topic="identity.events", key="employee_id"
):
    """Reply to ActivateAccount: the account can sign in."""

    employee_id: str
    login: str


class IdentityAccountActivationFailed(
    Event, type="identity.account.activation-failed.v1", topic="identity.events",
    key="employee_id",
):  # fmt: skip
    """Reply to ActivateAccount: there is no account to activate (a permanent reason)."""

    employee_id: str
    reason: str
