"""The Mermaid diagram shows steps, branches, groups, waits and the undo chain."""

from __future__ import annotations

from pathlib import Path

from sagas import render_mermaid
from sagas.definitions.offboarding import offboarding
from sagas.definitions.onboarding import onboarding
from sagas.definitions.onboarding_v2 import onboarding_v2

ROOT = Path(__file__).resolve().parents[3]


def test_the_onboarding_diagram_shows_every_construct() -> None:
    text = render_mermaid(onboarding)
    assert text.startswith("stateDiagram-v2\n")
    for expected in [
        "[*] --> create_account : EmployeeHired",
        "state if_manager_approval <<choice>>",
        "if_manager_approval --> manager_approval : is_privileged",
        "manager_approval : deadline 3d",
        "state access {",
        "if_grant_repository_access --> grant_repository_access : is_engineer",
        "if_create_payroll_record --> completed : otherwise",
        "create_payroll_record --> undo_notify_manager : fails or times out",
        "undo_notify_manager --> undo_grant_repository_access",
        "undo_create_account --> compensated : IdentityAccountDeprovisioned",
        "create_account --> failed : fails",
        # out of attempts, the account may exist: undone (an uncertain step)
        "create_account --> undo_create_account : times out",
        "undo_assign_licenses --> needs_attention : keeps failing",
        "HireWithdrawn while running",
    ]:
        assert expected in text, expected


def test_choices_are_declared_before_any_edge_names_them() -> None:
    lines = render_mermaid(onboarding).splitlines()
    declared = lines.index("    state if_manager_approval <<choice>>")
    first_use = next(i for i, line in enumerate(lines) if "--> if_manager_approval" in line)
    assert declared < first_use


def test_the_docs_show_the_current_diagram() -> None:
    docs = (ROOT / "docs" / "sagas.md").read_text()
    assert render_mermaid(onboarding) in docs, "regenerate the diagram in docs/sagas.md"


def test_the_docs_show_the_current_diagrams_of_onboarding_v2_and_offboarding() -> None:
    docs = (ROOT / "docs" / "sagas.md").read_text()
    for definition in (onboarding_v2, offboarding):
        assert render_mermaid(definition) in docs, f"regenerate {definition.name}'s diagram"
