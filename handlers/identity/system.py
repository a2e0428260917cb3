"""A simulated identity provider: records accounts, and fails on request (for tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class DirectoryUnavailableError(Exception):
    """The directory did not answer (transient: worth retrying)."""


@dataclass
class Directory:
    """Accounts by employee id; ``fail_next`` makes the next N calls raise."""

    accounts: dict[str, str] = field(default_factory=dict)
    fail_next: int = 0

    def create_account(self, employee_id: str, full_name: str) -> str:
        """Create (or return the existing) login for ``employee_id``: idempotent by id."""
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DirectoryUnavailableError("directory did not answer")
        if employee_id not in self.accounts:
            base = re.sub(r"[^a-z]+", ".", full_name.lower()).strip(".") or "user"
            login, n = base, 1
            while login in self.accounts.values():
                n += 1
                login = f"{base}{n}"
            self.accounts[employee_id] = login
        return self.accounts[employee_id]
