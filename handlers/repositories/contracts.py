"""Messages of the repository access automation: the commands it serves and its replies."""

from __future__ import annotations

from bus import Command, Event


class GrantRepositoryAccess(
    Command, type="repositories.access.grant.v1", topic="repositories.commands",
    key="employee_id",
):  # fmt: skip
    """Give ``login`` access to the department's repositories (idempotent by login)."""

    employee_id: str
    login: str
    department: str


class RepositoryAccessGranted(
    Event, type="repositories.access.granted.v1", topic="repositories.events", key="employee_id"
):
    """Reply to GrantRepositoryAccess."""

    employee_id: str
    login: str
    repositories: list[str]


class RepositoryAccessDenied(
    Event, type="repositories.access.denied.v1", topic="repositories.events", key="employee_id"
):
    """Reply to GrantRepositoryAccess: access refused (a permanent reason)."""

    employee_id: str
    reason: str


class RevokeRepositoryAccess(
    Command, type="repositories.access.revoke.v1", topic="repositories.commands",
    key="employee_id",
):  # fmt: skip
    """Remove every repository grant of ``login`` (idempotent: none is fine)."""

    employee_id: str
    login: str


class RepositoryAccessRevoked(
    Event, type="repositories.access.revoked.v1", topic="repositories.events", key="employee_id"
):
    """Reply to RevokeRepositoryAccess."""

    employee_id: str
    login: str
