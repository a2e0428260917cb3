"""Command ids are uuid5 of the saga, step, kind and attempt: the fast path gives exactly
the ids ``uuid.uuid5`` gives (ids stored in outboxes and dedup stores must never change)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from sagas.effects import _NAMESPACE, command_id, uuid5


@given(st.text())
def test_uuid5_is_the_standard_librarys(name: str) -> None:
    assert uuid5(name) == str(uuid.uuid5(_NAMESPACE, name))


def test_a_command_id_is_stable_across_releases() -> None:
    # Pinned: a change here would re-send every command of every saga in flight on upgrade.
    assert command_id("onboarding:e-1", "create_account", "action", 1) == str(
        uuid.uuid5(_NAMESPACE, "onboarding:e-1\x1fcreate_account\x1faction\x1f1")
    )
    assert str(_NAMESPACE) == "6f1c2a52-8f1e-4c1e-9a43-2b0b7f3e5d10"
