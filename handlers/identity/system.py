"""A simulated identity provider: records accounts, and fails on request (for tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class DirectoryUnavailableError(Exception):
    """The directory did not answer (transient: worth retrying)."""


class AccountRefusedError(Exception):
    """The directory refuses the account (permanent: a saga compensates)."""


@dataclass
class Directory:
    """Accounts by employee id; ``fail_next`` makes the next N calls raise (transiently),
    ``refuse`` lists employee ids whose account is refused (permanently)."""

    accounts: dict[str, str] = field(default_factory=dict)
    fail_next: int = 0
    refuse: set[str] = field(default_factory=set)
    #: Why the account of a refused employee id is refused (default: a generic reason).
    refusal_reasons: dict[str, str] = field(default_factory=dict)
    #: Employee ids whose account can sign in (activated on the start date).
    active: set[str] = field(default_factory=set)
    #: Logins in use, and the next suffix to try per name: a free login is found without
    #: scanning every account (thousands of hires with one name stay fast).
    _taken: set[str] = field(default_factory=set, init=False, repr=False)
    _next_suffix: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._taken.update(self.accounts.values())

    def create_account(self, employee_id: str, full_name: str) -> str:
        """Create (or return the existing) login for ``employee_id``: idempotent by id."""
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DirectoryUnavailableError("directory did not answer")
        if employee_id in self.refuse:
            raise AccountRefusedError(
                self.refusal_reasons.get(
                    employee_id, f"the directory refuses an account for {employee_id}"
                )
            )
        if employee_id not in self.accounts:
            base = re.sub(r"[^a-z]+", ".", full_name.lower()).strip(".") or "user"
            login, n = base, self._next_suffix.get(base, 1)
            if n > 1:
                login = f"{base}{n}"
            while login in self._taken:
                n += 1
                login = f"{base}{n}"
            self._next_suffix[base] = n
            self._taken.add(login)
            self.accounts[employee_id] = login
        return self.accounts[employee_id]

    def remove_account(self, employee_id: str) -> None:
        """Remove the account of ``employee_id``; idempotent (no account is fine)."""
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DirectoryUnavailableError("directory did not answer")
        login = self.accounts.pop(employee_id, None)
        self.active.discard(employee_id)
        if login is not None:
            self._taken.discard(login)

    def activate_account(self, employee_id: str) -> str:
        """Let the account of ``employee_id`` sign in and return its login; idempotent.

        Raises AccountRefusedError when there is no account to activate.
        """
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DirectoryUnavailableError("directory did not answer")
        login = self.accounts.get(employee_id)
        if login is None:
            raise AccountRefusedError(f"no account to activate for {employee_id}")
        self.active.add(employee_id)
        return login
