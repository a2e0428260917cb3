"""The reference handlers' undo commands are safe for an effect that never happened.

A saga compensates a step that ran out of attempts (it may or may not have taken effect),
so each compensation the onboarding saga sends must succeed, and change nothing, when
there is nothing to undo - and be idempotent when sent twice.
"""

from __future__ import annotations

from handlers.identity.system import Directory
from handlers.licensing.system import LicenseManager
from handlers.repositories.system import CodeHost


def test_deprovisioning_an_account_that_was_never_created_succeeds_and_changes_nothing() -> None:
    directory = Directory()
    directory.remove_account("e-never")
    directory.remove_account("e-never")
    assert directory.accounts == {}


def test_revoking_licenses_never_assigned_frees_no_seat() -> None:
    licenses = LicenseManager()
    seats = dict(licenses.seats)
    assert licenses.revoke("never@example.com") == []
    assert licenses.revoke("never@example.com") == []
    assert licenses.seats == seats


def test_revoking_repository_access_never_granted_succeeds() -> None:
    host = CodeHost()
    host.revoke("never")
    host.revoke("never")
    assert host.grants == {}
