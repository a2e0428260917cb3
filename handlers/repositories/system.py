"""A simulated code hosting service: grants by login; fails on request (tests and demos).

``deny`` refuses named employees (permanent); ``failure_rate`` raises a transient
``HostingUnavailableError`` with a seeded generator, so runs replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


class HostingUnavailableError(Exception):
    """The code host did not answer (transient: worth retrying)."""


class AccessDeniedError(Exception):
    """The code host refuses access (permanent: the saga compensates)."""


DEPARTMENT_REPOSITORIES: dict[str, list[str]] = {"engineering": ["platform", "web", "infra"]}


@dataclass
class CodeHost:
    """Repository grants by login."""

    grants: dict[str, list[str]] = field(default_factory=dict)
    #: Employee ids whose access is refused.
    deny: set[str] = field(default_factory=set)
    #: Probability that a call raises HostingUnavailableError.
    failure_rate: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def _maybe_unavailable(self) -> None:
        if self.failure_rate and self.rng.random() < self.failure_rate:
            raise HostingUnavailableError("code host did not answer")

    def grant(self, employee_id: str, login: str, department: str) -> list[str]:
        """Grant the department's repositories to ``login`` (idempotent)."""
        self._maybe_unavailable()
        if employee_id in self.deny:
            raise AccessDeniedError(f"repository access refused for {employee_id}")
        repos = DEPARTMENT_REPOSITORIES.get(department.lower(), [])
        self.grants.setdefault(login, list(repos))
        return list(self.grants[login])

    def revoke(self, login: str) -> None:
        """Remove every grant of ``login`` (idempotent)."""
        self._maybe_unavailable()
        self.grants.pop(login, None)
